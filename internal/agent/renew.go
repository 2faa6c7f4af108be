package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
)

// minRenewInterval is the least time between two agent SVID renewals.
const minRenewInterval = time.Second

// errRefused marks the server's refusal to re-establish a node whose agent
// SVID expired: it was evicted or banned, the SVID expired longer ago than
// the server's agent_reauth_window, or the server no longer trusts the
// authority that signed it.
var errRefused = errors.New("the server refused to re-establish the node")

// reattester is the optional capability of node attestors whose evidence
// is not single-use (unlike a join token): an agent whose SVID expired
// attests again with them before it falls back to agent_reauth.
type reattester interface {
	CanReattest() bool
}

// renewLoop keeps the agent SVID current. It renews the SVID at half its
// lifetime (or at once when another loop saw the server refuse the agent),
// retrying with backoff while the server is unreachable. When the SVID
// expires before it could be renewed, the agent does not give up: it keeps
// its key and retries until the server is back, then re-establishes the
// node (reestablish). renewLoop returns ErrEvicted when the server refuses
// the renewal of a valid SVID or the re-establishment of an expired one,
// and nil when ctx is done.
func (a *Agent) renewLoop(ctx context.Context, dir *dataDir) error {
	bo := retryBackoff{base: time.Second, max: a.cfg.MaxBackoff}
	failing, renewed := false, false
	for {
		leaf := a.svid.p.Load().Certificates[0]
		now := a.cfg.Clock.Now()
		wait := time.Unix(0, a.renewAt.Load()).Sub(now)
		switch {
		case failing:
			wait = bo.next()
			// Wake at expiry at the latest: the agent then says its SVID
			// expired and switches to re-establishing the node, rather than
			// finding out one back-off later.
			if until := leaf.NotAfter.Sub(now); until > 0 && until < wait {
				wait = until
			}
		case !now.Before(leaf.NotAfter):
			wait = 0 // expired (loaded so from disk): re-establish at once
		case renewed:
			// A server handing out nearly expired SVIDs (its CA is about
			// to expire) must not make the agent renew in a tight loop.
			wait = max(wait, minRenewInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.cfg.Clock.After(wait):
		case <-a.renewNow:
			a.log.Info("server refused the agent svid: renewing it to tell eviction from a stale connection")
		}
		expired := !a.cfg.Clock.Now().Before(leaf.NotAfter)
		var err error
		if expired {
			if !a.expiryLogged {
				a.expiryLogged = true
				a.log.Warn("agent svid expired before the server could renew it: serving the workload SVIDs that are still valid; "+
					"retrying, and re-establishing the node with the agent's key once the server is back (agent_reauth)",
					logKeyAgentID, a.svid.p.Load().ID.String(), logKeyNotAfter, leaf.NotAfter.UTC().Format(time.RFC3339),
					"server", a.cfg.ServerAddress)
			}
			err = a.reestablish(ctx, dir)
		} else {
			err = a.renewAgent(ctx, dir)
		}
		renewed = err == nil
		switch {
		case err == nil:
			failing = false
			bo.reset()
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errRefused), !expired && denied(err):
			return a.evicted(dir, err)
		default:
			if !failing {
				msg := "cannot renew agent svid; retrying"
				if expired {
					msg = "cannot re-establish the node yet; retrying"
				}
				if untrustedServer(err) {
					msg += " (the server's certificate does not verify against the trust bundle)"
				}
				a.log.Warn(msg, logKeyError, err, logKeyNotAfter, leaf.NotAfter.UTC().Format(time.RFC3339))
			} else {
				a.log.Debug("agent svid retry failed", logKeyError, err)
			}
			failing = true
		}
	}
}

// renewTime is half-way through a certificate's lifetime, counted from
// when the agent received it (zero when unknown, as for an SVID loaded from
// disk) if that is later than NotBefore: servers backdate NotBefore for
// clock skew, and with short lifetimes the half-way point computed from it
// could already have passed on receipt.
func renewTime(notBefore, notAfter, received time.Time) time.Time {
	from := notBefore
	if received.After(from) {
		from = received
	}
	return from.Add(notAfter.Sub(from) / 2)
}

