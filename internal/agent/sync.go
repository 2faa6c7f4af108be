package agent

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"
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

// syncOnce runs one sync: fetch changes, apply them, persist a new bundle,
// and get every entry that needs one a fresh X509-SVID.
func (a *Agent) syncOnce(ctx context.Context, dir *dataDir) error {
	start := time.Now()
	defer func() { a.met.syncDuration.Observe(time.Since(start).Seconds()) }()
	if a.cache.sweep(a.cfg.Clock.Now()) {
		a.cache.broadcast()
	}
	var resp *agentv1.SyncResponse
	req := a.cache.syncRequest()
	req.Served = a.cache.served.take()
	callStart := time.Now()
	err := a.client.call(func(api agentv1.AgentClient) (err error) {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.Sync(cctx, req)
		return err
	})
	since(&a.timings.syncCall, callStart)
	if err != nil {
		a.cache.served.restore(req.Served)
		return rpcErr("sync", err)
	}
	applyStart := time.Now()
	res, err := a.cache.applySync(resp)
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
	if err := a.signDue(ctx); err != nil {
		return err
	}
	a.markReady()
	return nil
}

// signDue gets an X509-SVID signed for every entry that needs one, in
// batches of signBatchSize with signConcurrency calls in flight. Items the
// server refuses are logged and retried later with backoff; a failed call
// is returned.
func (a *Agent) signDue(ctx context.Context) error {
	jobs := a.cache.due(a.cfg.Clock.Now())
	if len(jobs) == 0 {
		return nil
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		stored   int
		firstErr error
		sem      = make(chan struct{}, signConcurrency)
	)
	for start := 0; start < len(jobs); start += signBatchSize {
		batch := jobs[start:min(start+signBatchSize, len(jobs))]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			n, err := a.signBatch(ctx, batch)
			mu.Lock()
			stored += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if stored > 0 {
		a.cache.broadcast()
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// signBatch generates a key and CSR per job, has the server sign them, and
// caches each SVID that checks out. It returns how many it cached.
func (a *Agent) signBatch(ctx context.Context, jobs []signJob) (int, error) {
	keys := make([]crypto.Signer, len(jobs))
	req := &agentv1.SignX509SVIDsRequest{Requests: make([]*agentv1.X509SVIDRequest, len(jobs))}
	index := make(map[string]int, len(jobs))
	keygenStart := time.Now()
	for i, j := range jobs {
		key, csr, err := newKeyAndCSR()
		if err != nil {
			return 0, fmt.Errorf("sign x509-svids: %w", err)
		}
		keys[i] = key
		req.Requests[i] = &agentv1.X509SVIDRequest{EntryId: j.entry.ID, Csr: csr}
		index[j.entry.ID] = i
	}
	since(&a.timings.keygen, keygenStart)
	var resp *agentv1.SignX509SVIDsResponse
	signStart := time.Now()
	err := a.client.call(func(api agentv1.AgentClient) (err error) {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.SignX509SVIDs(cctx, req)
		return err
	})
	since(&a.timings.sign, signStart)
	a.timings.batches.Add(1)
	if err != nil {
		return 0, rpcErr("sign x509-svids", err)
	}
	defer since(&a.timings.insert, time.Now())
	now := a.cfg.Clock.Now()
	answered := make([]bool, len(jobs))
	stored := 0
	for _, r := range resp.GetResults() {
		i, ok := index[r.GetEntryId()]
		if !ok || answered[i] {
			continue
		}
		answered[i] = true
		job := jobs[i]
		err := a.storeResult(job, r, keys[i], now)
		switch {
		case err == nil:
			stored++
		case errors.Is(err, errStale):
			a.log.Debug("discarding x509-svid of a changed entry", logKeyEntryID, job.entry.ID)
		default:
			a.cache.signFailed(job, now, a.cfg.SyncInterval, maxSignRetry)
			a.log.Warn("cannot get x509-svid for entry", logKeyEntryID, job.entry.ID,
				"spiffe_id", job.entry.SPIFFEID.String(), logKeyError, err)
		}
	}
	for i, ok := range answered {
		if !ok {
			a.cache.signFailed(jobs[i], now, a.cfg.SyncInterval, maxSignRetry)
			a.log.Warn("server returned no x509-svid for entry", logKeyEntryID, jobs[i].entry.ID)
		}
	}
	a.met.svidsSigned.WithLabelValues("x509").Add(float64(stored))
	return stored, nil
}

// storeResult checks one item of a SignX509SVIDs response and caches it.
func (a *Agent) storeResult(job signJob, r *agentv1.X509SVIDResult, key crypto.Signer, now time.Time) error {
	if st := r.GetStatus(); st.GetCode() != 0 {
		return errkind.FromGRPC(statusError(st.GetCode(), st.GetMessage()))
	}
	chain, err := parseChain(r.GetCertChain())
	if err != nil {
		return fmt.Errorf("parse x509-svid: %w", err)
	}
	return a.cache.storeSVID(job, chain, key, now)
}
