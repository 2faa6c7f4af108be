package config

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Plugins is a configuration section that enables plugins by name, each key
// holding that plugin's own settings:
//
//	node_attestors:
//	  join_token: {}
//	  x509pop: {ca_bundle_path: /etc/signet/node-ca.pem}
//
// The settings stay raw YAML until the plugin registry decodes them, with
// DecodeNode, into the plugin's typed configuration.
type Plugins map[string]yaml.Node

// Names returns the plugin names in p, sorted.
func (p Plugins) Names() []string { return slices.Sorted(maps.Keys(p)) }

// Validator is implemented by configurations that check themselves after
// decoding. Validate reports every problem at once (errors.Join), each
// naming its field by its YAML key.
type Validator interface {
	Validate() error
}

// DecodeNode strictly decodes the YAML node n into v, a pointer to a
// struct: unknown keys are errors naming the line, the field path (path
// followed by the key) and the keys that would be accepted. After decoding,
// v is validated when it implements Validator, every problem prefixed with
// path. A nil or empty node leaves v unchanged (and still validates it).
func DecodeNode(path string, n *yaml.Node, v any) error {
	if n != nil && n.Kind != 0 && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		var errs []error
		checkKeys(path, n, reflect.TypeOf(v), nil, &errs)
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if err := n.Decode(v); err != nil {
			return fmt.Errorf("%s: %w", path, cleanYAMLError(err))
		}
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return prefixErrors(path, err)
		}
	}
	return nil
}

// prefixErrors puts path before each error joined in err.
func prefixErrors(path string, err error) error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, prefixErrors(path, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s.%w", path, err)
}

// checkKeys reports the mapping keys of n that the struct type t (or the
// struct a pointer, slice or map element of t is) has no field for.
// flagKeys maps the flags of the whole configuration, spelt as keys
// ("ca_ttl" for --ca-ttl), to their key paths ("ca.ttl"), for hints.
func checkKeys(path string, n *yaml.Node, t reflect.Type, flagKeys map[string]string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[yaml.Node]() {
		return // raw YAML, checked by whoever decodes it
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value: the zero value
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// Decoded by its own method: decode it here too, so that its
		// error names the path.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			line := fmt.Sprintf("line %d: ", n.Line)
			*errs = append(*errs, fmt.Errorf("%s%s: %s", line, path, strings.TrimPrefix(cleanYAMLError(err).Error(), line)))
		}
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return // a scalar decoded by UnmarshalText (spiffeid.ID, netip.Prefix): Decode reports its errors
	}
	if want, kind := nodeKind(t); want != "" && n.Kind != kind {
		name := path
		if name == "" {
			name = "the configuration" // a whole file that is not a mapping
		}
		*errs = append(*errs, fmt.Errorf("line %d: %s: want %s", n.Line, name, want))
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("line %d: %s.%s is not a known key: %s",
					k.Line, path, k.Value, keyHint(path, k.Value, fields, flagKeys)))
				continue
			}
			checkKeys(path+"."+k.Value, val, ft, flagKeys, errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				checkKeys(fmt.Sprintf("%s[%d]", path, i), c, t.Elem(), flagKeys, errs)
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				checkKeys(path+"."+n.Content[i].Value, n.Content[i+1], t.Elem(), flagKeys, errs)
			}
		}
	}
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// nodeKind is the kind of YAML node a value of type t decodes from, with
// its name for errors; "" when any node may do (interfaces).
func nodeKind(t reflect.Type) (string, yaml.Kind) {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping of keys", yaml.MappingNode
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "", 0 // []byte: a base64 scalar
		}
		return "a list", yaml.SequenceNode
	case reflect.Interface:
		return "", 0
	}
	return "a single value, not a list or mapping", yaml.ScalarNode
}

// yamlFields maps the YAML keys of struct type t to their field types,
// following inlined fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}
