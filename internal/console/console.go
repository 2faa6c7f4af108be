// Package console is Signet's read-only web console: server-rendered
// html/template pages (overview, agents, entries, inventory and coverage,
// findings, leases, audit log), each with a JSON twin (the same path with
// ?format=json), and vendored, pinned static assets in an embed.FS.
//
// Access is deny by default. Without an admin check (Config.IsAdmin nil)
// or OIDC login (Config.OIDC nil) the console answers only clients on a
// loopback address; with an admin check, every request must come over TLS
// with a client X509-SVID that chains to the trust bundle and whose SPIFFE
// ID IsAdmin accepts (an admin entry's SVID); with OIDC login, over TLS
// with a session from a sign-in at the operator's OpenID provider by a
// person on its allow lists. The server binds a non-loopback address only
// in the last two modes.
// Every response carries a Content-Security-Policy without inline script
// or style; nothing secret (join tokens, lease data, secrets found by scan)
// is ever read into a page.
package console

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/model"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy of every response: scripts and
// styles only from the console itself, no inline script or style, no
// framing, no plugins, forms and fetches only back to the console.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// The log record the server writes when the console listens, with the
// bound address under LogKeyAddr (tests find a port-0 listener by it).
const (
	LogMsgListening = "console listening"
	LogKeyAddr      = "addr"
)

// Requests per second (and burst) per client address: a person clicking
// and the browser tests, not a scraper.
const (
	DefaultRatePerSecond = 20
	DefaultBurst         = 60
)

// Config configures a Console. Store and TrustDomain are required.
type Config struct {
	Store       Store
	TrustDomain spiffeid.TrustDomain
	// ServerID is the server's SPIFFE ID: entries parented to it are node
	// aliases, left out of the inventory.
	ServerID spiffeid.ID
	// DefaultX509TTL and DefaultJWTTTL are the server's defaults for
	// entries that set none (for the inventory's TTL flags).
	DefaultX509TTL, DefaultJWTTTL time.Duration
	// IsAdmin, when set, switches the console to mTLS mode: every client
	// must present an X509-SVID verified against Bundle whose ID IsAdmin
	// accepts; the client's address does not matter. Nil: loopback
	// clients only, no client certificate needed.
	IsAdmin func(id spiffeid.ID, now time.Time) bool
	// Bundle verifies client SVIDs in mTLS mode.
	Bundle x509bundle.Source
	// OIDC, when set, switches the console to OIDC login mode (exclusive
	// with IsAdmin): the console must be served over TLS, and every page
	// needs a session a sign-in at the operator's OpenID provider opened
	// (see OIDCConfig); the client's address does not matter.
	OIDC *OIDCConfig
	// Limit bounds requests per client address; nil: DefaultRatePerSecond.
	Limit *edge.PeerLimiter
	Now   func() time.Time // default time.Now
	Log   *slog.Logger     // default slog.Default()
}

// Console is the console's http.Handler.
type Console struct {
	cfg   Config
	oidc  *oidcLogin // nil unless Config.OIDC
	data  *data
	pages map[string]*template.Template
	mux   *http.ServeMux
}

var _ http.Handler = (*Console)(nil)

