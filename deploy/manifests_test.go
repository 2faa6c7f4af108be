// Package deploy holds the tests of Signet's deployment artifacts: the Helm
// chart in helm/signet and the plain manifests rendered from it in
// kubernetes/.
//
// Every rendered object is validated against the Kubernetes API types: it
// is decoded strictly (unknown, duplicated or mistyped fields fail) into
// the k8s.io/api type its apiVersion and kind name, through client-go's
// scheme, and its names, labels, ports and references are checked with
// apimachinery's validation functions. This stands in for kubeconform,
// whose JSON schemas cannot be downloaded here.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	k8spsatverifier "github.com/signet-id/signet/internal/nodeattest/k8spsat/verifier"
)

// strict decodes YAML into the registered API types, failing on unknown
// and duplicated fields.
var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeAll splits a multi-document YAML stream and strictly decodes each
// non-empty document.
func decodeAll(t *testing.T, name string, b []byte) []runtime.Object {
	t.Helper()
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			t.Errorf("%s: document %d does not decode strictly into a Kubernetes type: %v\n%s", name, i, err, doc)
			continue
		}
		if gvk.Version == "" || gvk.Kind == "" {
			t.Errorf("%s: document %d has no apiVersion/kind", name, i)
		}
		out = append(out, obj)
	}
	return out
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(append(out, l...), '\n')
		}
	}
	return out
}

// validate applies apimachinery's name, label and port checks to objs.
func validate(objs []runtime.Object) field.ErrorList {
	var errs field.ErrorList
	name := func(p *field.Path, n string, dns1035 bool) {
		check := validation.IsDNS1123Subdomain
		if dns1035 {
			check = validation.IsDNS1035Label
		}
		for _, msg := range check(n) {
			errs = append(errs, field.Invalid(p, n, msg))
		}
	}
	// pod checks a pod template; claims are the names of a StatefulSet's
	// volume claim templates, which its containers mount too.
	pod := func(p *field.Path, spec corev1.PodSpec, podLabels map[string]string, claims ...string) {
		errs = append(errs, metav1validation.ValidateLabels(podLabels, p.Child("metadata", "labels"))...)
		vols := map[string]bool{}
		for _, c := range claims {
			vols[c] = true
		}
		for i, v := range spec.Volumes {
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(p.Child("spec", "volumes").Index(i).Child("name"), v.Name, msg))
			}
			vols[v.Name] = true
		}
		for i, c := range spec.Containers {
			cp := p.Child("spec", "containers").Index(i)
			for _, msg := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(cp.Child("name"), c.Name, msg))
			}
			ports := map[string]bool{}
			for j, port := range c.Ports {
				for _, msg := range validation.IsValidPortName(port.Name) {
					errs = append(errs, field.Invalid(cp.Child("ports").Index(j).Child("name"), port.Name, msg))
				}
				for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
					errs = append(errs, field.Invalid(cp.Child("ports").Index(j).Child("containerPort"), port.ContainerPort, msg))
				}
				ports[port.Name] = true
			}
			for j, m := range c.VolumeMounts {
				if !vols[m.Name] {
					errs = append(errs, field.NotFound(cp.Child("volumeMounts").Index(j).Child("name"), m.Name))
				}
			}
			for probeName, pr := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					errs = append(errs, field.Required(cp.Child(probeName), "an httpGet probe"))
					continue
				}
				if port := pr.HTTPGet.Port; port.StrVal != "" && !ports[port.StrVal] {
					errs = append(errs, field.NotFound(cp.Child(probeName, "httpGet", "port"), port.StrVal))
				}
			}
		}
	}
	for i, obj := range objs {
		p := field.NewPath(fmt.Sprintf("object[%d]", i))
		acc, ok := obj.(interface {
			GetName() string
			GetNamespace() string
			GetLabels() map[string]string
		})
		if !ok {
			errs = append(errs, field.InternalError(p, fmt.Errorf("%T has no object metadata", obj)))
			continue
		}
		_, isService := obj.(*corev1.Service)
		name(p.Child("metadata", "name"), acc.GetName(), isService)
		if ns := acc.GetNamespace(); ns != "" {
			for _, msg := range validation.IsDNS1123Label(ns) {
				errs = append(errs, field.Invalid(p.Child("metadata", "namespace"), ns, msg))
			}
		}
		errs = append(errs, metav1validation.ValidateLabels(acc.GetLabels(), p.Child("metadata", "labels"))...)
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			var claims []string
			for _, c := range o.Spec.VolumeClaimTemplates {
				claims = append(claims, c.Name)
			}
			pod(p.Child("spec", "template"), o.Spec.Template.Spec, o.Spec.Template.Labels, claims...)
			errs = append(errs, selects(p, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)...)
		case *appsv1.DaemonSet:
			pod(p.Child("spec", "template"), o.Spec.Template.Spec, o.Spec.Template.Labels)
			errs = append(errs, selects(p, o.Spec.Selector.MatchLabels, o.Spec.Template.Labels)...)
		case *corev1.ConfigMap:
			for k := range o.Data {
				for _, msg := range validation.IsConfigMapKey(k) {
					errs = append(errs, field.Invalid(p.Child("data").Key(k), k, msg))
				}
			}
		}
	}
	return errs
}

