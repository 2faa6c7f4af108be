package model

import (
	"strings"
	"testing"
)

func TestParseSerial(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{name: "plain", in: "3fa209", want: "3fa209"},
		{name: "upper with colons", in: "3F:A2:09", want: "3fa209"},
		{name: "0x and leading zeros", in: "0x00ab", want: "ab"},
		{name: "spaces", in: " 0a 0b ", want: "a0b"},
		{name: "empty", in: "", err: "empty"},
		{name: "not hex", in: "12zz", err: "not a hex digit"},
		{name: "too long", in: strings.Repeat("a", 41), err: "at most 40"},
		{name: "zero", in: "00", err: "zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSerial(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "serial") {
					t.Fatalf("ParseSerial(%q) = %q, %v; want an error naming serial and %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSerial(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"3fa209", "3F:A2:09", "0x00", "", "zz", strings.Repeat("f", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSerial(s)
		if err != nil {
			return
		}
		if got == "" || len(got) > MaxSerialHexLen || strings.TrimLeft(got, "0123456789abcdef") != "" || got[0] == '0' {
			t.Fatalf("ParseSerial(%q) = %q: not a canonical serial", s, got)
		}
		if again, err := ParseSerial(got); err != nil || again != got {
			t.Fatalf("ParseSerial(ParseSerial(%q)) = %q, %v; want %q", s, again, err, got)
		}
	})
}
