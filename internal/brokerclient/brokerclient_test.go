package brokerclient

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestResolveURLPrecedence(t *testing.T) {
	fromAgent := func(v string, err error) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { return v, err }
	}
	cases := []struct {
		name     string
		explicit string
		env      string
		learned  func(context.Context) (string, error)
		want     string // URL, or the error's words
		wantErr  bool
	}{
		{name: "flag wins", explicit: "https://flag:1", env: "https://env:2", learned: fromAgent("https://agent:3", nil), want: "https://flag:1"},
		{name: "env next", env: "https://env:2", learned: fromAgent("https://agent:3", nil), want: "https://env:2"},
		{name: "agent last", learned: fromAgent("https://agent:3", nil), want: "https://agent:3"},
		{name: "bad flag names the flag", explicit: "http://flag:1", want: `--broker "http://flag:1": want https://HOST:PORT`, wantErr: true},
		{name: "bad env names the variable", env: "ftp://x", want: EnvURL + ` "ftp://x"`, wantErr: true},
		{name: "user info refused", explicit: "https://u:p@host:1", want: "want https://HOST:PORT", wantErr: true},
		{name: "agent without URL", learned: fromAgent("", nil), want: "advertises no HTTPS address", wantErr: true},
		{name: "agent unreachable", learned: fromAgent("", errors.New("connection refused")), want: "the agent did not say: connection refused", wantErr: true},
		{name: "nothing at all", want: "--broker is required (or " + EnvURL + ")", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvURL, tc.env)
			u, err := ResolveURL(context.Background(), "--broker", tc.explicit, tc.learned)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ResolveURL() = %v, %v; want an error with %q", u, err, tc.want)
				}
				return
			}
			if err != nil || u.String() != tc.want {
				t.Fatalf("ResolveURL() = %v, %v; want %s", u, err, tc.want)
			}
		})
	}
}

func TestAgentTarget(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///run/signet/agent.sock": "unix:///run/signet/agent.sock",
		"unix:agent.sock":               "unix:agent.sock",
	} {
		if got, err := agentTarget(in); err != nil || got != want {
			t.Errorf("agentTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"tcp://127.0.0.1:1", "/run/agent.sock", "unix://", "::"} {
		if _, err := agentTarget(in); err == nil || !strings.Contains(err.Error(), "want unix:///path") {
			t.Errorf("agentTarget(%q) = %v; want an error naming the accepted form", in, err)
		}
	}
}

func TestFromAgentWithoutASocket(t *testing.T) {
	_, err := FromAgent("unix:///nonexistent/agent.sock")(context.Background())
	if err == nil || err.Error() != "no agent socket at /nonexistent/agent.sock" {
		t.Fatalf("FromAgent() = %v, want \"no agent socket at /nonexistent/agent.sock\"", err)
	}
}
