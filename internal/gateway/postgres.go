package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/logsafe"
)

// maxStartupLen bounds a startup packet, as PostgreSQL's own
// MAX_STARTUP_PACKET_LENGTH does.
const maxStartupLen = 10000

// maxNegotiation bounds the SSLRequest/GSSENCRequest packets before the
// startup message (libpq sends at most one of each).
const maxNegotiation = 2

// SQLSTATE codes the gateway answers with.
const (
	codeProtocolViolation = "08P01" // a malformed startup packet
	codeCannotConnect     = "08001" // no lease, or the upstream is unreachable
	codeNotSupported      = "0A000" // replication connections
	codeInvalidPassword   = "28P01"
	codeInvalidAuthSpec   = "28000"
)

// startupError is a startup packet the gateway cannot accept; its message
// goes to the application in an ErrorResponse.
type startupError struct{ msg string }

func (e *startupError) Error() string { return e.msg }

// readStartup reads the application's startup packets from r: it answers
// SSLRequest and GSSENCRequest with 'N' on w (the application's side is
// plain TCP on loopback) and returns the StartupMessage or CancelRequest
// that follows. It reads exactly the bytes of those packets (the length
// word first, at most maxStartupLen), so nothing the application sends
// after them is consumed, and decodes each with pgproto3. A packet that is
// too long, too short or malformed is a *startupError; a connection that
// ends is the read error.
func readStartup(r io.Reader, w io.Writer) (pgproto3.FrontendMessage, error) {
	for i := 0; ; i++ {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("read startup packet: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < 8 || n > maxStartupLen {
			return nil, &startupError{fmt.Sprintf("invalid startup packet length %d: want 8 to %d bytes", int32(n), maxStartupLen)}
		}
		buf := make([]byte, n)
		copy(buf, hdr[:])
		if _, err := io.ReadFull(r, buf[4:]); err != nil {
			return nil, fmt.Errorf("read startup packet: %w", err)
		}
		msg, err := pgproto3.NewBackend(bytes.NewReader(buf), io.Discard).ReceiveStartupMessage()
		if err != nil {
			return nil, &startupError{"invalid startup packet: " + logsafe.Truncate(err.Error())}
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if i == maxNegotiation {
				return nil, &startupError{"more than two encryption requests before the startup message"}
			}
			if _, err := w.Write([]byte{'N'}); err != nil {
				return nil, fmt.Errorf("answer encryption request: %w", err)
			}
		case *pgproto3.StartupMessage, *pgproto3.CancelRequest:
			return m, nil
		default:
			return nil, &startupError{fmt.Sprintf("unexpected startup packet %T", m)}
		}
	}
}

// startupParams splits the application's startup parameters: the run-time
// parameters forwarded upstream (application_name, client_encoding,
// options, ...; never user or database, which the route decides), the
// protocol options (_pq_.*) the gateway does not support, and whether a
// replication connection was asked for.
func startupParams(sm *pgproto3.StartupMessage) (params map[string]string, unsupported []string, replication bool) {
	params = map[string]string{}
	for k, v := range sm.Parameters {
		switch {
		case k == "user" || k == "database":
		case k == "replication":
			switch strings.ToLower(v) {
			case "", "false", "off", "no", "0":
			default:
				replication = true
			}
		case strings.HasPrefix(k, "_pq_."):
			unsupported = append(unsupported, k)
		default:
			params[k] = v
		}
	}
	slices.Sort(unsupported)
	return params, unsupported, replication
}

// pgRoute is the state of one postgres egress route.
type pgRoute struct {
	name  string
	cfg   *Egress
	lease *lease

	mu       sync.Mutex
	sessions map[uint32][]byte // upstream backend PID → cancel key, of open sessions
}

func (g *Gateway) servePostgres(ctx context.Context, pr *pgRoute, l net.Listener) error {
	return g.serveConns(ctx, pr.name, l, func(c net.Conn) { g.postgresSession(ctx, pr, c) })
}

// sendError writes a FATAL ErrorResponse to the application.
func sendError(c net.Conn, code, msg string) {
	be := pgproto3.NewBackend(c, c)
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "signet gateway: " + msg})
	_ = be.Flush()
}

