package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// warnUnknownSelectorTypes writes to w one warning for each selector type
// of entries that no built-in attestor produces (model.LookupSelectorType).
// The server accepts such types, since a plugin may produce them, but a
// misspelt type ("uinx") would otherwise make an entry that never matches
// without a word. Each type is named once per call, however many entries
// use it. Entries of CI jobs (parented to spiffe://<td>/signet/ci/<issuer>)
// carry selectors typed by the issuer's configured name, which the server's
// oidc_issuers produce: those are not warned about.
func warnUnknownSelectorTypes(w io.Writer, entries []*commonv1.Entry) {
	warned := make(map[string]bool)
	for _, e := range entries {
		issuer := ciIssuerOf(e.GetParentId())
		for _, s := range e.GetSelectors() {
			typ := s.GetType()
			if _, known := model.LookupSelectorType(typ); known || warned[typ] || typ == issuer {
				continue
			}
			warned[typ] = true
			fmt.Fprintf(w, "warning: selector type %q is not known to this server's built-in attestors; "+
				"entries with it match only if a plugin produces it\n", typ)
		}
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
