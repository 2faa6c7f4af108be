package awssts_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/awssts"
	"github.com/signet-id/signet/internal/broker/provider/remotetest"
)

var sessionRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func TestSessionName(t *testing.T) {
	long := spiffeid.RequireFromString("spiffe://example.org/" + strings.Repeat("very-long-segment/", 6) + "a")
	long2 := spiffeid.RequireFromString("spiffe://example.org/" + strings.Repeat("very-long-segment/", 6) + "b")
	for _, tc := range []struct {
		id   spiffeid.ID
		want string
	}{
		{spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/web"), "example.org@ns@prod@sa@web"},
		{spiffeid.RequireFromString("spiffe://example.org/a_b.c-d"), "example.org@a_b.c-d"},
	} {
		if got := awssts.SessionName(tc.id); got != tc.want {
			t.Errorf("SessionName(%s) = %q, want %q", tc.id, got, tc.want)
		}
	}
	a, b := awssts.SessionName(long), awssts.SessionName(long2)
	if !sessionRE.MatchString(a) || !sessionRE.MatchString(b) || a == b {
		t.Errorf("SessionName(long IDs) = %q, %q; want distinct names within AWS's rules", a, b)
	}
}

func newProvider(t *testing.T, endpoint string, sign awssts.SignFunc) *awssts.Provider {
	t.Helper()
	p, err := awssts.New("aws-deploy", awssts.Config{RoleARN: "arn:aws:iam::123456789012:role/deploy", STSEndpoint: endpoint}, sign, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request() provider.Request {
	return provider.Request{LeaseID: "lease-1", Credential: "aws-deploy", Subject: spiffeid.RequireFromString("spiffe://example.org/etl"),
		ExpiresAt: time.Now().Add(time.Hour)}
}

func TestIssueErrors(t *testing.T) {
	iss := remotetest.NewIssuer(t)
	fake := remotetest.NewSTS(t, iss)
	other := remotetest.NewIssuer(t) // keys STS does not trust
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for name, tc := range map[string]struct {
		endpoint string
		sign     awssts.SignFunc
		want     []string
	}{
		"untrusted token": {fake.URL, other.SignJWTSVID, []string{"aws_sts credential aws-deploy", "InvalidIdentityToken", "Couldn't verify"}},
		"unreachable":     {down.URL, iss.SignJWTSVID, []string{"aws_sts credential aws-deploy", "cannot reach STS"}},
		"no signer": {fake.URL, func(context.Context, spiffeid.ID, string, time.Duration) (string, error) {
			return "", errors.New("ca not initialized")
		}, []string{"mint JWT-SVID", "ca not initialized"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := newProvider(t, tc.endpoint, tc.sign).Issue(t.Context(), request())
			if err == nil {
				t.Fatal("Issue succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Issue error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestIssueShortLease(t *testing.T) {
	iss := remotetest.NewIssuer(t)
	fake := remotetest.NewSTS(t, iss)
	p := newProvider(t, fake.URL, iss.SignJWTSVID)
	r := request()
	r.ExpiresAt = time.Now().Add(time.Minute) // under AWS's 15 minute minimum
	c, err := p.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := fake.Session(c.Data["aws_access_key_id"])
	if !ok || s.Expiration.Before(time.Now().Add(14*time.Minute)) {
		t.Errorf("session %+v, want one of AWS's minimum 15 minutes", s)
	}
	if !c.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt = %s, want zero (the lease is shorter than the session)", c.ExpiresAt)
	}
	if p.Recalls() {
		t.Error("Recalls() = true, want false")
	}
}

func TestConfigValidate(t *testing.T) {
	c := awssts.Config{RoleARN: "arn:aws:iam::12:role/x", STSEndpoint: "ftp://x"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "role_arn") || !strings.Contains(err.Error(), "sts_endpoint") {
		t.Errorf("Validate() = %v, want errors naming role_arn and sts_endpoint", err)
	}
}