// postgresSession serves one application connection: startup, the
// upstream login as the leased user, then bytes both ways.
func (g *Gateway) postgresSession(ctx context.Context, pr *pgRoute, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout + firstLeaseWait + 2*dialTimeout))
	peer := slog.String(logKeyPeer, c.RemoteAddr().String())
	msg, err := readStartup(c, c)
	if err != nil {
		var se *startupError
		if errors.As(err, &se) {
			g.log.Info("startup refused", slog.String(logKeyRoute, pr.name), peer, slog.String(logKeyErr, se.msg))
			sendError(c, codeProtocolViolation, se.msg)
		}
		return
	}
	if cr, ok := msg.(*pgproto3.CancelRequest); ok {
		pr.forwardCancel(ctx, g.log, cr)
		return
	}
	sm := msg.(*pgproto3.StartupMessage)
	params, unsupported, replication := startupParams(sm)
	if replication {
		sendError(c, codeNotSupported, "replication connections are not proxied")
		return
	}
	up, cred, err := pr.connect(ctx, g.log, params)
	if err != nil {
		g.log.Warn("upstream login failed", slog.String(logKeyRoute, pr.name), peer, slog.String(logKeyErr, logsafe.Truncate(err.Error())))
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			be := pgproto3.NewBackend(c, c)
			be.Send(&pgproto3.ErrorResponse{Severity: pe.Severity, SeverityUnlocalized: pe.SeverityUnlocalized, Code: pe.Code,
				Message: "signet gateway: upstream " + pr.cfg.Upstream + ": " + pe.Message, Detail: pe.Detail, Hint: pe.Hint})
			_ = be.Flush()
			return
		}
		sendError(c, codeCannotConnect, err.Error())
		return
	}
	// Nothing pgconn read ahead may be lost when the raw connection is
	// taken over.
	sctx, cancel := context.WithTimeout(ctx, dialTimeout)
	err = up.SyncConn(sctx)
	cancel()
	var hj *pgconn.HijackedConn
	if err == nil {
		hj, err = up.Hijack()
	}
	if err != nil {
		g.log.Warn("upstream session not usable", slog.String(logKeyRoute, pr.name), slog.String(logKeyErr, err.Error()))
		sendError(c, codeCannotConnect, "upstream session not usable")
		_ = up.Close(context.Background())
		return
	}
	be := pgproto3.NewBackend(c, c)
	if sm.ProtocolVersion != pgproto3.ProtocolVersion30 || len(unsupported) > 0 {
		be.Send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unsupported})
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, k := range slices.Sorted(maps.Keys(hj.ParameterStatuses)) {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: hj.ParameterStatuses[k]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: hj.PID, SecretKey: hj.SecretKey})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: hj.TxStatus})
	if err := be.Flush(); err != nil {
		hj.Conn.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	g.log.Debug("session started", slog.String(logKeyRoute, pr.name), peer, slog.String(logKeyUser, cred.Data["username"]),
		slog.String(logKeyLease, cred.LeaseID))
	pr.mu.Lock()
	pr.sessions[hj.PID] = hj.SecretKey
	pr.mu.Unlock()
	defer func() {
		pr.mu.Lock()
		delete(pr.sessions, hj.PID)
		pr.mu.Unlock()
	}()
	pipe(ctx, c, hj.Conn)
}

// connect logs in upstream as the current lease's user. When the upstream
// refuses that user (its lease was revoked, its role dropped), it asks the
// lease for a fresh credential and tries once more.
func (pr *pgRoute) connect(ctx context.Context, log *slog.Logger, params map[string]string) (*pgconn.PgConn, *brokerclient.Result, error) {
	for attempt := 0; ; attempt++ {
		cred, err := pr.lease.current(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("no %s credential from the broker: %w", pr.cfg.Credential, err)
		}
		cfg := pr.cfg.pg.Copy()
		cfg.User, cfg.Password = cred.Data["username"], cred.Data["password"]
		cfg.Database = pr.cfg.Database
		if cfg.Database == "" {
			cfg.Database = cred.Data["database"]
		}
		switch {
		case cfg.User == "":
			return nil, nil, fmt.Errorf("credential %s has no username field: is it a database credential?", pr.cfg.Credential)
		case cfg.Database == "":
			return nil, nil, fmt.Errorf("credential %s names no database: set %s database", pr.cfg.Credential, pr.name)
		}
		cfg.RuntimeParams = params
		cctx, cancel := context.WithTimeout(ctx, dialTimeout)
		pc, err := pgconn.ConnectConfig(cctx, cfg)
		cancel()
		if err == nil {
			return pc, cred, nil
		}
		var pe *pgconn.PgError
		if attempt == 0 && errors.As(err, &pe) && (pe.Code == codeInvalidPassword || pe.Code == codeInvalidAuthSpec) && pr.lease.refused(cred) {
			log.Info("upstream refused the leased user; asking for a fresh lease", slog.String(logKeyRoute, pr.name),
				slog.String(logKeyLease, cred.LeaseID), slog.String(logKeyErr, pe.Message))
			continue
		}
		return nil, cred, err
	}
}

// forwardCancel sends the application's CancelRequest upstream when it
// names one of this route's open sessions (its key checked here, so the
// route cancels nothing but its own sessions), over TLS when the route's
// upstream uses TLS.
func (pr *pgRoute) forwardCancel(ctx context.Context, log *slog.Logger, cr *pgproto3.CancelRequest) {
	pr.mu.Lock()
	key, ok := pr.sessions[cr.ProcessID]
	pr.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(key, cr.SecretKey) != 1 {
		log.Info("cancel request for no session of this route ignored", slog.String(logKeyRoute, pr.name))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", pr.cfg.Upstream)
	if err != nil {
		log.Warn("cancel request not forwarded", slog.String(logKeyRoute, pr.name), slog.String(logKeyErr, err.Error()))
		return
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if tc := pr.cfg.pg.TLSConfig; tc != nil {
		req, _ := (&pgproto3.SSLRequest{}).Encode(nil)
		var answer [1]byte
		if _, err := c.Write(req); err != nil {
			return
		}
		if _, err := io.ReadFull(c, answer[:]); err != nil || answer[0] != 'S' {
			log.Warn("cancel request not forwarded: upstream refused TLS", slog.String(logKeyRoute, pr.name))
			return
		}
		t := tls.Client(c, tc.Clone())
		if err := t.HandshakeContext(ctx); err != nil {
			log.Warn("cancel request not forwarded", slog.String(logKeyRoute, pr.name), slog.String(logKeyErr, err.Error()))
			return
		}
		c = t
	}
	msg, err := cr.Encode(nil)
	if err != nil {
		return
	}
	_, _ = c.Write(msg)
	// The server closes the connection once it has read the request.
	_, _ = io.Copy(io.Discard, c)
}
