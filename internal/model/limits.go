package model

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
)

// Limits on what an entry may hold. The server enforces them on every
// write (Entry.Validate); they keep one entry from filling the store, the
// agents' caches and their logs.
const (
	// MaxIDLen is the longest SPIFFE ID, in bytes: the SPIFFE spec's limit
	// (SPIFFE-ID §2.3). go-spiffe does not enforce it.
	MaxIDLen = 2048
	// MaxTrustDomainLen is the longest trust domain name (SPIFFE-ID §2.1).
	MaxTrustDomainLen = 255
	// MaxEntryIDLen bounds entry IDs chosen by callers.
	MaxEntryIDLen = 255
	// MaxHintLen is the longest hint (the Workload API serves at most 1024 bytes).
	MaxHintLen = 1024
	// MaxSelectors bounds the selectors of one entry.
	MaxSelectors = 64
	// MaxSelectorTypeLen and MaxSelectorValueLen bound one selector.
	MaxSelectorTypeLen  = 64
	MaxSelectorValueLen = 1024
	// MaxDNSNames and MaxDNSNameLen bound an entry's DNS SANs.
	MaxDNSNames   = 128
	MaxDNSNameLen = 253
	// MaxFederatesWith bounds an entry's federated trust domains.
	MaxFederatesWith = 32
	// MaxLabels, MaxLabelKeyLen and MaxLabelValueLen bound labels, of entries,
	// nodes and findings alike.
	MaxLabels        = 64
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 256
)

// FieldError prefixes err's public message with the field it is about
// ("selectors[2]: …"), keeping its kind.
func FieldError(field string, err error) error {
	msg, _ := errkind.Public(err)
	return errkind.New(errkind.Of(err), "%s: %s", field, msg)
}

// ValidateIDLen checks that id fits MaxIDLen; field names it in the error.
func ValidateIDLen(field string, id spiffeid.ID) error {
	return ValidateIDStringLen(field, id.String())
}

// ValidateIDStringLen is ValidateIDLen for an unparsed ID; check it before
// parsing one a caller sent.
func ValidateIDStringLen(field, id string) error {
	if len(id) > MaxIDLen {
		return errkind.New(errkind.InvalidArgument,
			"%s %q is %d bytes: a SPIFFE ID may be at most %d bytes", field, logsafe.Truncate(id), len(id), MaxIDLen)
	}
	return nil
}

// ValidateEntryID checks an entry ID a caller chose or names: 1 to
// MaxEntryIDLen printable characters without spaces.
func ValidateEntryID(field, id string) error {
	if id == "" || len(id) > MaxEntryIDLen || strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return errkind.New(errkind.InvalidArgument,
			"%s %q is not an entry id: use 1 to %d printable characters without spaces (%d bytes given)",
			field, logsafe.Truncate(id), MaxEntryIDLen, len(id))
	}
	return nil
}

// ValidateHint checks an entry's hint: at most MaxHintLen bytes of
// printable UTF-8 (no control characters).
func ValidateHint(field, hint string) error {
	if len(hint) > MaxHintLen {
		return errkind.New(errkind.InvalidArgument, "%s is %d bytes: at most %d", field, len(hint), MaxHintLen)
	}
	if !Printable(hint) {
		return errkind.New(errkind.InvalidArgument, "%s %q: use printable UTF-8 text, no control characters", field, logsafe.Truncate(hint))
	}
	return nil
}

