package agentcli

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

func TestJWTValidateTimes(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	svid := &jwtsvid.SVID{ID: spiffeid.RequireFromString("spiffe://example.org/web"),
		Claims: map[string]any{"exp": float64(exp.Unix()), "iat": float64(exp.Add(-time.Hour).Unix()), "aud": []any{"a"}}}
	var text strings.Builder
	for _, r := range jwtClaimRows(svid) {
		text.WriteString(strings.Join(r, " ") + "\n")
	}
	for _, want := range []string{"Claim exp: 2030-01-02T03:04:05Z", "Claim iat: 2030-01-02T02:04:05Z", "Claim aud: [a]"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("jwt validate rows lack %q:\n%s", want, text.String())
		}
	}
}

// TestPermissionDeniedNamesExpiry: a workload whose SVID lapsed during an
// outage is not only told to register.
func TestPermissionDeniedNamesExpiry(t *testing.T) {
	msg := permissionDeniedErr("no identity issued to the caller").Error()
	if !strings.Contains(msg, "expired while the agent could not reach the server") || !strings.Contains(msg, "register one") {
		t.Errorf("generic message = %q", msg)
	}
	msg = permissionDeniedErr("the caller's SVIDs expired at 2030-01-01T00:00:00Z and could not be renewed").Error()
	if strings.Contains(msg, "register") || !strings.Contains(msg, "expired at 2030") {
		t.Errorf("expiry message = %q", msg)
	}
}
