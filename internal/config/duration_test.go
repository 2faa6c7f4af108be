package config

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestParseDuration(t *testing.T) {
	good := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0}, {"90s", 90 * time.Second}, {"15m", 15 * time.Minute}, {"1h30m", 90 * time.Minute},
		{"1d", 24 * time.Hour}, {"30d", 30 * Day}, {"1d12h", 36 * time.Hour}, {"1w", Week}, {"1w2d", 9 * Day},
		{"2d30m", 2*Day + 30*time.Minute}, {"500ms", 500 * time.Millisecond}, {" 1h ", time.Hour},
	}
	for _, tt := range good {
		if got, err := ParseDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "d", "1", "soon", "-1h", "+1h", "1h1d", "1.5d", "1dd", "1d-1h", "99999999d", "1x"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0"}, {time.Hour, "1h"}, {90 * time.Minute, "1h30m"}, {5 * time.Minute, "5m"}, {45 * time.Second, "45s"},
		{Day, "1d"}, {36 * time.Hour, "1d12h"}, {1500 * time.Millisecond, "1.5s"},
		{10 * time.Second, "10s"}, {70 * time.Second, "1m10s"}, {time.Hour + 20*time.Second, "1h0m20s"}, {20 * time.Minute, "20m"},
	} {
		got := FormatDuration(tt.in)
		if got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseDuration(got); err != nil || back != tt.in {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", tt.in, back, err)
		}
	}
}

// TestDurationFlag: flags and files read the same syntax.
func TestDurationFlag(t *testing.T) {
	var d time.Duration
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Var(DurationFlag(&d), "ttl", "")
	if err := fs.Parse([]string{"--ttl", "1d"}); err != nil || d != Day {
		t.Fatalf("--ttl 1d = %v, %v", d, err)
	}
	if err := fs.Parse([]string{"--ttl", "soon"}); err == nil {
		t.Fatal("--ttl soon: no error")
	}
	var c Agent
	if err := Decode([]byte("sync_interval: 1d\n"), &c); err != nil || time.Duration(c.SyncInterval) != Day {
		t.Fatalf("sync_interval: 1d = %v, %v", c.SyncInterval, err)
	}
}
