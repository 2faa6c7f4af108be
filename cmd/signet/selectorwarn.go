package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// selectorWarner writes to w one warning for each selector type of the
// entries it checks that no built-in attestor produces
// (model.LookupSelectorType). The server accepts such types, since a
// plugin may produce them, but a misspelt type ("uinx") would otherwise
// make an entry that never matches without a word. Each type is named
// once, however many entries use it. Entries of CI jobs (parented to
// spiffe://<td>/signet/ci/<issuer>) carry selectors typed by the issuer's
// configured name, which the server's oidc_issuers produce: those are not
// warned about.
type selectorWarner struct {
	w      io.Writer
	warned map[string]bool
}

func newSelectorWarner(w io.Writer) *selectorWarner {
	return &selectorWarner{w: w, warned: make(map[string]bool)}
}

// check warns about e's selector types not warned about before.
func (s *selectorWarner) check(e *commonv1.Entry) {
	issuer, looked := "", false // parsing the parent ID only when needed
	for _, sel := range e.GetSelectors() {
		typ := sel.GetType()
		if _, known := model.LookupSelectorType(typ); known || s.warned[typ] {
			continue
		}
		if !looked {
			issuer, looked = ciIssuerOf(e.GetParentId()), true
		}
		if typ == issuer {
			continue
		}
		s.warned[typ] = true
		fmt.Fprintf(s.w, "warning: selector type %q is not known to this server's built-in attestors; "+
			"entries with it match only if a plugin produces it\n", typ)
	}
}

// warnUnknownSelectorTypes checks entries with one selectorWarner.
func warnUnknownSelectorTypes(w io.Writer, entries []*commonv1.Entry) {
	s := newSelectorWarner(w)
	for _, e := range entries {
		s.check(e)
	}
}

// ciIssuerOf returns the OIDC issuer name of a CI parent ID
// (spiffe://<td>/signet/ci/<name>, see ci.ParentID), or "".
func ciIssuerOf(parent string) string {
	id, err := spiffeid.FromString(parent)
	if err != nil {
		return ""
	}
	name, ok := strings.CutPrefix(id.Path(), "/signet/ci/")
	if !ok || strings.Contains(name, "/") {
		return ""
	}
	return name
}