// New checks cfg and parses the templates.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.TrustDomain.IsZero() {
		return nil, errors.New("console: Store and TrustDomain are required")
	}
	if cfg.IsAdmin != nil && cfg.Bundle == nil {
		return nil, errors.New("console: IsAdmin needs a Bundle to verify client SVIDs")
	}
	if cfg.IsAdmin != nil && cfg.OIDC != nil {
		return nil, errors.New("console: admin SVIDs over mTLS and OIDC login are alternatives: configure one")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Limit == nil {
		cfg.Limit = edge.NewPeerLimiter(DefaultRatePerSecond, DefaultBurst)
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}, mux: http.NewServeMux(),
		data: &data{st: cfg.Store, td: cfg.TrustDomain, serverID: cfg.ServerID, now: cfg.Now,
			x509TTL: cfg.DefaultX509TTL, jwtTTL: cfg.DefaultJWTTTL}}
	funcs := template.FuncMap{"ts": formatTime, "join": strings.Join, "detail": formatDetail, "pct": formatPercent, "list": func() []inventory.Kind { return inventory.Kinds }}
	for _, p := range append(Pages, Page{Name: "verification"}) {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p.Name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse %s template: %w", p.Name, err)
		}
		c.pages[p.Name] = t
	}
	if cfg.OIDC != nil {
		var err error
		if c.oidc, err = newOIDCLogin(*cfg.OIDC, cfg.Now, cfg.Log.Info); err != nil {
			return nil, err
		}
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler{http.FileServerFS(static)}))
	c.mux.HandleFunc("GET /{$}", c.page("overview", func(r *http.Request) (any, error) { return c.data.overview(r.Context()) }))
	c.mux.HandleFunc("GET /agents", c.page("agents", func(r *http.Request) (any, error) {
		after, limit, err := cursor(r)
		if err != nil {
			return nil, err
		}
		return c.data.agents(r.Context(), after, limit)
	}))
	c.mux.HandleFunc("GET /entries", c.page("entries", c.entries))
	c.mux.HandleFunc("GET /inventory", c.page("inventory", c.inventory))
	c.mux.HandleFunc("GET /findings", c.page("findings", func(r *http.Request) (any, error) {
		after, limit, err := cursor(r)
		if err != nil {
			return nil, err
		}
		status := r.URL.Query().Get("status")
		if status != "" && status != "all" && status != "open" {
			return nil, badRequest{fmt.Errorf("status: %q is not accepted (want open or all)", status)}
		}
		return c.data.findings(r.Context(), status == "all", after, limit)
	}))
	c.mux.HandleFunc("GET /leases", c.page("leases", func(r *http.Request) (any, error) { return c.data.leases(r.Context()) }))
	c.mux.HandleFunc("GET /audit", c.page("audit", c.audit))
	c.mux.HandleFunc("GET /audit/verification", c.page("verification", func(r *http.Request) (any, error) {
		return c.data.verification(r.Context())
	}))
	return c, nil
}

// Page is one page of the console.
type Page struct {
	Name, Path, Title string
}

// Pages lists the console's pages in navigation order.
var Pages = []Page{
	{"overview", "/", "Overview"},
	{"agents", "/agents", "Agents"},
	{"entries", "/entries", "Entries"},
	{"inventory", "/inventory", "Inventory & coverage"},
	{"findings", "/findings", "Findings"},
	{"leases", "/leases", "Leases"},
	{"audit", "/audit", "Audit log"},
}

