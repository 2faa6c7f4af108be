package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// maxListedKeys is how many accepted keys an unknown key's error lists
// when it has no close match; a larger section points at the flags.
const maxListedKeys = 16

// keyHint says what to write instead of the unknown key: the key of the
// same section it is close to (a typo, or a flag's spelling with '-'),
// the key path of the flag it is spelt like (ca_ttl: ca.ttl), or else the
// keys the section accepts.
// path is the section's own ("" at the top, ".store" below it).
func keyHint(path, key string, fields map[string]reflect.Type, flagKeys map[string]string) string {
	in := func(k string) string { return strings.TrimPrefix(path+"."+k, ".") }
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	if _, ok := fields[norm]; ok {
		return fmt.Sprintf("did you mean %s?", in(norm))
	}
	if path, ok := flagKeys[norm]; ok {
		return fmt.Sprintf("did you mean %s (the key of --%s)?", path, strings.ReplaceAll(norm, "_", "-"))
	}
	known := slices.Sorted(maps.Keys(fields))
	best, bestDist := "", max(2, len(norm)/4)+1
	for _, k := range known {
		if d := editDistance(norm, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" && len(norm) >= 4 {
		// A key cut short or run on (ca_bundle for ca_bundle_path), when
		// only one key is.
		for _, k := range known {
			if strings.HasPrefix(k, norm) || strings.HasPrefix(norm, k) && len(k) >= 4 {
				if best != "" {
					best = ""
					break
				}
				best = k
			}
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %s?", in(best))
	}
	if len(known) > maxListedKeys {
		return fmt.Sprintf("this section has %d keys (%s, …); every flag has one: --store-driver is store.driver",
			len(known), strings.Join(known[:maxListedKeys/2], ", "))
	}
	return "use one of " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance of a and b (bytes: keys are
// ASCII), with a swap of two neighbours counted as one edit.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
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
