package main

import (
	"fmt"
	"io"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// warnUnknownSelectorTypes writes to w one warning for each selector type
// of entries that no built-in attestor produces (model.LookupSelectorType).
// The server accepts such types, since a plugin may produce them, but a
// misspelt type ("uinx") would otherwise make an entry that never matches
// without a word. Each type is named once per call, however many entries
// use it.
func warnUnknownSelectorTypes(w io.Writer, entries []*commonv1.Entry) {
	warned := make(map[string]bool)
	for _, e := range entries {
		for _, s := range e.GetSelectors() {
			typ := s.GetType()
			if _, known := model.LookupSelectorType(typ); known || warned[typ] {
				continue
			}
			warned[typ] = true
			fmt.Fprintf(w, "warning: selector type %q is not known to this server's built-in attestors; "+
				"entries with it match only if a plugin produces it\n", typ)
		}
	}
}
