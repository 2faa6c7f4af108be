package ssh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Paths served by Handler on the server's HTTPS address. Both are public
// (a CA public key and a revocation list); ?credential=NAME narrows them
// to one ssh credential.
const (
	PathCA  = "/ssh/v1/ca.pub"
	PathKRL = "/ssh/v1/krl"
)

// RevokedLeases returns the ids of the leases of credential that were
// revoked before their end and are still within it at now: the ones whose
// certificates a KRL must list. The server reads them from the store, so
// every replica serves the revocations of all of them.
type RevokedLeases func(ctx context.Context, credential string, now time.Time) ([]string, error)

// Handler serves the user CAs' public keys (one authorized_keys line per
// ssh credential, for TrustedUserCAKeys) and one KRL revoking the
// certificates of all of them (for RevokedKeys). The KRL is re-encoded per
// request from each provider's own revocations and, when revoked is set,
// from the revoked leases it returns (a revoke on any replica), so it
// changes with every revoke; a failing source answers 503 rather than a
// KRL that could miss a revocation.
func Handler(providers map[string]*Provider, now func() time.Time, revoked RevokedLeases) http.Handler {
	if now == nil {
		now = time.Now
	}
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	slices.Sort(names)
	pick := func(w http.ResponseWriter, r *http.Request) ([]*Provider, bool) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
			return nil, false
		}
		if c := r.URL.Query().Get("credential"); c != "" {
			p, ok := providers[c]
			if !ok {
				http.Error(w, "credential: no ssh credential of that name (configured: "+strings.Join(names, ", ")+")", http.StatusNotFound)
				return nil, false
			}
			return []*Provider{p}, true
		}
		out := make([]*Provider, 0, len(names))
		for _, n := range names {
			out = append(out, providers[n])
		}
		return out, true
	}
	mux := http.NewServeMux()
	mux.HandleFunc(PathCA, func(w http.ResponseWriter, r *http.Request) {
		ps, ok := pick(w, r)
		if !ok {
			return
		}
		var b strings.Builder
		for _, p := range ps {
			b.WriteString(p.CAPublicKey())
		}
		serve(w, r, "text/plain; charset=utf-8", "max-age=300", []byte(b.String()))
	})
	mux.HandleFunc(PathKRL, func(w http.ResponseWriter, r *http.Request) {
		ps, ok := pick(w, r)
		if !ok {
			return
		}
		t := now()
		var version uint64
		cas := make([]CARevocations, 0, len(ps))
		for _, p := range ps {
			v, ca := p.revocations()
			version += v
			if revoked != nil {
				ids, err := revoked(r.Context(), p.credential, t)
				if err != nil {
					http.Error(w, "the revocation list cannot be read from the store; retry", http.StatusServiceUnavailable)
					return
				}
				for _, id := range ids {
					ca.Serials = append(ca.Serials, Serial(id))
				}
				// The store's revocations make no count: the generation
				// time orders KRLs instead (sshd reads neither).
				version = max(version, uint64(max(t.Unix(), 0)))
			}
			cas = append(cas, ca)
		}
		serve(w, r, "application/octet-stream", "no-cache", MarshalKRL(version, t, "signet", cas))
	})
	return mux
}

// serve writes body with an ETag over its content, answering a matching
// If-None-Match with 304. The KRL's version and generation time are left
// out of the tag so an unchanged list keeps its tag.
func serve(w http.ResponseWriter, r *http.Request, contentType, cacheControl string, body []byte) {
	tagged := body
	if contentType == "application/octet-stream" && len(body) >= 28 {
		tagged = append(append([]byte(nil), body[:12]...), body[28:]...) // without krl_version and generated_date
	}
	sum := sha256.Sum256(tagged)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", cacheControl)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}
