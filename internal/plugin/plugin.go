// Package plugin is the registry mechanism behind every pluggable kind of
// Signet: node attestors, workload attestors, key managers, upstream
// authorities and, later, credential providers. A Registry holds the
// built-in implementations of one kind by name; the names double as the
// configuration keys that enable them. The lists themselves are written out
// in one place, internal/builtin: there is no init() or blank-import
// wiring.
//
// Each plugin has a typed configuration that the registry decodes strictly
// from the plugin's section of the configuration file (unknown keys are
// errors) and validates, and every problem of every configured plugin is
// reported at once, each with its field path ("node_attestors.x509pop.
// ca_bundle_path: …").
package plugin

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/config"
)

// Decoder decodes a plugin's configuration section into v, a pointer to the
// plugin's typed configuration, strictly and with validation (see
// config.DecodeNode). Errors already carry the field path.
type Decoder func(v any) error

// Factory builds one plugin of kind T from dependencies D and its
// configuration.
type Factory[T, D any] struct {
	// Name is the plugin's stable name and configuration key, such as
	// "join_token" or "x509pop".
	Name string
	// New builds the plugin. It decodes its configuration with decode
	// (exactly once, even when the section is empty, so defaults are
	// validated too) and returns an error naming fields by their path.
	New func(deps D, decode Decoder) (T, error)
}

// ErrDisabled, returned by a Factory's New, means the plugin's
// configuration switched it off (join_token: {enabled: false}); BuildAll
// leaves it out without an error.
var ErrDisabled = errors.New("plugin disabled by its configuration")

// Registry is the set of built-in plugins of one kind. Create it with New;
// it is read-only afterwards and safe for concurrent use.
type Registry[T, D any] struct {
	kind      string // human name, "node attestor"
	key       string // configuration key, "node_attestors"
	factories map[string]Factory[T, D]
}

// New returns the registry of one kind. kind is its human name ("node
// attestor"); key is the configuration section that enables its plugins
// ("node_attestors"). A duplicate or malformed name is an error.
func New[T, D any](kind, key string, factories ...Factory[T, D]) (*Registry[T, D], error) {
	r := &Registry[T, D]{kind: kind, key: key, factories: make(map[string]Factory[T, D], len(factories))}
	for _, f := range factories {
		if err := ValidName(f.Name); err != nil {
			return nil, fmt.Errorf("%s registry: %w", kind, err)
		}
		if f.New == nil {
			return nil, fmt.Errorf("%s registry: %s has no constructor", kind, f.Name)
		}
		if _, dup := r.factories[f.Name]; dup {
			return nil, fmt.Errorf("%s registry: %q is registered twice", kind, f.Name)
		}
		r.factories[f.Name] = f
	}
	return r, nil
}

// ValidName reports whether name is usable as a plugin name: 1 to 64
// lower-case letters, digits and '_', starting with a letter.
func ValidName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("plugin name %q: want 1 to 64 characters", name)
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("plugin name %q: start with a lower-case letter", name)
	}
	if strings.TrimLeft(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return fmt.Errorf("plugin name %q: use lower-case letters, digits and '_'", name)
	}
	return nil
}

// Names returns the registered names, sorted.
func (r *Registry[T, D]) Names() []string { return slices.Sorted(maps.Keys(r.factories)) }

// Has reports whether name is registered.
func (r *Registry[T, D]) Has(name string) bool {
	_, ok := r.factories[name]
	return ok
}

// Build makes the plugin called name from its configuration section n (nil
// or empty: its defaults). An unknown name is an error listing the known
// ones.
func (r *Registry[T, D]) Build(deps D, name string, n *yaml.Node) (T, error) {
	if _, ok := r.factories[name]; !ok {
		var zero T
		return zero, fmt.Errorf("%s.%s: unknown %s: use one of %s", r.key, name, r.kind, strings.Join(r.Names(), ", "))
	}
	return r.BuildAt(deps, name, r.key+"."+name, n)
}

// BuildAt is Build for plugins whose section is not keyed by the plugin's
// name, such as a broker credential naming its provider
// (broker.credentials.orders-db): path is the section's field path, which
// prefixes the plugin's errors.
func (r *Registry[T, D]) BuildAt(deps D, name, path string, n *yaml.Node) (T, error) {
	var zero T
	f, ok := r.factories[name]
	if !ok {
		return zero, fmt.Errorf("%s: unknown %s %q: use one of %s", path, r.kind, name, strings.Join(r.Names(), ", "))
	}
	decode := func(v any) error {
		if err := config.DecodeNode(path, n, v); err != nil {
			return &configError{err}
		}
		return nil
	}
	p, err := f.New(deps, decode)
	if errors.Is(err, ErrDisabled) {
		return zero, err
	}
	if err != nil {
		if ce := (*configError)(nil); !errors.As(err, &ce) {
			err = fmt.Errorf("%s: %w", path, err)
		}
		return zero, err
	}
	return p, nil
}

// FieldError marks err as already naming its field paths in full
// ("upstream_authority.disk.cert_file: …"), so Build does not prefix it
// again. Factories use it for errors of a constructor that validates its
// own configuration.
func FieldError(err error) error {
	if err == nil {
		return nil
	}
	return &configError{err}
}

// configError marks errors that already name their field path.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// BuildAll makes every plugin configured in sections, in name order,
// leaving out those whose configuration disables them. Every
// problem is reported at once: unknown names and each plugin's own errors.
func (r *Registry[T, D]) BuildAll(deps D, sections config.Plugins) ([]T, error) {
	var out []T
	var errs []error
	for _, name := range sections.Names() {
		n := sections[name]
		p, err := r.Build(deps, name, &n)
		if errors.Is(err, ErrDisabled) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
