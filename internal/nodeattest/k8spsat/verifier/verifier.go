// Package verifier is the server half of the k8s_psat node attestation
// method (package k8spsat describes the method and holds the agent half):
// it asks each configured cluster's API server, with client-go, to review
// the agent's projected service account token, and reads the agent's pod
// and node. It is a package of its own so that the agent, which links
// k8spsat, links none of client-go and the Kubernetes API machinery.
package verifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
)

// Config is the server half's configuration, the value of
// node_attestors.k8s_psat:
//
//	k8s_psat:
//	  clusters:
//	    prod-eu:
//	      service_account_allow_list: ["signet:signet-agent"]
//	      kubeconfig_path: ""        # empty: in-cluster config
//	      audience: signet-server    # the default
type Config struct {
	// Clusters are the clusters whose agents may attest, by the name their
	// agents send (node_attestor.k8s_psat.cluster). At least one.
	Clusters map[string]ClusterConfig `yaml:"clusters"`
}

// ClusterConfig is one cluster's entry in Config.
type ClusterConfig struct {
	// ServiceAccountAllowList are the service accounts, as
	// "<namespace>:<name>", whose tokens may attest. Required.
	ServiceAccountAllowList []string `yaml:"service_account_allow_list"`
	// KubeconfigPath is a kubeconfig file naming the cluster's API server
	// and the credentials to call it with (its current context). Empty: the
	// in-cluster configuration of the server's own pod.
	KubeconfigPath string `yaml:"kubeconfig_path"`
	// Audience is the audience the agents' tokens must be issued for
	// (default k8spsat.DefaultAudience).
	Audience string `yaml:"audience"`
}

// Validate reports every malformed cluster, service account and audience,
// with its path.
func (c Config) Validate() error {
	if len(c.Clusters) == 0 {
		return errors.New("clusters: required: at least one cluster, for example clusters: {prod-eu: {service_account_allow_list: [\"signet:signet-agent\"]}}")
	}
	var errs []error
	names := make([]string, 0, len(c.Clusters))
	for name := range c.Clusters {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		cl := c.Clusters[name]
		if err := k8spsat.CheckClusterName(name); err != nil {
			errs = append(errs, fmt.Errorf("clusters: %w", err))
			continue
		}
		path := "clusters." + name + "."
		if len(cl.ServiceAccountAllowList) == 0 {
			errs = append(errs, fmt.Errorf("%sservice_account_allow_list: required: the agents' service accounts as namespace:name, for example signet:signet-agent", path))
		}
		for i, sa := range cl.ServiceAccountAllowList {
			ns, n, ok := strings.Cut(sa, ":")
			if !ok || !k8spsat.IsDNSLabel(ns) || !k8spsat.IsDNSSubdomain(n) {
				errs = append(errs, fmt.Errorf("%sservice_account_allow_list[%d]: %q is not namespace:name of a service account, for example signet:signet-agent",
					path, i, logsafe.Truncate(sa)))
			}
		}
		if cl.Audience != "" && (len(cl.Audience) > 256 || strings.ContainsFunc(cl.Audience, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
			errs = append(errs, fmt.Errorf("%saudience: %q: want up to 256 printable characters without spaces", path, logsafe.Truncate(cl.Audience)))
		}
	}
	return errors.Join(errs...)
}

// NodeLookup finds an attested node by SPIFFE ID; an unknown one is an
// error kinded NotFound. The server's store implements it.
type NodeLookup interface {
	GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error)
}

// Deps is what the verifier needs besides its configuration.
type Deps struct {
	TrustDomain spiffeid.TrustDomain
	// Nodes is where the verifier looks up whether a node already has a
	// live agent. Required.
	Nodes NodeLookup
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Log receives the causes of failures that are the server's or the API
	// server's, not the agent's (nil: slog.Default()): the agent is told
	// only that the API server is unavailable or refused the server.
	Log *slog.Logger
}

