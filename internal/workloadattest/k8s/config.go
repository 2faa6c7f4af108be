package k8s

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/signet-id/signet/internal/config"
)

// Defaults of zero Config fields.
const (
	DefaultKubeletURL = "https://127.0.0.1:10250"
	// DefaultTokenPath is the pod's service-account token, which the
	// kubelet accepts when the agent's account may get nodes/proxy.
	DefaultTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	// DefaultKubeletCAPath is the cluster CA of the pod's service account:
	// the kubelet's serving certificate is checked against it unless
	// kubelet_ca_path names another CA.
	DefaultKubeletCAPath = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	// DefaultCacheTTL is how long one answer of the kubelet serves every
	// caller.
	DefaultCacheTTL = 2 * time.Second
	// DefaultContainerWait is how long a caller whose container is not yet
	// in the kubelet's status waits for it before it is refused.
	DefaultContainerWait = 10 * time.Second
	maxCacheTTL          = time.Minute
	maxContainerWait     = 5 * time.Minute
)

// Config configures the attestor (workload_attestors.k8s):
//
//	k8s:
//	  kubelet_url: https://127.0.0.1:10250
//	  kubelet_ca_path: ""          # empty: the service account's ca.crt
//	  skip_kubelet_verification: false
//	  token_path: /var/run/secrets/kubernetes.io/serviceaccount/token
//	  cache_ttl: 2s
//	  container_wait: 10s
//
// The kubelet's certificate is always verified unless
// skip_kubelet_verification says otherwise in so many words: an empty
// kubelet_ca_path means the cluster CA of the service account, never "do
// not verify". Kubelets whose serving certificate is self-signed (no
// serverTLSBootstrap) need their CA in kubelet_ca_path, or the explicit
// skip, which the agent logs as a warning at start.
type Config struct {
	KubeletURL              string          `yaml:"kubelet_url"`
	KubeletCAPath           string          `yaml:"kubelet_ca_path"`
	SkipKubeletVerification bool            `yaml:"skip_kubelet_verification"`
	TokenPath               string          `yaml:"token_path"`
	CacheTTL                config.Duration `yaml:"cache_ttl"`
	ContainerWait           config.Duration `yaml:"container_wait"`
}

// Validate reports every problem of c, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.KubeletURL != "" {
		if err := checkKubeletURL(c.KubeletURL); err != nil {
			errs = append(errs, fmt.Errorf("kubelet_url: %w", err))
		}
	}
	if c.SkipKubeletVerification && c.KubeletCAPath != "" {
		errs = append(errs, errors.New("kubelet_ca_path: set either kubelet_ca_path or skip_kubelet_verification, not both"))
	}
	if d := time.Duration(c.CacheTTL); d < 0 || d > maxCacheTTL {
		errs = append(errs, fmt.Errorf("cache_ttl: %s: want 0 (the default, %s) up to %s", d, DefaultCacheTTL, maxCacheTTL))
	}
	if d := time.Duration(c.ContainerWait); d < 0 || d > maxContainerWait {
		errs = append(errs, fmt.Errorf("container_wait: %s: want 0 (the default, %s) up to %s", d, DefaultContainerWait, maxContainerWait))
	}
	return errors.Join(errs...)
}

// checkKubeletURL accepts https://host[:port] with nothing else: the
// attestor appends /pods itself.
func checkKubeletURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: want https://HOST:PORT, such as %s", s, DefaultKubeletURL)
	case u.Scheme != "https":
		return fmt.Errorf("%q: the kubelet is asked over https only, such as %s", s, DefaultKubeletURL)
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: want https://HOST:PORT with no user, path or query, such as %s", s, DefaultKubeletURL)
	}
	return nil
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.KubeletURL == "" {
		c.KubeletURL = DefaultKubeletURL
	}
	if c.KubeletCAPath == "" && !c.SkipKubeletVerification {
		c.KubeletCAPath = DefaultKubeletCAPath
	}
	if c.TokenPath == "" {
		c.TokenPath = DefaultTokenPath
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = config.Duration(DefaultCacheTTL)
	}
	if c.ContainerWait == 0 {
		c.ContainerWait = config.Duration(DefaultContainerWait)
	}
	return c
}