// selects reports a selector that does not match its template's labels.
func selects(p *field.Path, sel, labels map[string]string) field.ErrorList {
	for k, v := range sel {
		if labels[k] != v {
			return field.ErrorList{field.Invalid(p.Child("spec", "selector"), sel, "does not select the pod template's labels")}
		}
	}
	return nil
}

// byKind returns the objects of type T.
func byKind[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// TestPlainManifests validates the committed manifests in kubernetes/ and
// checks what the deployment promises: RBAC no broader than the attestors
// need, a projected token for audience signet-server, hostPID, health
// probes on /healthz and /readyz.
func TestPlainManifests(t *testing.T) {
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeAll(t, f, b)
		for _, e := range validate(objs) {
			t.Errorf("%s: %v", f, e)
		}
		checkDeployment(t, f, objs)
		checkConfigs(t, f, objs)
	}
}

// checkConfigs decodes the server's and the agent's configuration files in
// the ConfigMaps as Signet does (strictly), and their k8s_psat sections
// with the attestor's own config types.
func checkConfigs(t *testing.T, name string, objs []runtime.Object) {
	t.Helper()
	var seen int
	for _, cm := range byKind[*corev1.ConfigMap](objs) {
		if s, ok := cm.Data["server.yaml"]; ok {
			seen++
			var c config.Server
			if err := config.Decode([]byte(s), &c); err != nil {
				t.Errorf("%s: ConfigMap %s: server.yaml: %v", name, cm.Name, err)
				continue
			}
			n := c.NodeAttestors[k8spsat.Name]
			var kc k8spsatverifier.Config
			if err := config.DecodeNode("node_attestors.k8s_psat", &n, &kc); err != nil {
				t.Errorf("%s: ConfigMap %s: %v", name, cm.Name, err)
			}
			if c.TrustDomain != "example.org" || c.HealthAddress == "" || c.Store.Driver != "sqlite" {
				t.Errorf("%s: server.yaml trust_domain %q, health_address %q, store %q", name, c.TrustDomain, c.HealthAddress, c.Store.Driver)
			}
		}
		if s, ok := cm.Data["agent.yaml"]; ok {
			seen++
			var c config.Agent
			if err := config.Decode([]byte(s), &c); err != nil {
				t.Errorf("%s: ConfigMap %s: agent.yaml: %v", name, cm.Name, err)
				continue
			}
			n := c.NodeAttestor[k8spsat.Name]
			var ac k8spsat.AgentConfig
			if err := config.DecodeNode("node_attestor.k8s_psat", &n, &ac); err != nil {
				t.Errorf("%s: ConfigMap %s: %v", name, cm.Name, err)
			}
			if ac.TokenPath != k8spsat.DefaultTokenPath || c.HealthAddress == "" {
				t.Errorf("%s: agent.yaml token_path %q, health_address %q", name, ac.TokenPath, c.HealthAddress)
			}
		}
	}
	if seen != 2 {
		t.Errorf("%s: %d Signet configuration files in ConfigMaps, want the server's and the agent's", name, seen)
	}
}

