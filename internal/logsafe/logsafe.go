// Package logsafe bounds caller-supplied strings before they reach a log
// line, an audit record or an error message. Any value a caller chose (an
// entry id, a hint, a selector, an audience, a method name) goes through
// Truncate first, so that no request can make the server or the agent write
// megabytes per call.
package logsafe

import "unicode/utf8"

// MaxLen is the longest string Truncate returns unchanged, in bytes.
const MaxLen = 128

// Truncate returns s if it is at most MaxLen bytes, and otherwise its first
// MaxLen bytes (fewer, to end on a whole UTF-8 character) followed by "…".
func Truncate(s string) string {
	if len(s) <= MaxLen {
		return s
	}
	cut := MaxLen
	// Step back over continuation bytes so a multi-byte character is not
	// split; invalid UTF-8 stops the walk after utf8.UTFMax bytes.
	for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut] + "…"
}