// ServeHTTP applies the security headers, the rate limit and the access
// rule, then serves the page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	host := remoteHost(r)
	if !c.cfg.Limit.AllowAddr(host) {
		h.Set("Retry-After", "1")
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "the console is read-only: only GET", http.StatusMethodNotAllowed)
		return
	}
	if c.oidc != nil {
		c.serveOIDC(w, r)
		return
	}
	if err := c.authorize(r, host); err != nil {
		c.cfg.Log.Warn("console request refused", "remote", host, "reason", err.Error())
		http.Error(w, "forbidden: the console admits only loopback clients, or an admin SVID over mTLS when configured", http.StatusForbidden)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// serveOIDC serves a request in OIDC login mode: the sign-in paths to
// anyone, every other one to a signed-in person only. A page without a
// session redirects to the sign-in; its JSON twin answers 401.
func (c *Console) serveOIDC(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		http.Error(w, "forbidden: with OIDC login the console is served over HTTPS only", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case pathLogin:
		c.oidc.login(w, r)
		return
	case pathCallback:
		c.oidc.callback(w, r)
		return
	case pathLogout:
		c.oidc.logout(w, r)
		return
	}
	if _, err := c.oidc.current(r); err != nil {
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"sign in at ` + pathLogin + `"}` + "\n"))
			return
		}
		http.Redirect(w, r, pathLogin+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// authorize applies the access rule (see the package comment).
func (c *Console) authorize(r *http.Request, host string) error {
	if c.cfg.IsAdmin == nil {
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Unmap().IsLoopback() {
			return fmt.Errorf("client %s is not on a loopback address", host)
		}
		return nil
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	raw := make([][]byte, len(r.TLS.PeerCertificates))
	for i, cert := range r.TLS.PeerCertificates {
		raw[i] = cert.Raw
	}
	now := c.cfg.Now()
	id, _, err := x509svid.ParseAndVerify(raw, c.cfg.Bundle, x509svid.WithTime(now))
	if err != nil {
		return fmt.Errorf("client certificate is not a valid X509-SVID: %w", err)
	}
	if !c.cfg.IsAdmin(id, now) {
		return fmt.Errorf("%s is not an admin entry's SPIFFE ID", id)
	}
	return nil
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// view is what every page template gets.
type view struct {
	Title, Active string
	Pages         []Page
	Data          any
	JSON          string // the JSON twin's URL
	TrustDomain   string
}

// page serves one page: its data as HTML, or as JSON with ?format=json.
func (c *Console) page(name string, load func(*http.Request) (any, error)) http.HandlerFunc {
	t := c.pages[name]
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		format := q.Get("format")
		if format != "" && format != "json" && format != "html" {
			http.Error(w, fmt.Sprintf("format: %q is not accepted (want json or html)", format), http.StatusBadRequest)
			return
		}
		d, err := load(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if format == "json" {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(d)
			return
		}
		q.Set("format", "json")
		v := view{Active: name, Pages: Pages, Data: d, JSON: r.URL.Path + "?" + q.Encode(), TrustDomain: c.cfg.TrustDomain.Name()}
		for _, p := range Pages {
			if p.Name == name {
				v.Title = p.Title
			}
		}
		if name == "verification" { // a part of the audit page, also on its own
			v.Title, v.Active = "Audit log verification", "audit"
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, v); err != nil {
			c.fail(w, r, fmt.Errorf("render %s: %w", name, err))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	}
}

// fail answers 400 with the message for a bad query, else 500 with a
// correlation id that the log carries with the cause.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad badRequest
	if errors.As(err, &bad) {
		http.Error(w, bad.Error(), http.StatusBadRequest)
		return
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	c.cfg.Log.Error("console page failed", "path", r.URL.Path, "id", id, "error", err)
	http.Error(w, "internal error (id="+id+")", http.StatusInternalServerError)
}

// pageSize reads the limit parameter: 1 to MaxPageSize, default
// DefaultPageSize.
func pageSize(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return DefaultPageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxPageSize {
		return 0, badRequest{fmt.Errorf("limit: %q is not accepted (want 1 to %d)", s, MaxPageSize)}
	}
	return n, nil
}

// cursor reads the after and limit parameters of a page ordered by a
// string key.
func cursor(r *http.Request) (string, int, error) {
	limit, err := pageSize(r)
	if err != nil {
		return "", 0, err
	}
	after := r.URL.Query().Get("after")
	if len(after) > model.MaxIDLen {
		return "", 0, badRequest{fmt.Errorf("after: longer than %d bytes", model.MaxIDLen)}
	}
	return after, limit, nil
}

// ParseEntryQuery reads the entries page's parameters (spiffe_id,
// parent_id, selector, after, limit) and checks them, naming the field in
// errors.
func ParseEntryQuery(r *http.Request) (EntryQuery, error) {
	limit, err := pageSize(r)
	if err != nil {
		return EntryQuery{}, err
	}
	q := r.URL.Query()
	eq := EntryQuery{SPIFFEID: strings.TrimSpace(q.Get("spiffe_id")), ParentID: strings.TrimSpace(q.Get("parent_id")),
		Selectors: strings.TrimSpace(q.Get("selector")), After: q.Get("after"), Limit: limit}
	if _, err := eq.entryFilter(); err != nil {
		return EntryQuery{}, badRequest{err}
	}
	return eq, nil
}

func (c *Console) entries(r *http.Request) (any, error) {
	q, err := ParseEntryQuery(r)
	if err != nil {
		return nil, err
	}
	return c.data.entries(r.Context(), q)
}

func (c *Console) inventory(r *http.Request) (any, error) {
	q := r.URL.Query()
	kind := inventory.KindWorkload
	if s := q.Get("kind"); s != "" {
		k, err := inventory.ParseKind(s)
		if err != nil || k == "" {
			return nil, badRequest{fmt.Errorf("kind: %q is not accepted (want node, workload, credential or finding)", s)}
		}
		kind = k
	}
	by, err := inventory.ParseDimension(q.Get("by"))
	if err != nil {
		return nil, badRequest{fmt.Errorf("by: %v", err)}
	}
	limit, err := pageSize(r)
	if err != nil {
		return nil, err
	}
	return c.data.inventory(r.Context(), kind, by, q.Get("after"), limit)
}

func (c *Console) audit(r *http.Request) (any, error) {
	limit, err := pageSize(r)
	if err != nil {
		return nil, err
	}
	var after int64
	if s := r.URL.Query().Get("after"); s != "" {
		if after, err = strconv.ParseInt(s, 10, 64); err != nil || after < 0 {
			return nil, badRequest{fmt.Errorf("after: %q is not accepted (want a sequence number, 0 or more)", s)}
		}
	}
	// The HTML page fetches the verification on its own (htmx, on load).
	return c.data.audit(r.Context(), after, limit, r.URL.Query().Get("format") == "json")
}

// staticHandler serves the embedded assets, cacheable (their names carry
// their versions).
type staticHandler struct{ h http.Handler }

func (s staticHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=86400")
	s.h.ServeHTTP(w, r)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func formatDetail(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// formatPercent shows a covered share, or a dash when there is none.
func formatPercent(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", *p)
}
