package model

import (
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"testing/quick"
)

// selSet is a random selector list drawn from a small alphabet, so that
// duplicates and overlaps are common.
type selSet []Selector

func (selSet) Generate(r *rand.Rand, size int) reflect.Value {
	types := []string{"a", "b", "unix", "k8s"}
	values := []string{"1", "2", "uid:0", "uid:1000", "ns:prod", "x"}
	out := make(selSet, r.Intn(min(size, 8)+1))
	for i := range out {
		out[i] = Selector{Type: types[r.Intn(len(types))], Value: values[r.Intn(len(values))]}
	}
	return reflect.ValueOf(out)
}

func naiveSubset(sub, set []Selector) bool {
	for _, s := range sub {
		if !slices.Contains(set, s) {
			return false
		}
	}
	return true
}

func less(a, b Selector) bool { return a.Type < b.Type || a.Type == b.Type && a.Value < b.Value }

func TestSortSelectorsProperties(t *testing.T) {
	prop := func(in selSet) bool {
		orig := slices.Clone(in)
		out := SortSelectors(slices.Clone(in))
		for i := 1; i < len(out); i++ {
			if !less(out[i-1], out[i]) { // strictly increasing: sorted, no duplicates
				return false
			}
		}
		// Same set, and sorting again changes nothing.
		return naiveSubset(orig, out) && naiveSubset(out, orig) && slices.Equal(SortSelectors(slices.Clone(out)), out)
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 2000}); err != nil {
		t.Error(err)
	}
}

func TestSubsetOfProperties(t *testing.T) {
	prop := func(a, b selSet) bool {
		ca, cb := SortSelectors(slices.Clone(a)), SortSelectors(slices.Clone(b))
		union := SortSelectors(append(slices.Clone(ca), cb...))
		return SubsetOf(ca, cb) == naiveSubset(ca, cb) &&
			SubsetOf(ca, ca) && SubsetOf(nil, ca) &&
			SubsetOf(ca, union) && SubsetOf(cb, union) &&
			(len(ca) == 0 || SubsetOf(ca, nil) == false)
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 2000}); err != nil {
		t.Error(err)
	}
}
