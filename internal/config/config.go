// Package config reads Signet's YAML configuration files.
//
// Files are decoded strictly: an unknown key is an error naming it and its
// line, so a typo never silently falls back to a default. Durations are Go
// duration strings ("90s", "1h", "720h"). Every field may also be given as a
// command-line flag; flags override the file (the CLI applies them).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds configuration files.
const maxFileSize = 1 << 20

// Duration is a time.Duration written as a Go duration string in YAML.
type Duration time.Duration

// UnmarshalYAML parses a duration string such as "1h30m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 90s, 15m or 1h", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration: use a positive Go duration such as 90s, 15m or 1h", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default on a terminal) or json
}

// Store selects the server's store.
type Store struct {
	Driver string `yaml:"driver"` // sqlite (default) or postgres
	DSN    string `yaml:"dsn"`
}

// CA configures the server's certificate authority.
type CA struct {
	KeyType   string   `yaml:"key_type"`
	TTL       Duration `yaml:"ttl"`
	JWTKeyTTL Duration `yaml:"jwt_key_ttl"`
}

// Server is the server's configuration file.
type Server struct {
	TrustDomain    string   `yaml:"trust_domain"`
	DataDir        string   `yaml:"data_dir"`
	BindAddress    string   `yaml:"bind_address"`
	AdminSocket    string   `yaml:"admin_socket"`
	AdminUIDs      []uint32 `yaml:"admin_uids"`
	HealthAddress  string   `yaml:"health_address"`
	Store          Store    `yaml:"store"`
	CA             CA       `yaml:"ca"`
	DefaultX509TTL Duration `yaml:"default_x509_ttl"`
	DefaultJWTTTL  Duration `yaml:"default_jwt_ttl"`
	AgentTTL       Duration `yaml:"agent_ttl"`
	JoinTokenTTL   Duration `yaml:"join_token_ttl"`
	Log            Log      `yaml:"log"`
	// KeyManager names where CA and JWT keys live: {disk: {dir: …}}
	// (default disk in DATA_DIR/keys).
	KeyManager Plugins `yaml:"key_manager"`
	// UpstreamAuthority, when it names a kind, makes the CA an intermediate
	// under an existing CA: {disk: {cert_file, key_file, bundle_file}}.
	UpstreamAuthority Plugins `yaml:"upstream_authority"`
	// NodeAttestors enables node attestation methods, each with its
	// settings (see Plugins); join_token is on unless disabled.
	NodeAttestors Plugins `yaml:"node_attestors"`
}

// Agent is the agent's configuration file.
type Agent struct {
	ServerAddress string   `yaml:"server_address"`
	TrustBundle   string   `yaml:"trust_bundle"` // path to a PEM bundle for bootstrap
	TrustDomain   string   `yaml:"trust_domain"` // optional; derived from the bundle
	JoinToken     string   `yaml:"join_token"`
	DataDir       string   `yaml:"data_dir"`
	Socket        string   `yaml:"socket"`
	SyncInterval  Duration `yaml:"sync_interval"`
	AttestTimeout Duration `yaml:"attest_timeout"`
	HealthAddress string   `yaml:"health_address"`
	Log           Log      `yaml:"log"`
	// NodeAttestor is the one node attestation method the agent uses,
	// with its settings, instead of a join token.
	NodeAttestor Plugins `yaml:"node_attestor"`
}

// LoadServer reads a server configuration file.
func LoadServer(path string) (*Server, error) {
	var c Server
	if err := load(path, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadAgent reads an agent configuration file.
func LoadAgent(path string) (*Agent, error) {
	var c Agent
	if err := load(path, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func load(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("config %s is larger than %d bytes", path, maxFileSize)
	}
	if err := Decode(data, v); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode strictly decodes YAML into v: unknown keys, several documents and
// type mismatches are errors that name the line and field. An empty document
// leaves v unchanged.
func Decode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return cleanYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document: a config file holds exactly one")
	}
	return nil
}

// cleanYAMLError trims yaml.v3's Go type names ("in type config.Server")
// that mean nothing to an operator.
func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	for _, t := range []string{"config.Server", "config.Agent", "config.Store", "config.CA", "config.Log"} {
		msg = strings.ReplaceAll(msg, " in type "+t, "")
	}
	return errors.New(msg)
}