// renewAgent gets a fresh agent SVID for a fresh key, persists it and moves
// the connection over to it.
func (a *Agent) renewAgent(ctx context.Context, dir *dataDir) error {
	a.lastRenewal.Store(a.cfg.Clock.Now().UnixNano())
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return fmt.Errorf("renew agent svid: %w", err)
	}
	var resp *agentv1.RenewAgentResponse
	err = a.client.call(func(api agentv1.AgentClient) error {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.RenewAgent(cctx, &agentv1.RenewAgentRequest{Csr: csr})
		return err
	})
	if err != nil {
		return rpcErr("renew agent svid", err)
	}
	svid, bundle, err := a.parseAgentSVID(resp.GetSvid(), key)
	if err != nil {
		return fmt.Errorf("renew agent svid: %w", err)
	}
	if cur := a.svid.p.Load(); svid.ID != cur.ID {
		return fmt.Errorf("renew agent svid: the server issued %s, want %s", svid.ID, cur.ID)
	}
	a.adopt(dir, svid, bundle)
	a.log.Info("agent svid renewed", logKeyAgentID, svid.ID.String(),
		logKeyNotAfter, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// adopt makes svid the agent's SVID: it is used at once (the server now
// accepts it, and soon only it), persisted, and every later call goes over
// a new connection presenting it. bundle, when not nil, came with it.
func (a *Agent) adopt(dir *dataDir, svid *x509svid.SVID, bundle *spiffebundle.Bundle) {
	// Persist first: a crash after the switch must not leave a restart
	// with the superseded SVID. A failure is logged, not fatal: the server
	// already accepts only the new SVID.
	if err := dir.saveAgentSVID(svid); err != nil {
		a.log.Error("cannot persist the agent svid: a restart will present a superseded one", logKeyError, err)
	}
	if bundle != nil {
		a.installBundle(dir, bundle)
	}
	a.setSVID(svid, a.cfg.Clock.Now())
	a.client.reconnect()
}

// reestablish brings back a node whose agent SVID expired. It attests
// again with the configured attestor when that can re-attest on its own;
// otherwise (and if that is refused) it proves possession of the expired
// SVID's key (agent_reauth); if the server refuses that too and a join
// token was configured that this run has not presented yet, it tries the
// token (an operator may have given a new one). An unreachable server is
// an ordinary error, retried by renewLoop; refusals of every method wrap
// errRefused.
func (a *Agent) reestablish(ctx context.Context, dir *dataDir) error {
	cur := a.svid.p.Load()
	var methods []nodeattest.Attestor
	r, reusable := a.attestor.(reattester)
	reusable = reusable && r.CanReattest()
	if reusable {
		methods = append(methods, a.attestor)
	}
	ra, err := reauth.New(cur.Certificates, cur.PrivateKey)
	if err != nil {
		return fmt.Errorf("%w: %w", errRefused, err)
	}
	methods = append(methods, ra)
	if a.attestor != nil && !reusable && !a.tokenSpent {
		methods = append(methods, a.attestor)
	}
	var refusals []error
	for _, m := range methods {
		svid, bundle, err := a.attest(ctx, m)
		if m == a.attestor && !reusable && (err == nil || denied(err)) {
			a.tokenSpent = true
		}
		if err != nil {
			if !denied(err) && !errkind.Is(err, errkind.InvalidArgument) {
				return err // unreachable, busy…: retried as it is
			}
			refusals = append(refusals, fmt.Errorf("%s: %w", m.Name(), err))
			continue
		}
		if svid.ID != cur.ID {
			return fmt.Errorf("%w: %s attestation issued %s, want %s", errRefused, m.Name(), svid.ID, cur.ID)
		}
		a.adopt(dir, svid, bundle)
		a.expiryLogged = false
		a.log.Info("node re-established after the agent svid expired", logKeyAgentID, svid.ID.String(), "method", m.Name(),
			logKeyNotAfter, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
		return nil
	}
	return fmt.Errorf("%w: %w", errRefused, errors.Join(refusals...))
}

// requestRenewal asks renewLoop to renew now, after the server refused the
// agent's SVID on another call. Refusals during or right after a renewal
// are calls that raced it on the old connection and are ignored.
func (a *Agent) requestRenewal() {
	last := time.Unix(0, a.lastRenewal.Load())
	if a.cfg.Clock.Now().Sub(last) < 2*a.cfg.SyncInterval {
		return
	}
	select {
	case a.renewNow <- struct{}{}:
	default:
	}
}

// evicted handles the server's refusal of the agent: log, forget the
// persisted SVID, and return ErrEvicted.
func (a *Agent) evicted(dir *dataDir, cause error) error {
	a.log.Error("agent was evicted or banned: re-attest the node with a new join token", logKeyError, cause)
	if err := dir.removeAgentSVID(); err != nil {
		a.log.Error("cannot remove refused agent svid", logKeyError, err)
	}
	return fmt.Errorf("%w (%v)", ErrEvicted, cause)
}

// signJWT asks the server for a JWT-SVID; it is the cache's jwtSignFunc.
func (a *Agent) signJWT(ctx context.Context, entryID string, audience []string) (string, time.Time, error) {
	s := a.svid.p.Load()
	if s == nil {
		return "", time.Time{}, errkind.New(errkind.Unavailable, "agent is not attested yet")
	}
	if !a.cfg.Clock.Now().Before(s.Certificates[0].NotAfter) {
		return "", time.Time{}, errkind.New(errkind.Unavailable, "the agent's own svid expired: waiting for the server to re-establish the node")
	}
	var resp *agentv1.SignJWTSVIDResponse
	err := a.client.call(func(api agentv1.AgentClient) (err error) {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.SignJWTSVID(cctx, &agentv1.SignJWTSVIDRequest{EntryId: entryID, Audience: audience})
		return err
	})
	if err != nil {
		return "", time.Time{}, errkind.FromGRPC(err)
	}
	var exp time.Time
	if resp.GetExpiresAt() > 0 {
		exp = time.Unix(resp.GetExpiresAt(), 0)
	}
	return resp.GetToken(), exp, nil
}
