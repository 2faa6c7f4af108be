package inventory

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Day and Week are the units ParseAge accepts beyond time.ParseDuration's.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// ageRE splits an age into weeks, days and the rest ("1w2d12h").
var ageRE = regexp.MustCompile(`^(?:(\d+)w)?(?:(\d+)d)?(.*)$`)

// errAge is the accepted forms, for error messages.
var errAge = errors.New("want a positive duration such as 30d, 12h, 1w or 1d12h")

// ParseAge parses a positive age: a Go duration ("12h", "90m") optionally
// preceded by weeks and days ("30d", "1w", "1d12h").
func ParseAge(s string) (time.Duration, error) {
	m := ageRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || m[1] == "" && m[2] == "" && m[3] == "" {
		return 0, errAge
	}
	var d time.Duration
	for i, unit := range []time.Duration{Week, Day} {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(maxAge/unit) {
			return 0, errAge
		}
		d += time.Duration(n) * unit
	}
	if m[3] != "" {
		rest, err := time.ParseDuration(m[3])
		if err != nil || rest < 0 {
			return 0, errAge
		}
		d += rest
	}
	if d <= 0 || d > maxAge {
		return 0, errAge
	}
	return d, nil
}

// maxAge bounds ages: a hundred years is plenty and keeps arithmetic with
// times far from overflowing.
const maxAge = 100 * 365 * Day

// FormatAge renders d for people: whole days as "30d", shorter spans as a
// trimmed Go duration ("12h", "1h30m", "45s").
func FormatAge(d time.Duration) string {
	switch {
	case d >= Day && d%Day == 0:
		return fmt.Sprintf("%dd", d/Day)
	case d >= Day:
		return fmt.Sprintf("%dd%s", d/Day, FormatAge(d%Day))
	case d < time.Second:
		return d.String()
	}
	s := d.Truncate(time.Second).String() // "1h0m0s", "1h30m0s", "2m0s", "45s"
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
