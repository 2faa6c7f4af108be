package server

import (
	"net"
	"testing"
)

func TestAdvertiseURL(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40123}
	cases := []struct {
		name, httpAddr, explicit string
		addr                     net.Addr
		want                     string
	}{
		{"explicit wins", "0.0.0.0:8443", "https://signet.example.com:8443/", bound, "https://signet.example.com:8443"},
		{"concrete host, bound port", "127.0.0.1:0", "", bound, "https://127.0.0.1:40123"},
		{"name host", "signet.internal:8443", "", bound, "https://signet.internal:40123"},
		{"ipv4 wildcard", "0.0.0.0:8443", "", bound, ""},
		{"ipv6 wildcard", "[::]:8443", "", bound, ""},
		{"empty host", ":8443", "", bound, ""},
		{"no listener", "", "", nil, ""},
	}
	for _, c := range cases {
		got := advertiseURL(Config{HTTPAddress: c.httpAddr, HTTPAdvertiseURL: c.explicit}, c.addr)
		if got != c.want {
			t.Errorf("%s: advertiseURL(%q, %q) = %q, want %q", c.name, c.httpAddr, c.explicit, got, c.want)
		}
	}
}

func TestCheckAdvertiseURL(t *testing.T) {
	for _, ok := range []string{"https://a.example:8443", "https://127.0.0.1:1/", "https://[::1]:8443"} {
		if err := checkAdvertiseURL(ok); err != nil {
			t.Errorf("checkAdvertiseURL(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"http://a:1", "https://a", "https://u@a:1", "https://a:1/x", "https://a:1?q", "https://a:0", "https://a:99999", "a:1", ""} {
		err := checkAdvertiseURL(bad)
		if err == nil {
			t.Errorf("checkAdvertiseURL(%q) = nil, want an error", bad)
		} else if want := "http_advertise_url"; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Errorf("checkAdvertiseURL(%q) = %v, want it to name %s", bad, err, want)
		}
	}
}
