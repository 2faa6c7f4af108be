package model

import (
	"fmt"
	"strings"
)

// MaxSerialHexLen bounds a certificate serial number in hex: RFC 5280 allows
// at most 20 octets.
const MaxSerialHexLen = 40

// ParseSerial normalizes a certificate serial number written in hex, as
// operators copy it from openssl, a browser or Signet's own output: an
// optional 0x prefix, optional colons or spaces between bytes, either
// case. It returns the lowercase form without leading zeros that Signet
// stores and compares (big.Int.Text(16)). Anything else is an error naming
// what would be accepted.
func ParseSerial(s string) (string, error) {
	orig := s
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	s = strings.NewReplacer(":", "", " ", "").Replace(s)
	if s == "" {
		return "", fmt.Errorf("serial is empty: give the certificate's serial number in hex, for example 3f:a2:09 or 3fa209")
	}
	if len(s) > MaxSerialHexLen {
		return "", fmt.Errorf("serial is %d hex digits long: a certificate serial number has at most %d", len(s), MaxSerialHexLen)
	}
	for i, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("serial %q: character %d (%q) is not a hex digit: give the serial number in hex, for example 3f:a2:09 or 3fa209",
				truncate(orig), i+1, c)
		}
	}
	s = strings.TrimLeft(strings.ToLower(s), "0")
	if s == "" {
		return "", fmt.Errorf("serial is zero: certificate serial numbers are positive")
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
