package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/signet-id/signet/internal/suggest"
)

// maxListedKeys is how many accepted keys an unknown key's error lists
// when it has no close match; a larger section of a configuration with
// flags points at the flags instead.
const maxListedKeys = 16

// keyHint says what to write instead of the unknown key of the section at
// path ("" at the top, ".store" below it): the key of the section it is
// close to (a typo, or a flag's spelling with '-'), the key path of the
// flag it is spelt like (ca_ttl: ca.ttl), or else the keys the section
// accepts.
func keyHint(path, key string, fields map[string]reflect.Type, flagKeys map[string]string) string {
	in := func(k string) string { return strings.TrimPrefix(path+"."+k, ".") }
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	if _, ok := fields[norm]; ok {
		return fmt.Sprintf("did you mean %s?", in(norm))
	}
	if keyPath, ok := flagKeys[norm]; ok {
		return fmt.Sprintf("did you mean %s (the key of --%s)?", keyPath, strings.ReplaceAll(norm, "_", "-"))
	}
	known := slices.Sorted(maps.Keys(fields))
	if best := suggest.Closest(norm, known); best != "" {
		return fmt.Sprintf("did you mean %s?", in(best))
	}
	if len(known) > maxListedKeys && len(flagKeys) > 0 {
		return fmt.Sprintf("this section has %d keys (%s, …); every flag has one: --store-driver is store.driver",
			len(known), strings.Join(known[:maxListedKeys/2], ", "))
	}
	return "use one of " + strings.Join(known, ", ")
}

// flagKeysOf maps each flag of configuration type t, spelt as a key
// ("store_driver" for --store-driver), to its key path ("store.driver").
func flagKeysOf(t reflect.Type) map[string]string {
	out := map[string]string{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || key == "" || key == "-" {
				continue
			}
			if flag := f.Tag.Get("flag"); flag != "" {
				out[strings.ReplaceAll(flag, "-", "_")] = prefix + key
			}
			walk(f.Type, prefix+key+".")
		}
	}
	walk(t, "")
	return out
}
