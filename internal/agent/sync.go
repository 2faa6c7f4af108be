package agent

import (
	"context"
	"errors"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// Signing limits: CSRs per SignX509SVIDs call (the server takes up to
// 1000) and calls in flight at once.
const (
	signBatchSize   = 500
	signConcurrency = 3
)

// maxSignRetry caps the delay before an entry whose signing failed is tried
// again.
const maxSignRetry = 5 * time.Minute

// syncLoop syncs with the server every SyncInterval (jittered) and backs
// off while the server is unreachable. Between attempts it sweeps expired
// SVIDs at least every SyncInterval, so they stop being served on time even
// during an outage. While the agent SVID is expired (the server refuses
// it) it does not call the server, and resumes as soon as renewLoop has
// re-established the node. It returns only when ctx is done.
func (a *Agent) syncLoop(ctx context.Context, dir *dataDir) error {
	bo := retryBackoff{base: a.cfg.SyncInterval, max: max(a.cfg.MaxBackoff, a.cfg.SyncInterval)}
	var outageStart time.Time
	var delay time.Duration
	for {
		if !a.sleepSweeping(ctx, delay) {
			return nil
		}
		if expired, _ := a.svidExpired(); expired {
			if !a.waitSVID(ctx) {
				return nil
			}
			bo.reset()
		}
		err := a.syncOnce(ctx, dir)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if !outageStart.IsZero() {
				a.log.Info("server reachable again", "outage", a.cfg.Clock.Now().Sub(outageStart).Round(time.Second).String())
				outageStart = time.Time{}
			}
			bo.reset()
			delay = jitter(a.cfg.SyncInterval)
			continue
		}
		a.met.syncErrors.Inc()
		if denied(err) {
			a.requestRenewal()
		}
		if outageStart.IsZero() {
			outageStart = a.cfg.Clock.Now()
			a.log.Warn("sync with server failed: serving cached SVIDs and retrying with backoff", logKeyError, err)
		} else {
			a.log.Debug("sync with server failed again", logKeyError, err)
		}
		delay = bo.next()
	}
}

// waitSVID waits, sweeping expired SVIDs every SyncInterval, until the
// agent SVID is valid again. It reports false when ctx ended the wait.
func (a *Agent) waitSVID(ctx context.Context) bool {
	for {
		expired, changed := a.svidExpired()
		if !expired {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-changed:
		case <-a.cfg.Clock.After(a.cfg.SyncInterval):
			if a.cache.sweep(a.cfg.Clock.Now()) {
				a.cache.broadcast()
			}
		}
	}
}

// sleepSweeping waits d, sweeping expired SVIDs at least every
// SyncInterval meanwhile. It reports false when ctx ended the wait.
func (a *Agent) sleepSweeping(ctx context.Context, d time.Duration) bool {
	deadline := a.cfg.Clock.Now().Add(d)
	for {
		left := deadline.Sub(a.cfg.Clock.Now())
		if left <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-a.syncNow:
			return true // the server pushed a change
		case <-a.cfg.Clock.After(min(left, a.cfg.SyncInterval)):
		}
		if a.cache.sweep(a.cfg.Clock.Now()) {
			a.cache.broadcast()
		}
	}
}

// DefaultSyncPageSize is how many entries the agent asks for per Sync page:
// small enough that signing starts soon after the first page arrives and a
// page stays a small fraction of the 4 MiB message limit, large enough that
// a 100,000-entry node takes a hundred round trips, not thousands.
const DefaultSyncPageSize = 1000

// maxPageRestarts bounds how often one sync starts its pages again when the
// server refuses to continue them (a stale page token, a replica behind).
const maxPageRestarts = 3

// syncOnce runs one sync: fetch the changes page by page, apply each page
// as it arrives and start signing its entries' X509-SVIDs meanwhile,
// persist a new bundle, and finally get every other entry that needs one
// (renewals) a fresh X509-SVID.
func (a *Agent) syncOnce(ctx context.Context, dir *dataDir) error {
	start := time.Now()
	defer func() { a.met.syncDuration.Observe(time.Since(start).Seconds()) }()
	if a.cache.sweep(a.cfg.Clock.Now()) {
		a.cache.broadcast()
	}
	p := a.newSignPipeline(ctx)
	wave := &bulkWave{pacer: bulkGC}
	defer wave.end()
	err := a.syncPages(ctx, dir, p, wave)
	if err == nil {
		wave.add(p, a.cache.due(a.cfg.Clock.Now()))
	}
	stored, signErr := p.wait()
	wave.end()
	if stored > 0 {
		a.cache.broadcast()
	}
	if err != nil {
		return err
	}
	if signErr != nil {
		return signErr
	}
	a.markReady()
	return nil
}

// syncPages fetches and applies the pages of one sync, handing the entries
// of each page that need an X509-SVID to p (through wave, which counts
// them).
func (a *Agent) syncPages(ctx context.Context, dir *dataDir, p *signPipeline, wave *bulkWave) error {
	var (
		st       pageState
		token    string
		restarts int
		served   = a.cache.served.take()
	)
	for {
		req := a.cache.syncRequest()
		req.PageSize, req.PageToken = int32(min(a.cfg.SyncPageSize, 1<<20)), token
		req.Served, served = served, nil
		var resp *agentv1.SyncResponse
		callStart := time.Now()
		err := a.client.call(func(api agentv1.AgentClient) (err error) {
			cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
			defer cancel()
			resp, err = api.Sync(cctx, req)
			return err
		})
		since(&a.timings.syncCall, callStart)
		a.timings.pages.Add(1)
		if err != nil {
			a.cache.served.restore(req.Served)
			if token != "" && restarts < maxPageRestarts && errkind.Is(errkind.FromGRPC(err), errkind.FailedPrecondition) {
				a.log.Info("server asked to start the paged sync again", logKeyError, err)
				restarts++
				st, token = pageState{}, ""
				continue
			}
			return rpcErr("sync", err)
		}
		applyStart := time.Now()
		res, err := a.cache.applyPage(resp, &st)
		since(&a.timings.apply, applyStart)
		if err != nil {
			return err
		}
		a.learnBrokerURL(resp.GetBrokerUrl())
		if res.bundle != nil {
			seq, _ := res.bundle.SequenceNumber()
			a.log.Info("trust bundle updated", "sequence", seq, "x509_authorities", len(res.bundle.X509Authorities()))
			if err := dir.saveBundle(res.bundle); err != nil {
				a.log.Error("cannot persist trust bundle: a restart will fall back to the previous one", logKeyError, err)
			}
		}
		if res.federated {
			a.log.Info("federated bundles updated", "trust_domains", len(resp.GetFederatedBundles()))
		}
		if res.entries || res.bundle != nil || res.federated {
			a.cache.broadcast()
		}
		token = resp.GetNextPageToken()
		lastID := resp.GetPageLastId()
		// The page is applied: its messages are not held while add waits
		// for the pipeline to take the page's jobs.
		req, resp = nil, nil
		wave.add(p, res.due)
		if token == "" {
			a.timings.entries.CompareAndSwap(0, int64(time.Since(a.started)))
			return nil
		}
		if lastID == "" || len(token) > 4096 {
			return errors.New("sync: the server sent a next_page_token without page_last_id, or an oversized one")
		}
	}
}