// checkDeployment checks the promises of the default rendering.
func checkDeployment(t *testing.T, name string, objs []runtime.Object) {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{}
	for _, r := range byKind[*rbacv1.ClusterRole](objs) {
		roles[r.Name] = r.Rules
	}
	wantRoles := map[string][]rbacv1.PolicyRule{
		"signet-server": {
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get"}},
		},
		"signet-agent": {{APIGroups: []string{""}, Resources: []string{"nodes/pods"}, Verbs: []string{"get"}}},
	}
	if fmt.Sprint(roles) != fmt.Sprint(wantRoles) {
		t.Errorf("%s: ClusterRoles = %v, want exactly %v", name, roles, wantRoles)
	}
	if n := len(byKind[*rbacv1.Role](objs)); n != 0 {
		t.Errorf("%s: %d Roles, want none", name, n)
	}
	sas := map[string]bool{}
	for _, sa := range byKind[*corev1.ServiceAccount](objs) {
		sas[sa.Name] = true
	}
	sts := byKind[*appsv1.StatefulSet](objs)
	ds := byKind[*appsv1.DaemonSet](objs)
	if len(sts) != 1 || len(ds) != 1 {
		t.Fatalf("%s: %d StatefulSets and %d DaemonSets, want one of each", name, len(sts), len(ds))
	}
	server, agent := sts[0].Spec.Template.Spec, ds[0].Spec.Template.Spec
	if server.ServiceAccountName == agent.ServiceAccountName || !sas[server.ServiceAccountName] || !sas[agent.ServiceAccountName] {
		t.Errorf("%s: server and agent service accounts %q, %q: want one of its own each, defined here", name, server.ServiceAccountName, agent.ServiceAccountName)
	}
	if len(sts[0].Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("%s: the server has no PersistentVolumeClaim template for its SQLite store", name)
	}
	if !agent.HostPID {
		t.Errorf("%s: the agent DaemonSet is not hostPID", name)
	}
	var audience string
	for _, v := range agent.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					audience = s.ServiceAccountToken.Audience
				}
			}
		}
		if v.Name == "socket" && (v.HostPath == nil || v.HostPath.Path != "/run/signet") {
			t.Errorf("%s: the Workload API socket is not on the hostPath /run/signet", name)
		}
	}
	if audience != "signet-server" {
		t.Errorf("%s: the agent's projected token audience = %q, want signet-server", name, audience)
	}
	for _, spec := range []corev1.PodSpec{server, agent} {
		c := spec.Containers[0]
		if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: %s probes %s and %s, want /healthz and /readyz", name, c.Name, c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
		}
	}
}