// Verifier is the server half of k8s_psat. Create it with New; it
// is safe for concurrent use.
type Verifier struct {
	td       spiffeid.TrustDomain
	nodes    NodeLookup
	now      func() time.Time
	clusters map[string]*cluster
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// cluster is one configured cluster and the clients of its API server.
type cluster struct {
	name     string
	audience string
	allowed  []string
	auth     *rest.RESTClient // authentication.k8s.io/v1
	core     *rest.RESTClient // core v1
	log      *slog.Logger
}

// apiTimeout bounds each call to an API server.
const apiTimeout = 10 * time.Second

// scheme knows the few API types the verifier sends and reads; codecs
// decode them from JSON.
var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func init() {
	// Registration of the API packages' own types cannot fail.
	if err := errors.Join(authv1.AddToScheme(scheme), corev1.AddToScheme(scheme)); err != nil {
		panic(err)
	}
}

// New returns the verifier of cfg. It reads every cluster's
// kubeconfig (or the in-cluster configuration) now, so that a bad one fails
// at start-up; API servers are called only when agents attest.
func New(cfg Config, deps Deps) (*Verifier, error) {
	if deps.TrustDomain.IsZero() || deps.Nodes == nil {
		return nil, errors.New("k8s_psat verifier: a trust domain and a node lookup are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{td: deps.TrustDomain, nodes: deps.Nodes, now: deps.Now, clusters: map[string]*cluster{}}
	if v.now == nil {
		v.now = time.Now
	}
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	for name, cc := range cfg.Clusters {
		c, err := newCluster(name, cc)
		if err != nil {
			return nil, err
		}
		c.log = log.With("node_attestor", k8spsat.Name, "cluster", name)
		v.clusters[name] = c
	}
	return v, nil
}

// newCluster builds the API clients of one cluster.
func newCluster(name string, cc ClusterConfig) (*cluster, error) {
	var rc *rest.Config
	var err error
	field := "clusters." + name + ".kubeconfig_path"
	if cc.KubeconfigPath == "" {
		if rc, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("%s: empty, so the in-cluster configuration is used, and it is not available: %w "+
				"(run the server in the cluster, or name a kubeconfig file)", field, err)
		}
	} else if rc, err = clientcmd.BuildConfigFromFlags("", cc.KubeconfigPath); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = apiTimeout
	rc.UserAgent = "signet-server/k8s_psat"
	rc.ContentType = runtime.ContentTypeJSON
	rc.AcceptContentTypes = runtime.ContentTypeJSON
	rc.NegotiatedSerializer = codecs.WithoutConversion()
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	client := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(rc)
		c.GroupVersion, c.APIPath = &gv, apiPath
		return rest.RESTClientForConfigAndClient(c, hc)
	}
	c := &cluster{name: name, audience: cc.Audience, allowed: slices.Clone(cc.ServiceAccountAllowList)}
	if c.audience == "" {
		c.audience = k8spsat.DefaultAudience
	}
	if c.auth, err = client(authv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if c.core, err = client(corev1.SchemeGroupVersion, "/api"); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return c, nil
}

// Name returns "k8s_psat".
func (v *Verifier) Name() string { return k8spsat.Name }

// denied is a refusal of the evidence.
func denied(format string, args ...any) error {
	return errkind.New(errkind.PermissionDenied, "k8s_psat: "+format, args...)
}

// Attest admits the node of the agent whose token payload holds: the
// cluster's API server must authenticate the token for the cluster's
// audience as an allowed service account bound to a pod, the pod must
// exist with the bound UID and be scheduled on a node, and that node must
// have no live agent. An API server that cannot be reached (or answers
// with a server error or 429) is an error kinded Unavailable, so the agent
// retries; one that refuses the server's own credentials is
// FailedPrecondition (both logged with their cause); every other failure
// is a refusal. Errors and logs never hold the token.
func (v *Verifier) Attest(ctx context.Context, payload []byte, _ nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, err
	}
	p, err := k8spsat.ParsePayload(payload)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "k8s_psat: %v", err)
	}
	c, ok := v.clusters[p.Cluster]
	if !ok {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument,
			"k8s_psat: cluster %q is not configured on this server (node_attestors.k8s_psat.clusters has %s)",
			p.Cluster, strings.Join(v.clusterNames(), ", "))
	}
	id, err := c.review(ctx, p.Token)
	if err != nil {
		return nodeattest.Result{}, err
	}
	if !slices.Contains(c.allowed, id.ServiceAccountName()) {
		return nodeattest.Result{}, denied("cluster %s: service account %s is not on the service_account_allow_list", c.name, id.ServiceAccountName())
	}
	n, err := c.readNode(ctx, id)
	if err != nil {
		return nodeattest.Result{}, err
	}
	agentID, err := k8spsat.AgentID(v.td, c.name, n.NodeUID)
	if err != nil {
		return nodeattest.Result{}, denied("cluster %s: %v", c.name, err)
	}
	res := nodeattest.Result{AgentID: agentID, Selectors: k8spsat.Selectors(n), CanReattest: true}
	switch prev, err := v.nodes.GetNode(ctx, agentID); {
	case errkind.Is(err, errkind.NotFound):
		// A node seen for the first time: admitted atomically with the
		// check that no other agent got there first.
		res.FirstUseOnly = true
	case err != nil:
		return nodeattest.Result{}, fmt.Errorf("k8s_psat: look up node %s: %w", agentID, err)
	case !prev.Banned && prev.CertNotAfter.After(v.now()):
		return nodeattest.Result{}, denied("node %s (%s in cluster %s) already has a live agent, whose SVID is valid until %s: "+
			"a second agent on one node is refused; evict the node to replace its agent",
			agentID, n.NodeName, c.name, prev.CertNotAfter.UTC().Format(time.RFC3339))
	}
	return res, nil
}

