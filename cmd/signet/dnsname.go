package main

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// dnsNameRule says what a DNS name of an entry may be, for error messages.
const dnsNameRule = `use a DNS name: labels of ASCII letters, digits and '-' (not first or last in a label), ` +
	`1 to 63 bytes each, separated by dots, at most 253 bytes in all, optionally starting with the wildcard label "*."`

// checkDNSName checks one DNS name given for an X509-SVID before it is
// sent, so the message names the field and what is allowed. IP addresses
// are refused: an entry's names are DNS SANs only.
func checkDNSName(field, name string) error {
	bad := func(why string) error { return fmt.Errorf("%s %q: %s: %s", field, name, why, dnsNameRule) }
	host := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Errorf("%s %q is an IP address: only DNS names are allowed (IP address SANs are not supported)", field, name)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > 253:
		return bad(fmt.Sprintf("%d bytes long", len(name)))
	}
	rest := strings.TrimPrefix(name, "*.")
	for _, label := range strings.Split(rest, ".") {
		switch {
		case label == "":
			return bad("empty label")
		case len(label) > 63:
			return bad(fmt.Sprintf("label %q is %d bytes long", label, len(label)))
		case label[0] == '-' || label[len(label)-1] == '-':
			return bad(fmt.Sprintf("label %q starts or ends with '-'", label))
		}
		for _, r := range label {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
				continue
			}
			why := fmt.Sprintf("%q is not allowed", string(r))
			switch {
			case r == utf8.RuneError:
				why = "not valid UTF-8"
			case r > utf8.RuneSelf:
				why += " (write internationalized names in their xn-- punycode form)"
			}
			return bad(why)
		}
	}
	return nil
}
