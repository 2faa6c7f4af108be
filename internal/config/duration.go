package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Day and Week are the units ParseDuration accepts beyond
// time.ParseDuration's.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// maxDuration bounds durations: a hundred years is plenty and keeps
// arithmetic with times far from overflowing.
const maxDuration = 100 * 365 * Day

// DurationForms describes the accepted duration syntax, for error messages.
const DurationForms = "a duration such as 90s, 15m, 1h30m, 1d or 1w (units: ms, s, m, h, d = 24h, w = 7d)"

// errDuration is returned for every malformed duration.
var errDuration = errors.New("want " + DurationForms)

// ParseDuration parses a non-negative duration: a Go duration ("90s",
// "1h30m"), optionally preceded by whole weeks and days ("1w", "30d",
// "1d12h"). It is the one duration syntax of Signet's flags, configuration
// files and entry files. "0" is zero.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errDuration
	}
	if s == "0" {
		return 0, nil
	}
	var d time.Duration
	rest := s
	for _, u := range []struct {
		sep  byte
		unit time.Duration
	}{{'w', Week}, {'d', Day}} {
		i := strings.IndexByte(rest, u.sep)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(rest[:i], 10, 32)
		if err != nil || time.Duration(n) > maxDuration/u.unit {
			return 0, errDuration
		}
		d += time.Duration(n) * u.unit
		rest = rest[i+1:]
	}
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil || v < 0 || rest[0] == '+' {
			return 0, errDuration
		}
		d += v
	}
	if d > maxDuration {
		return 0, errDuration
	}
	return d, nil
}

// FormatDuration renders d the way ParseDuration reads it, for people:
// whole days as "30d", shorter spans as a trimmed Go duration ("12h",
// "1h30m", "45s"), zero as "0".
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 0:
		return d.String()
	case d >= Day && d%Day == 0:
		return fmt.Sprintf("%dd", d/Day)
	case d >= Day:
		return fmt.Sprintf("%dd%s", d/Day, FormatDuration(d%Day))
	case d < time.Second || d%time.Second != 0:
		return d.String()
	}
	s := d.String() // "1h0m0s", "1h30m0s", "2m0s", "45s", "10s"
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Duration is a time.Duration written in ParseDuration's syntax, in YAML
// files and on the command line (it is a pflag.Value). The zero value is
// zero: "not set, use the default".
type Duration time.Duration

// UnmarshalYAML parses a duration string such as "1h30m" or "7d".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want %s", n.Line, DurationForms)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: %w", n.Line, s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as FormatDuration does.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats the duration with FormatDuration.
func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// Set parses s with ParseDuration (pflag.Value).
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Type names the value in help text (pflag.Value).
func (d *Duration) Type() string { return "duration" }

// DurationFlag is a pflag.Value writing a time.Duration in ParseDuration's
// syntax, for flags outside configuration structs:
//
//	fl.Var(config.DurationFlag(&timeout), "timeout", "…")
func DurationFlag(p *time.Duration) *Duration { return (*Duration)(p) }
