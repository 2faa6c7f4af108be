package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// Flags binds the fields of a configuration struct T to command-line flags.
// Each field tagged `flag:"name"` (with its help text in `usage:"…"`)
// becomes the flag --name; nested structs are followed, so Store.Driver,
// tagged `flag:"store-driver"`, is the key store.driver of the file and the
// flag --store-driver. Fields without a flag tag (the plugin sections) are
// file-only.
//
// Create Flags with BindFlags before the flag set is parsed; after parsing,
// Merge lays the flags given explicitly over a loaded file. The one rule,
// for every field: a flag set on the command line wins, then the file, then
// the default.
type Flags[T any] struct {
	fs       *pflag.FlagSet
	values   *T // what the flags hold; the defaults until parsed
	defaults T
	fields   []flagField
}

// flagField is one bound field.
type flagField struct {
	flag  string // "store-driver"
	key   string // "store.driver"
	index []int  // reflect field index path within T
}

// BindFlags registers a flag on fs for every flag-tagged field of T. The
// fields of defaults are the defaults shown in help and applied by Merge to
// fields neither a flag nor the file sets. It panics when T is not a struct
// or a tagged field has a type no flag can hold: a programming error, caught
// by any test that builds the command.
func BindFlags[T any](fs *pflag.FlagSet, defaults T) *Flags[T] {
	f := &Flags[T]{fs: fs, defaults: defaults}
	v := defaults
	f.values = &v
	rv := reflect.ValueOf(f.values).Elem()
	if rv.Kind() != reflect.Struct {
		panic(fmt.Sprintf("config.BindFlags: %s is not a struct", rv.Type()))
	}
	f.bind(rv, nil, "")
	return f
}

func (f *Flags[T]) bind(rv reflect.Value, index []int, prefix string) {
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || key == "" || key == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		fv := rv.Field(i)
		name := sf.Tag.Get("flag")
		if name == "" {
			if fv.Kind() == reflect.Struct {
				f.bind(fv, idx, prefix+key+".")
			}
			continue
		}
		usage := sf.Tag.Get("usage")
		switch p := fv.Addr().Interface().(type) {
		case *string:
			f.fs.StringVar(p, name, *p, usage)
		case *bool:
			f.fs.BoolVar(p, name, *p, usage)
		case *int:
			f.fs.IntVar(p, name, *p, usage)
		case *Duration:
			f.fs.Var(p, name, usage)
		case *[]string:
			f.fs.StringSliceVar(p, name, *p, usage)
		case *[]uint32:
			f.fs.Var(&uint32List{p: p}, name, usage)
		default:
			panic(fmt.Sprintf("config.BindFlags: field %s (%s) has no flag type", sf.Name, sf.Type))
		}
		f.fields = append(f.fields, flagField{flag: name, key: prefix + key, index: idx})
	}
}

// Merge lays the flags over c, typically a loaded file: each flag given on
// the command line replaces its field; each field still zero then takes its
// default.
func (f *Flags[T]) Merge(c *T) {
	dst := reflect.ValueOf(c).Elem()
	src := reflect.ValueOf(f.values).Elem()
	def := reflect.ValueOf(&f.defaults).Elem()
	for _, fl := range f.fields {
		d := dst.FieldByIndex(fl.index)
		switch {
		case f.fs.Changed(fl.flag):
			d.Set(src.FieldByIndex(fl.index))
		case d.IsZero():
			d.Set(def.FieldByIndex(fl.index))
		}
	}
}

// Keys maps every bound flag name to its configuration key ("store-driver"
// to "store.driver").
func (f *Flags[T]) Keys() map[string]string {
	out := make(map[string]string, len(f.fields))
	for _, fl := range f.fields {
		out[fl.flag] = fl.key
	}
	return out
}

// Name names a setting for an error message the way the user gave it: the
// flag ("--trust-domain") when it was set on the command line, otherwise
// the flag and the key ("--trust-domain (trust_domain)"). An unknown flag
// name is returned as is.
func (f *Flags[T]) Name(flag string) string {
	for _, fl := range f.fields {
		if fl.flag != flag {
			continue
		}
		if f.fs.Changed(flag) {
			return "--" + flag
		}
		return "--" + flag + " (" + fl.key + ")"
	}
	return flag
}

// uint32List is a pflag.Value for []uint32: comma-separated, repeatable.
// The first Set replaces the default; later ones append.
type uint32List struct {
	p   *[]uint32
	set bool
}

func (l *uint32List) Set(s string) error {
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a number from 0 to %d", part, uint32(1<<32-1))
		}
		out = append(out, uint32(n))
	}
	if !l.set {
		*l.p = nil
		l.set = true
	}
	*l.p = append(*l.p, out...)
	return nil
}

func (l *uint32List) String() string {
	parts := make([]string, len(*l.p))
	for i, n := range *l.p {
		parts[i] = strconv.FormatUint(uint64(n), 10)
	}
	return strings.Join(parts, ",")
}

func (l *uint32List) Type() string { return "uids" }