// ValidateDNSName checks a DNS name for an X.509 SAN: labels of letters,
// digits and hyphens, an optional leading "*." wildcard, at most
// MaxDNSNameLen bytes.
func ValidateDNSName(name string) error {
	if name == "" || len(name) > MaxDNSNameLen {
		return errkind.New(errkind.InvalidArgument, "DNS name %q is %d bytes: want 1 to %d, such as web.example.org",
			logsafe.Truncate(name), len(name), MaxDNSNameLen)
	}
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		return errkind.New(errkind.InvalidArgument,
			"DNS name %q is an IP address: X509-SVIDs carry DNS names only, such as web.example.org", name)
	}
	rest := name
	if len(rest) > 2 && rest[:2] == "*." {
		rest = rest[2:]
	}
	label := 0
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '.':
			if label == 0 {
				return errkind.New(errkind.InvalidArgument, "DNS name %q has an empty label", name)
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && label > 0:
		case c >= utf8.RuneSelf:
			r, _ := utf8.DecodeRuneInString(rest[i:])
			return errkind.New(errkind.InvalidArgument,
				"DNS name %q: %q is not allowed: use ASCII letters, digits, '-' inside labels and '.' between them, with an optional leading \"*.\"; write internationalized names in punycode (xn--…)", name, r)
		default:
			return errkind.New(errkind.InvalidArgument,
				"DNS name %q: %q is not allowed: use ASCII letters, digits, '-' inside labels and '.' between them, with an optional leading \"*.\"", name, c)
		}
		label++
		if label > 63 {
			return errkind.New(errkind.InvalidArgument, "DNS name %q has a label over 63 bytes", name)
		}
	}
	if label == 0 {
		return errkind.New(errkind.InvalidArgument, "DNS name %q ends with an empty label", name)
	}
	return nil
}

// ValidateLabels checks label keys (see ValidateLabelKey) and values (at
// most MaxLabelValueLen printable characters), at most MaxLabels of them.
// field names the labels in errors.
func ValidateLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return errkind.New(errkind.InvalidArgument, "%s: %d labels, at most %d", field, len(labels), MaxLabels)
	}
	for k, v := range labels {
		if labelKeyOK(k) && labelValueOK(v) {
			continue
		}
		// Name the first bad label in key order, whatever order the map
		// gave: sorted only on this path, since every entry of a batch
		// passes here.
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			if err := ValidateLabelKey(field, k); err != nil {
				return err
			}
			if !labelValueOK(labels[k]) {
				return errkind.New(errkind.InvalidArgument, "%s[%q]: value must be at most %d printable characters", field, k, MaxLabelValueLen)
			}
		}
	}
	return nil
}

func labelValueOK(v string) bool { return len(v) <= MaxLabelValueLen && Printable(v) }

// ValidateLabelKey checks one label key: 1 to MaxLabelKeyLen lower-case
// letters, digits, '.', '_', '-' or '/'.
func ValidateLabelKey(field, k string) error {
	if !labelKeyOK(k) {
		return errkind.New(errkind.InvalidArgument,
			"%s: label key %q: use 1-%d lower-case letters, digits, '.', '_', '-' or '/', for example environment",
			field, logsafe.Truncate(k), MaxLabelKeyLen)
	}
	return nil
}

func labelKeyOK(k string) bool {
	if k == "" || len(k) > MaxLabelKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

// Printable reports whether s is valid UTF-8 without control characters.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// validateCollections checks the bounded lists and maps of an entry.
func (e *Entry) validateCollections() error {
	if len(e.DNSNames) > MaxDNSNames {
		return errkind.New(errkind.InvalidArgument, "dns_names: %d names, at most %d", len(e.DNSNames), MaxDNSNames)
	}
	for i, d := range e.DNSNames {
		if err := ValidateDNSName(d); err != nil {
			return FieldError(fmt.Sprintf("dns_names[%d]", i), err)
		}
	}
	if len(e.FederatesWith) > MaxFederatesWith {
		return errkind.New(errkind.InvalidArgument, "federates_with: %d trust domains, at most %d", len(e.FederatesWith), MaxFederatesWith)
	}
	for i, td := range e.FederatesWith {
		if n := td.Name(); len(n) > MaxTrustDomainLen {
			return errkind.New(errkind.InvalidArgument, "federates_with[%d] %q is %d bytes: a trust domain name may be at most %d",
				i, logsafe.Truncate(n), len(n), MaxTrustDomainLen)
		}
	}
	if err := ValidateHint("hint", e.Hint); err != nil {
		return err
	}
	return ValidateLabels("labels", e.Labels)
}