// clusterNames returns the configured cluster names, sorted.
func (v *Verifier) clusterNames() []string {
	out := make([]string, 0, len(v.clusters))
	for n := range v.clusters {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// review asks the API server to authenticate tok for the cluster's
// audience and returns who it is.
func (c *cluster) review(ctx context.Context, tok string) (k8spsat.Identity, error) {
	in := &authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: tok, Audiences: []string{c.audience}}}
	var out authv1.TokenReview
	if err := c.auth.Post().Resource("tokenreviews").Body(in).Do(ctx).Into(&out); err != nil {
		return k8spsat.Identity{}, c.apiError("create TokenReview", err)
	}
	st := out.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "no reason given"
		}
		return k8spsat.Identity{}, denied("cluster %s: the API server did not authenticate the token: %s", c.name, logsafe.Truncate(reason))
	}
	if !slices.Contains(st.Audiences, c.audience) {
		return k8spsat.Identity{}, denied("cluster %s: the API server authenticated the token, but not for audience %q", c.name, c.audience)
	}
	id, err := k8spsat.ParseIdentity(st.User.Username, extraMap(st.User.Extra))
	if err != nil {
		return k8spsat.Identity{}, denied("cluster %s: %v", c.name, err)
	}
	return id, nil
}

// extraMap converts a TokenReview's user.extra to plain string slices.
func extraMap(e map[string]authv1.ExtraValue) map[string][]string {
	out := make(map[string][]string, len(e))
	for k, v := range e {
		out[k] = v
	}
	return out
}

// readNode reads the agent's pod and the node it runs on.
func (c *cluster) readNode(ctx context.Context, id k8spsat.Identity) (k8spsat.Node, error) {
	var pod corev1.Pod
	if err := c.core.Get().Namespace(id.Namespace).Resource("pods").Name(id.PodName).Do(ctx).Into(&pod); err != nil {
		return k8spsat.Node{}, c.apiError("get pod "+id.Namespace+"/"+id.PodName, err)
	}
	if string(pod.UID) != id.PodUID {
		return k8spsat.Node{}, denied("cluster %s: pod %s/%s has uid %s, but the token is bound to uid %s (the pod was replaced)",
			c.name, id.Namespace, id.PodName, logsafe.Truncate(string(pod.UID)), id.PodUID)
	}
	nodeName := pod.Spec.NodeName
	if nodeName == "" || !k8spsat.IsDNSSubdomain(nodeName) {
		return k8spsat.Node{}, denied("cluster %s: pod %s/%s is not scheduled on a node", c.name, id.Namespace, id.PodName)
	}
	if id.NodeName != "" && id.NodeName != nodeName {
		return k8spsat.Node{}, denied("cluster %s: the token is bound to node %s, but pod %s/%s runs on %s",
			c.name, id.NodeName, id.Namespace, id.PodName, logsafe.Truncate(nodeName))
	}
	var node corev1.Node
	if err := c.core.Get().Resource("nodes").Name(nodeName).Do(ctx).Into(&node); err != nil {
		return k8spsat.Node{}, c.apiError("get node "+nodeName, err)
	}
	return k8spsat.Node{
		Cluster: c.name, Identity: id, NodeName: nodeName, NodeUID: string(node.UID),
		PodLabels: pod.Labels, NodeLabels: node.Labels,
	}, nil
}

// apiError kinds an error of an API call: the object or the permission
// missing is a refusal, anything else (unreachable, a server error) is
// Unavailable. The server's RBAC is named when it is at fault.
func (c *cluster) apiError(op string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return denied("cluster %s: %s: not found", c.name, op)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		c.log.Error("the API server refused the server's own credentials: the server's service account needs "+
			"create on tokenreviews and get on pods and nodes (see docs/kubernetes.md)", "op", op, "error", err)
		return errkind.New(errkind.FailedPrecondition, "k8s_psat: cluster %s: %s: the API server refused the server's own credentials "+
			"(it needs create on tokenreviews and get on pods and nodes): see the server log", c.name, op)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("k8s_psat: cluster %s: %s: %w", c.name, op, err)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code > 0 && status.Status().Code < http.StatusInternalServerError &&
		status.Status().Code != http.StatusTooManyRequests {
		return denied("cluster %s: %s: %v", c.name, op, err)
	}
	c.log.Warn("API server unavailable: the agent will retry", "op", op, "error", err)
	return errkind.New(errkind.Unavailable, "k8s_psat: cluster %s: %s: API server unavailable", c.name, op)
}
