package agent

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/workload"
)

// maxCachedJWTs bounds the JWT-SVID cache. Audiences are chosen by
// workloads, so without a bound a workload could grow it at will; past the
// bound new tokens are still minted, just not cached.
const maxCachedJWTs = 10000

// jwtSignFunc asks the server to mint a JWT-SVID for an entry.
type jwtSignFunc func(ctx context.Context, entryID string, audience []string) (token string, expiresAt time.Time, err error)

// jwtKey identifies a cached JWT-SVID: an entry and a canonical audience.
type jwtKey struct {
	entryID  string
	audience string // sorted, deduplicated audiences, each length-prefixed
}

// jwtRec is a cached JWT-SVID.
type jwtRec struct {
	id        spiffeid.ID // the entry's SPIFFE ID when minted
	iat       int64       // the token's iat claim (unix seconds; 0 if none)
	token     string
	issuedAt  time.Time // as seen by the agent
	expiresAt time.Time
}

// fresh reports whether the token is in the first half of its lifetime.
func (r *jwtRec) fresh(now time.Time) bool {
	return now.Before(r.issuedAt.Add(r.expiresAt.Sub(r.issuedAt) / 2))
}

// audienceKey encodes audiences so that different lists never collide.
func audienceKey(aud []string) string {
	aud = slices.Compact(slices.Sorted(slices.Values(aud)))
	var b strings.Builder
	for _, a := range aud {
		b.WriteString(strconv.Itoa(len(a)))
		b.WriteByte(':')
		b.WriteString(a)
	}
	return b.String()
}

// FetchJWTSVIDs returns a JWT-SVID for audience for every entry matching
// sels (only those with SPIFFE ID id, unless id is zero). A cached token is
// reused while in the first half of its lifetime; otherwise the server is
// asked, and when it cannot answer, a cached token that has not expired is
// served instead. Entries the server refuses are skipped; the call fails
// (Unavailable) only when no token at all could be had. No matching entry
// yields (nil, nil).
func (c *cache) FetchJWTSVIDs(ctx context.Context, sels []model.Selector, id spiffeid.ID, audience []string) ([]workload.JWTSVID, error) {
	if len(audience) == 0 || slices.Contains(audience, "") {
		return nil, errkind.New(errkind.InvalidArgument, "audience: at least one non-empty audience is required")
	}
	now := c.now()
	var out []workload.JWTSVID
	var firstErr error
	for _, e := range c.matching(canonical(sels), now) {
		if !id.IsZero() && e.SPIFFEID != id {
			continue
		}
		tok, exp, err := c.jwtFor(ctx, e, audience, now)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		out = append(out, workload.JWTSVID{ID: e.SPIFFEID, Token: tok, ExpiresAt: exp, Hint: e.Hint()})
		c.served.mark(now, e.ID)
	}
	if len(out) == 0 && firstErr != nil {
		if errkind.Of(firstErr) == errkind.Internal {
			firstErr = errkind.Wrap(errkind.Unavailable, firstErr, "cannot get a jwt-svid from the server")
		}
		return nil, firstErr
	}
	return out, nil
}

// jwtFor returns a token for entry e and audience, from the cache or the
// server.
func (c *cache) jwtFor(ctx context.Context, e heldEntry, audience []string, now time.Time) (string, time.Time, error) {
	key := jwtKey{entryID: e.ID, audience: audienceKey(audience)}
	c.jwtMu.Lock()
	cached := c.jwts[key]
	c.jwtMu.Unlock()
	if cached != nil && cached.id != e.SPIFFEID {
		cached = nil // the entry was given another SPIFFE ID since
	}
	if cached != nil && cached.fresh(now) {
		return cached.token, cached.expiresAt, nil
	}
	tok, exp, iat, err := c.mintJWT(ctx, e, audience, now)
	if err != nil {
		if cached != nil && now.Before(cached.expiresAt) && errkind.Of(err) != errkind.PermissionDenied {
			c.log.Debug("serving cached jwt-svid: server unavailable", "entry_id", e.ID, "error", err)
			return cached.token, cached.expiresAt, nil
		}
		return "", time.Time{}, err
	}
	c.jwtMu.Lock()
	if len(c.jwts) < maxCachedJWTs || c.jwts[key] != nil {
		c.jwts[key] = &jwtRec{id: e.SPIFFEID, iat: iat, token: tok, issuedAt: now, expiresAt: exp}
	}
	c.jwtMu.Unlock()
	return tok, exp, nil
}

// mintJWT asks the server for a token and checks it names the entry's
// SPIFFE ID and the audience. It returns the token, its expiry and its iat.
func (c *cache) mintJWT(ctx context.Context, e heldEntry, audience []string, now time.Time) (string, time.Time, int64, error) {
	if c.signJWT == nil {
		return "", time.Time{}, 0, errkind.New(errkind.Unavailable, "not connected to the server")
	}
	tok, exp, err := c.signJWT(ctx, e.ID, audience)
	if err != nil {
		return "", time.Time{}, 0, fmt.Errorf("sign jwt-svid for entry %s: %w", e.ID, err)
	}
	svid, err := jwtsvid.ParseInsecure(tok, audience)
	if err != nil {
		return "", time.Time{}, 0, fmt.Errorf("sign jwt-svid for entry %s: server returned an unusable token: %w", e.ID, err)
	}
	if svid.ID != e.SPIFFEID {
		return "", time.Time{}, 0, fmt.Errorf("sign jwt-svid for entry %s: token is for %s, want %s", e.ID, svid.ID, e.SPIFFEID)
	}
	if exp.IsZero() || svid.Expiry.Before(exp) {
		exp = svid.Expiry
	}
	if !now.Before(exp) {
		return "", time.Time{}, 0, fmt.Errorf("sign jwt-svid for entry %s: token already expired", e.ID)
	}
	c.met.svidsSigned.WithLabelValues("jwt").Inc()
	return tok, exp, workload.IssuedAt(svid.Claims), nil
}

// sweepJWTs drops expired tokens and tokens of entries no longer held.
func (c *cache) sweepJWTs(now time.Time) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.jwtMu.Lock()
	defer c.jwtMu.Unlock()
	for k, r := range c.jwts {
		if _, ok := c.entries[k.entryID]; !ok || !now.Before(r.expiresAt) {
			delete(c.jwts, k)
		}
	}
}