// checkKeyManager checks the server's key manager: with sealed, the
// config names the KEK file in an in-memory emptyDir that an init
// container fills from the Secret (`signet server kek install`), and the
// server container never mounts the Secret itself (a Secret volume is
// group-readable under an fsGroup, which the server refuses for a KEK).
func checkKeyManager(t *testing.T, name string, objs []runtime.Object, sealed bool) {
	t.Helper()
	var kekFile string
	for _, cm := range byKind[*corev1.ConfigMap](objs) {
		if s, ok := cm.Data["server.yaml"]; ok {
			var c config.Server
			if err := config.Decode([]byte(s), &c); err != nil {
				t.Fatalf("%s: server.yaml: %v", name, err)
			}
			if n, ok := c.KeyManager["sealed"]; ok {
				var kc struct {
					KEKFile string `yaml:"kek_file"`
				}
				if err := config.DecodeNode("key_manager.sealed", &n, &kc); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				kekFile = kc.KEKFile
			}
		}
	}
	spec := byKind[*appsv1.StatefulSet](objs)[0].Spec.Template.Spec
	if !sealed {
		if kekFile != "" || len(spec.InitContainers) != 0 {
			t.Errorf("%s: key_manager sealed (kek_file %q) or init containers %d without server.keyManager.type=sealed", name, kekFile, len(spec.InitContainers))
		}
		return
	}
	if kekFile != "/run/signet/kek/kek" {
		t.Fatalf("%s: key_manager.sealed.kek_file = %q, want /run/signet/kek/kek", name, kekFile)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["kek"]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("%s: volume kek = %+v, want an emptyDir in memory", name, v.VolumeSource)
	}
	if v := vols["kek-secret"]; v.Secret == nil || v.Secret.SecretName != "ca-kek" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Path != "kek" {
		t.Errorf("%s: volume kek-secret = %+v, want the Secret ca-kek's one key as file kek", name, v.VolumeSource)
	}
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%s: %d init containers, want the kek installer", name, len(spec.InitContainers))
	}
	ic := spec.InitContainers[0]
	if want := []string{"server", "kek", "install", "/etc/signet/kek-secret/kek", "/run/signet/kek/kek"}; !slices.Equal(ic.Args, want) {
		t.Errorf("%s: init container args %q, want %q", name, ic.Args, want)
	}
	mounts := func(c corev1.Container) map[string]corev1.VolumeMount {
		m := map[string]corev1.VolumeMount{}
		for _, vm := range c.VolumeMounts {
			m[vm.Name] = vm
		}
		return m
	}
	im, sm := mounts(ic), mounts(spec.Containers[0])
	if im["kek-secret"].MountPath != "/etc/signet/kek-secret" || im["kek"].MountPath != "/run/signet/kek" || im["kek"].ReadOnly {
		t.Errorf("%s: init container mounts %+v", name, ic.VolumeMounts)
	}
	if _, ok := sm["kek-secret"]; ok {
		t.Errorf("%s: the server container mounts the KEK Secret itself", name)
	}
	if k := sm["kek"]; k.MountPath != "/run/signet/kek" || !k.ReadOnly {
		t.Errorf("%s: server mounts kek as %+v, want read-only at /run/signet/kek", name, k)
	}
}

// helm returns the command that runs helm: $HELM (a binary or a command
// line), else helm v3.22.0 run from the module proxy.
func helm(t *testing.T) []string {
	if h := os.Getenv("HELM"); h != "" {
		return strings.Fields(h)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("neither $HELM nor go to run helm with: %v", err)
	}
	return []string{"go", "run", "helm.sh/helm/v3/cmd/helm@v3.22.0"}
}

