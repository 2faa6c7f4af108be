package helper

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
)

// DefaultOnChangeTimeout is how long an on_change command may run when the
// configuration sets no timeout.
const DefaultOnChangeTimeout = 30 * time.Second

// Config is helper.yaml. Unknown keys are errors; see docs/helper.md.
type Config struct {
	// AgentSocket is the agent's Workload API socket path; empty means
	// $SPIFFE_ENDPOINT_SOCKET, else the agent's default.
	AgentSocket string `yaml:"agent_socket"`
	// X509, when set, writes the default X.509-SVID, its key and bundle.
	X509 *X509 `yaml:"x509"`
	// JWT lists JWT-SVIDs to keep fresh in files.
	JWT []JWT `yaml:"jwt"`
	// BrokerURL is the broker's base URL (https://HOST:PORT) for
	// Credentials; empty means $SIGNET_BROKER_URL, else the URL the agent
	// learned from its server, as for `signet credential get`.
	BrokerURL string `yaml:"broker_url"`
	// Credentials lists brokered credentials rendered into files.
	Credentials []Credential `yaml:"credentials"`
	// OnChange, when set, is run once after every complete change.
	OnChange *OnChange `yaml:"on_change"`
}

// X509 says where the X.509 files go. Cert, Key, Bundle and PKCS12 are file
// names inside Dir; Cert and Key are required, the others optional. When
// Cert and Key are the same name, that one file holds the key and then the
// chain.
type X509 struct {
	Dir                string `yaml:"dir"`
	Cert               string `yaml:"cert"`
	Key                string `yaml:"key"`
	Bundle             string `yaml:"bundle"`
	PKCS12             string `yaml:"pkcs12"`
	PKCS12PasswordFile string `yaml:"pkcs12_password_file"`
}

// JWT is one JWT-SVID file: a token for Audience written to File.
type JWT struct {
	Audience string `yaml:"audience"`
	File     string `yaml:"file"`
}

// Credential is one brokered credential kept fresh in a file: the
// credential Name requested with the task Context (and TTL, zero meaning
// the credential's default_ttl), rendered through the Go text/template in
// the file Template (see internal/credtemplate) and written to File, 0600.
type Credential struct {
	Name     string            `yaml:"name"`
	Context  map[string]string `yaml:"context"`
	TTL      config.Duration   `yaml:"ttl"`
	Template string            `yaml:"template"`
	File     string            `yaml:"file"`
}

// OnChange is what to do after a change: run Command (argv, no shell), or
// send Signal to the process whose PID is in PIDFile. Timeout bounds the
// command (default 30s).
type OnChange struct {
	Command []string        `yaml:"command"`
	Signal  string          `yaml:"signal"`
	PIDFile string          `yaml:"pid_file"`
	Timeout config.Duration `yaml:"timeout"`
}

// signals are the signals on_change may send, by name.
var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGINT": syscall.SIGINT, "SIGTERM": syscall.SIGTERM, "SIGQUIT": syscall.SIGQUIT,
	"SIGWINCH": syscall.SIGWINCH,
}

func signalNames() []string {
	var out []string
	for n := range signals {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// LoadConfig reads, validates and compiles a helper configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := config.ReadFile("helper config", path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("helper config %s: %w", path, err)
	}
	return c, nil
}

// topKeys are helper.yaml's keys, for a file that is not a mapping.
const topKeys = "agent_socket, x509, jwt, broker_url, credentials, on_change"

