package main

import (
	"bytes"
	"testing"
)

// TestTable: columns two spaces apart, the header as given, no borders and
// no trailing blanks; cells may be wider than their header.
func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := table(&b, [][]string{{"ID", "SPIFFE ID", "STATE"}, {"1", "spiffe://example.org/a", "active"}, {"22", "-", ""}}); err != nil {
		t.Fatal(err)
	}
	want := "ID  SPIFFE ID               STATE\n" +
		"1   spiffe://example.org/a  active\n" +
		"22  -\n"
	if got := b.String(); got != want {
		t.Errorf("table() =\n%q\nwant\n%q", got, want)
	}
	b.Reset()
	if err := table(&b, nil); err != nil || b.Len() != 0 {
		t.Errorf("table(nil) = %q, %v; want nothing", b.String(), err)
	}
}