func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	h := helm(t)
	cmd := exec.Command(h[0], append(h[1:], args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", strings.Join(h, " "), strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// TestChart renders the chart with helm: the default rendering must be the
// committed kubernetes/signet.yaml (make manifests), every variant must
// validate, and bad values must fail with a message naming the value.
func TestChart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs helm")
	}
	out, err := runHelm(t, "template", "signet", "helm/signet", "--namespace", "signet", "--set", "trustDomain=example.org")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("kubernetes/signet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if body := stripComments(committed); !bytes.Equal(bytes.TrimSpace(body), bytes.TrimSpace(stripComments(out))) {
		t.Errorf("kubernetes/signet.yaml is not what the chart renders: run make manifests and commit the result")
	}
	for name, sets := range map[string][]string{
		"postgres, two replicas": {"server.store.driver=postgres", "server.replicas=2"},
		"postgres, sealed CA keys": {"server.store.driver=postgres", "server.replicas=3", "server.keyManager.type=sealed",
			"server.keyManager.sealed.secretName=ca-kek"},
		"kubelet through proxy":    {"agent.workloadAttestors.k8s.kubeletAuthz=proxy"},
		"no k8s workload attestor": {"agent.workloadAttestors.k8s.enabled=false"},
		"other cluster and namespace": {"clusterName=prod-eu", "server.extraServiceAccountAllowList={ops:signet-agent}",
			"server.persistence.storageClassName=fast", "server.agentTTL=2h"},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "signet", "helm/signet", "--namespace", "identity", "--set", "trustDomain=example.org"}
			for _, s := range sets {
				args = append(args, "--set", s)
			}
			out, err := runHelm(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeAll(t, name, out)
			for _, e := range validate(objs) {
				t.Errorf("%v", e)
			}
			if slices.Contains(sets, "server.store.driver=postgres") && !bytes.Contains(out, []byte("dsn_file: /etc/signet/store/dsn")) {
				t.Errorf("postgres rendering does not read the DSN from the mounted Secret")
			}
			checkKeyManager(t, name, objs, slices.Contains(sets, "server.keyManager.type=sealed"))
		})
	}
	for name, tc := range map[string]struct {
		sets []string
		want string
	}{
		"no trust domain":      {nil, "trustDomain is required"},
		"sqlite with replicas": {[]string{"trustDomain=example.org", "server.replicas=2"}, "needs server.store.driver=postgres"},
		"unknown store":        {[]string{"trustDomain=example.org", "server.store.driver=mysql"}, `server.store.driver "mysql"`},
		"short token lifetime": {[]string{"trustDomain=example.org", "agent.tokenExpirationSeconds=60"}, "agent.tokenExpirationSeconds: at least 600"},
		"unknown key manager":  {[]string{"trustDomain=example.org", "server.keyManager.type=vault"}, `server.keyManager.type "vault"`},
		"sealed without Secret": {[]string{"trustDomain=example.org", "server.keyManager.type=sealed", "server.keyManager.sealed.secretName="},
			"needs server.keyManager.sealed.secretName"},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "signet", "helm/signet"}
			for _, s := range tc.sets {
				args = append(args, "--set", s)
			}
			_, err := runHelm(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template with %v = %v, want an error containing %q", tc.sets, err, tc.want)
			}
		})
	}
}

// TestValidatorRejects: the checks above catch what kubeconform would —
// unknown, duplicated and mistyped fields, bad names and labels, a probe
// on a port the container does not name.
func TestValidatorRejects(t *testing.T) {
	const ds = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: %s, namespace: signet, labels: {%s}}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
        - name: agent
          image: x
          %s
          livenessProbe: {httpGet: {path: /healthz, port: %s}}
          readinessProbe: {httpGet: {path: /readyz, port: 8083}}
`
	good := fmt.Sprintf(ds, "signet-agent", "app: a", "ports: [{name: health, containerPort: 8083}]", "health")
	if objs, err := decode([]byte(good)); err != nil || len(validate(objs)) != 0 {
		t.Fatalf("a good DaemonSet: %v, %v", err, validate(objs))
	}
	for name, doc := range map[string]string{
		"unknown field":    fmt.Sprintf(ds, "signet-agent", "app: a", "imagePullPolcy: Always", "8083"),
		"mistyped field":   fmt.Sprintf(ds, "signet-agent", "app: a", "ports: [{name: health, containerPort: eighty}]", "health"),
		"duplicated field": fmt.Sprintf(ds, "signet-agent", "app: a", "image: y", "8083"),
		"bad name":         fmt.Sprintf(ds, "Signet_Agent", "app: a", "", "8083"),
		"bad label":        fmt.Sprintf(ds, "signet-agent", "app: -a-", "", "8083"),
		"unnamed port":     fmt.Sprintf(ds, "signet-agent", "app: a", "", "health"),
	} {
		objs, err := decode([]byte(doc))
		if err == nil && len(validate(objs)) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// decode strictly decodes one document.
func decode(doc []byte) ([]runtime.Object, error) {
	obj, _, err := strict.Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	return []runtime.Object{obj}, nil
}