// ParseConfig strictly decodes and validates a helper configuration:
// unknown keys are errors naming their line and the accepted keys, and
// every invalid field is reported at once.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := config.DecodeDocument(data, &c, "set x509, jwt or credentials", topKeys); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate reports every problem of the configuration, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.X509 == nil && len(c.JWT) == 0 && len(c.Credentials) == 0 {
		bad("x509", "nothing to write: set x509, jwt or credentials")
	}
	if x := c.X509; x != nil {
		if x.Dir == "" {
			bad("x509.dir", "required: the directory the files are written to")
		}
		names := map[string]string{}
		for _, f := range []struct{ key, name string }{
			{"x509.cert", x.Cert}, {"x509.key", x.Key}, {"x509.bundle", x.Bundle}, {"x509.pkcs12", x.PKCS12},
		} {
			switch {
			case f.name == "" && (f.key == "x509.cert" || f.key == "x509.key"):
				bad(f.key, "required: a file name inside x509.dir, such as svid.pem")
			case f.name == "":
			case f.name != filepath.Base(f.name) || f.name == "." || f.name == ".." || strings.HasPrefix(f.name, ".."):
				bad(f.key, "%q must be a plain file name inside x509.dir (no /, not starting with ..)", f.name)
			case names[f.name] != "" && !(f.key == "x509.key" && names[f.name] == "x509.cert"):
				bad(f.key, "%q is already used by %s", f.name, names[f.name])
			default:
				names[f.name] = f.key
			}
		}
		switch {
		case x.PKCS12 != "" && x.PKCS12PasswordFile == "":
			bad("x509.pkcs12_password_file", "required with x509.pkcs12: a file holding the keystore password")
		case x.PKCS12 == "" && x.PKCS12PasswordFile != "":
			bad("x509.pkcs12_password_file", "set without x509.pkcs12")
		}
	}
	files := map[string]bool{}
	for i, j := range c.JWT {
		key := fmt.Sprintf("jwt[%d]", i)
		if strings.TrimSpace(j.Audience) == "" {
			bad(key+".audience", "required: the audience the JWT-SVID is for")
		}
		switch {
		case j.File == "":
			bad(key+".file", "required: the path the token is written to")
		case files[filepath.Clean(j.File)]:
			bad(key+".file", "%q is used by an earlier jwt entry", j.File)
		}
		files[filepath.Clean(j.File)] = true
	}
	if c.BrokerURL != "" {
		if _, err := brokerclient.ParseURL("broker_url", c.BrokerURL); err != nil {
			errs = append(errs, err)
		}
	}
	for i, cr := range c.Credentials {
		key := fmt.Sprintf("credentials[%d]", i)
		switch {
		case cr.Name == "":
			bad(key+".name", "required: the name of a credential the broker offers, such as orders-db")
		case strings.TrimSpace(cr.Name) != cr.Name || strings.ContainsAny(cr.Name, " \t\r\n"):
			bad(key+".name", "%q must not contain spaces", cr.Name)
		}
		for k := range cr.Context {
			if strings.TrimSpace(k) == "" {
				bad(key+".context", "keys must not be empty")
			}
		}
		if cr.TTL < 0 {
			bad(key+".ttl", "must not be negative (leave it out for the credential's default_ttl)")
		}
		if cr.Template == "" {
			bad(key+".template", "required: a Go text/template file over the credential's fields, such as /etc/app/db.properties.tmpl")
		}
		switch {
		case cr.File == "":
			bad(key+".file", "required: the path the rendered credential is written to")
		case files[filepath.Clean(cr.File)]:
			bad(key+".file", "%q is used by an earlier jwt or credentials entry", cr.File)
		case cr.Template != "" && filepath.Clean(cr.File) == filepath.Clean(cr.Template):
			bad(key+".file", "%q is the template itself", cr.File)
		case c.X509.holds(cr.File):
			bad(key+".file", "%q is one of the x509 files (or their generation directory) in x509.dir", cr.File)
		}
		files[filepath.Clean(cr.File)] = true
	}
	if o := c.OnChange; o != nil {
		switch {
		case len(o.Command) > 0 && o.Signal != "":
			bad("on_change", "set command or signal, not both")
		case len(o.Command) == 0 && o.Signal == "":
			bad("on_change", "set command (a list: program and arguments) or signal with pid_file")
		case len(o.Command) > 0 && o.Command[0] == "":
			bad("on_change.command", "the first element is the program to run and cannot be empty")
		case o.Signal != "":
			if _, ok := signals[o.Signal]; !ok {
				bad("on_change.signal", "%q is not one of %s", o.Signal, strings.Join(signalNames(), ", "))
			}
			if o.PIDFile == "" {
				bad("on_change.pid_file", "required with on_change.signal: the file holding the process ID to signal")
			}
		}
		if o.PIDFile != "" && o.Signal == "" {
			bad("on_change.pid_file", "only used with on_change.signal")
		}
		if o.Timeout < 0 {
			bad("on_change.timeout", "must not be negative")
		}
	}
	return errors.Join(errs...)
}

// holds reports whether path is one of x's files or inside one of its
// generation directories; false for a nil x.
func (x *X509) holds(path string) bool {
	if x == nil || x.Dir == "" {
		return false
	}
	rel, err := filepath.Rel(filepath.Clean(x.Dir), filepath.Clean(path))
	if err != nil || rel == "." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || rel == ".." {
		return false
	}
	first, _, _ := strings.Cut(rel, string(filepath.Separator))
	return strings.HasPrefix(first, genPrefix) || slices.Contains([]string{x.Cert, x.Key, x.Bundle, x.PKCS12}, first)
}

func (o *OnChange) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultOnChangeTimeout
	}
	return time.Duration(o.Timeout)
}
