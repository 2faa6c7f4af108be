package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// signPipeline gets X509-SVIDs signed for the jobs added to it, in three
// overlapping stages: key and CSR generation per batch (one goroutine per
// CPU), the SignX509SVIDs round trips (signConcurrency in flight) and the
// cache inserts that follow each. Stages are joined by small channels, so
// at most a few batches of keys and CSRs exist at once, whatever the
// number of jobs: a 10,000-entry node never holds 10,000 keys, CSRs or
// responses in memory together. Jobs can be added while earlier batches
// are being signed (the pages of a sync, as they arrive).
//
// Create it with newSignPipeline, add jobs, then call wait once; after the
// first failed round trip (the server is unreachable or refused the agent)
// the remaining batches are dropped and wait returns that error.
type signPipeline struct {
	a      *Agent
	ctx    context.Context
	keygen chan []signJob
	signQ  chan *preparedBatch
	kwg    sync.WaitGroup
	swg    sync.WaitGroup
	// started: the key generators run, after the first add with jobs
	// (a sync with nothing to sign starts none and leaves GOMAXPROCS
	// alone, see procs).
	started bool

	mu       sync.Mutex
	stored   int
	firstErr error
	failed   chan struct{} // closed at the first failure
}

// preparedBatch is a batch with its keys and request built.
type preparedBatch struct {
	jobs []signJob
	keys []heldKey
	req  *agentv1.SignX509SVIDsRequest
}

func (a *Agent) newSignPipeline(ctx context.Context) *signPipeline {
	p := &signPipeline{a: a, ctx: ctx, keygen: make(chan []signJob), signQ: make(chan *preparedBatch, 1), failed: make(chan struct{})}
	for range signConcurrency {
		p.swg.Go(p.signWorker)
	}
	return p
}

// add queues jobs (those not already being signed by another pipeline) in
// batches of signBatchSize. It blocks while the stages are full, which is
// what bounds the memory in flight. One goroutine adds.
func (p *signPipeline) add(jobs []signJob) {
	jobs = p.a.cache.claim(jobs)
	if len(jobs) > 0 && !p.started {
		p.started = true
		p.a.procs.acquire() // every CPU for the generators, before counting them
		for range max(1, runtime.GOMAXPROCS(0)) {
			p.kwg.Go(p.keygenWorker)
		}
	}
	for start := 0; start < len(jobs); start += signBatchSize {
		batch := jobs[start:min(start+signBatchSize, len(jobs))]
		select {
		case p.keygen <- batch:
		case <-p.failed:
			p.a.cache.release(jobs[start:])
			return
		case <-p.ctx.Done():
			p.a.cache.release(jobs[start:])
			return
		}
	}
}

// wait lets the queued batches finish and returns how many SVIDs were
// cached and the first failed call.
func (p *signPipeline) wait() (int, error) {
	close(p.keygen)
	p.kwg.Wait()
	close(p.signQ)
	p.swg.Wait()
	if p.started {
		p.a.procs.release()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstErr == nil && p.ctx.Err() != nil {
		return p.stored, p.ctx.Err()
	}
	return p.stored, p.firstErr
}

func (p *signPipeline) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstErr == nil {
		p.firstErr = err
		close(p.failed)
	}
}

func (p *signPipeline) isFailed() bool {
	select {
	case <-p.failed:
		return true
	default:
		return p.ctx.Err() != nil
	}
}

func (p *signPipeline) keygenWorker() {
	for jobs := range p.keygen {
		if p.isFailed() {
			p.a.cache.release(jobs)
			continue
		}
		b, err := p.prepare(jobs)
		if err != nil {
			p.a.cache.release(jobs)
			p.fail(err)
			continue
		}
		p.signQ <- b
	}
}

func (p *signPipeline) signWorker() {
	for b := range p.signQ {
		if p.isFailed() {
			p.a.cache.release(b.jobs)
			continue
		}
		n, err := p.a.signBatch(p.ctx, b)
		p.a.cache.release(b.jobs)
		p.mu.Lock()
		p.stored += n
		p.mu.Unlock()
		if n > 0 {
			p.a.cache.broadcast() // callers waiting for these SVIDs get them now
		}
		if err != nil {
			p.fail(err)
		}
	}
}

// prepare generates a key and a CSR per job.
func (p *signPipeline) prepare(jobs []signJob) (*preparedBatch, error) {
	defer since(&p.a.timings.keygen, time.Now())
	b := &preparedBatch{jobs: jobs, keys: make([]heldKey, len(jobs)),
		req: &agentv1.SignX509SVIDsRequest{Requests: make([]*agentv1.X509SVIDRequest, len(jobs))}}
	for i, j := range jobs {
		key, csr, err := newHeldKeyAndCSR()
		if err != nil {
			return nil, fmt.Errorf("sign x509-svids: %w", err)
		}
		b.keys[i] = key
		b.req.Requests[i] = &agentv1.X509SVIDRequest{EntryId: j.entry.ID, Csr: csr}
	}
	return b, nil
}

// signBatch has the server sign a prepared batch and caches each SVID that
// checks out. It returns how many it cached.
func (a *Agent) signBatch(ctx context.Context, b *preparedBatch) (int, error) {
	var resp *agentv1.SignX509SVIDsResponse
	signStart := time.Now()
	err := a.client.call(func(api agentv1.AgentClient) (err error) {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RPCTimeout)
		defer cancel()
		resp, err = api.SignX509SVIDs(cctx, b.req)
		return err
	})
	since(&a.timings.sign, signStart)
	a.timings.batches.Add(1)
	b.req = nil // the CSRs are done with
	if err != nil {
		return 0, rpcErr("sign x509-svids", err)
	}
	defer since(&a.timings.insert, time.Now())
	now := a.cfg.Clock.Now()
	index := make(map[string]int, len(b.jobs))
	for i, j := range b.jobs {
		index[j.entry.ID] = i
	}
	answered := make([]bool, len(b.jobs))
	v := a.cache.newChainVerifier(now)
	stored := 0
	for _, r := range resp.GetResults() {
		i, ok := index[r.GetEntryId()]
		if !ok || answered[i] {
			continue
		}
		answered[i] = true
		job := b.jobs[i]
		err := a.storeResult(v, job, r, b.keys[i], now)
		b.keys[i] = heldKey{}
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
			a.cache.signFailed(b.jobs[i], now, a.cfg.SyncInterval, maxSignRetry)
			a.log.Warn("server returned no x509-svid for entry", logKeyEntryID, b.jobs[i].entry.ID)
		}
	}
	a.met.svidsSigned.WithLabelValues("x509").Add(float64(stored))
	return stored, nil
}

// storeResult checks one item of a SignX509SVIDs response and caches it.
func (a *Agent) storeResult(v *chainVerifier, job signJob, r *agentv1.X509SVIDResult, key heldKey, now time.Time) error {
	if st := r.GetStatus(); st.GetCode() != 0 {
		return errkind.FromGRPC(statusError(st.GetCode(), st.GetMessage()))
	}
	leaf, id, chainDER, err := v.verify(r.GetCertChain(), &leafWant{id: job.entry.SPIFFEID, key: key, dnsNames: entryDNSNames(job.entry)})
	if err != nil {
		return err
	}
	return a.cache.keep(job, id, leaf, chainDER, key, now)
}

// chainVerifier verifies the X509-SVID chains of one SignX509SVIDs
// response against the cache's bundle.
//
// The first leaf of each issuer (its issuer name, authority key ID and set
// of intermediates) is verified in full (x509svid.Verify): chain, validity,
// signature. The chain above it is then known good at this time, and its
// issuer known to sign this response's leaves.
//
// Every later leaf of that issuer in the response is checked on its own
// (SPIFFE ID of the trust domain, not a CA, no certificate or CRL signing,
// valid now and not past its issuer's end, no unhandled critical extension)
// and against what the agent asked for: the SPIFFE ID and DNS names of its
// entry and the public key the agent generated for its CSR, byte for byte,
// with the first leaf's signature algorithm. If all of that holds, its own
// signature is not checked. If any of it does not, the leaf's signature is
// checked against the verified issuer, so a leaf that is not what was asked
// for is refused exactly as before (by the signature check or by
// cache.keep).
//
// Why skipping that one signature is sound: the response comes over the
// mTLS connection on which the agent authenticated the server against the
// bundle, and that server is the CA that signs the leaves. An attacker who
// can change a leaf in flight can change any byte of the response, so the
// signature check of a leaf was never a defence against one; it guards
// against a server bug. The bugs it would catch are caught by the other
// checks and by the first leaf's full verification: another CA key or
// issuer (the issuer name and AKI are compared byte for byte, and a leaf
// of another issuer gets its own full verification), a wrong subject or
// key (the requested ID and key are compared), a broken encoding (the leaf
// is parsed in full, and internal/ca's encoder is tested byte for byte
// against x509.CreateCertificate). What is left unchecked is a signature
// value that is wrong although the CA computed it over these bytes with
// this key; a workload's peers would refuse that SVID at their handshake,
// as they refuse any certificate they cannot verify, so it cannot widen
// anyone's trust. A random one in spotCheckOneIn of those leaves has its
// signature checked all the same, so that a signer that errs only now and
// then is still found. The check cost about half of a fresh agent's CPU per
// SVID (one ECDSA P-256 verification, ~65 µs of ~140 µs; BENCHMARKS.md,
// "A fresh agent's SVIDs at less CPU per SVID").
//
// Issuers whose chains carry name constraints are always verified in
// full. Intermediates are parsed once per response.
type chainVerifier struct {
	c       *cache
	now     time.Time
	issuers map[string]*verifiedIssuer   // by leaf's issuer name + AKI + intermediates' DER
	parsed  map[string]*x509.Certificate // intermediates by DER
	// spotCheck reports whether a leaf that may skip its signature check
	// gets it anyway: a random one in spotCheckOneIn, so that a signer
	// that errs now and then (a faulty ECDSA signature can leak the key)
	// is found by some agent soon, at a small fraction of the saving.
	spotCheck func() bool
	// skipped counts the leaves whose signature was not checked (tests).
	skipped int
}

// verifiedIssuer is an issuer whose chain a chainVerifier verified in
// full, with the signature algorithm of the leaf it verified.
type verifiedIssuer struct {
	cert   *x509.Certificate
	sigAlg x509.SignatureAlgorithm
}

// spotCheckOneIn is the share of leaves that may skip their signature
// check and get it anyway: 1 in 64 costs about 1.5 % of what skipping
// saves.
const spotCheckOneIn = 64

// leafWant is what the agent asked for in one CSR: the leaf must certify
// key for id, with dnsNames, for its signature check to be skipped.
type leafWant struct {
	id       spiffeid.ID
	key      heldKey
	dnsNames []string
}

// entryDNSNames returns the DNS names e's X509-SVIDs are signed with.
func entryDNSNames(e heldEntry) []string {
	if e.x == nil {
		return nil
	}
	return e.x.dnsNames
}

func (c *cache) newChainVerifier(now time.Time) *chainVerifier {
	return &chainVerifier{c: c, now: now, issuers: map[string]*verifiedIssuer{}, parsed: map[string]*x509.Certificate{},
		spotCheck: func() bool { return rand.IntN(spotCheckOneIn) == 0 }}
}

// verify parses ders (leaf first) and verifies it as an X509-SVID of the
// cache's trust domain; it returns the leaf, its ID and the chain's DER
// concatenated. want is what the leaf was asked for; nil makes every leaf
// get its signature checked.
func (v *chainVerifier) verify(ders [][]byte, want *leafWant) (*x509.Certificate, spiffeid.ID, []byte, error) {
	if len(ders) == 0 {
		return nil, spiffeid.ID{}, nil, errors.New("parse x509-svid: empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, spiffeid.ID{}, nil, fmt.Errorf("parse x509-svid: certificate 0: %w", err)
	}
	n := 0
	for _, d := range ders {
		n += len(d)
	}
	chainDER := make([]byte, 0, n)
	for _, d := range ders {
		chainDER = append(chainDER, d...)
	}
	key := issuerKey(leaf, chainDER[len(ders[0]):])
	if issuer := v.issuers[key]; issuer != nil {
		id, err := v.checkLeaf(leaf, issuer, want)
		if err != nil {
			return nil, spiffeid.ID{}, nil, fmt.Errorf("verify x509-svid: %w", err)
		}
		return leaf, id, chainDER, nil
	}
	chain := make([]*x509.Certificate, len(ders))
	chain[0] = leaf
	for i, d := range ders[1:] {
		c := v.parsed[string(d)]
		if c == nil {
			if c, err = x509.ParseCertificate(d); err != nil {
				return nil, spiffeid.ID{}, nil, fmt.Errorf("parse x509-svid: certificate %d: %w", i+1, err)
			}
			v.parsed[string(d)] = c
		}
		chain[i+1] = c
	}
	id, verified, err := x509svid.Verify(chain, v.c, x509svid.WithTime(v.now))
	if err != nil {
		return nil, spiffeid.ID{}, nil, fmt.Errorf("verify x509-svid: %w", err)
	}
	if len(verified) > 0 && len(verified[0]) > 1 && !constrained(verified[0][1:]) {
		v.issuers[key] = &verifiedIssuer{cert: verified[0][1], sigAlg: leaf.SignatureAlgorithm}
	}
	return leaf, id, chainDER, nil
}

// issuerKey is what a later leaf must share byte for byte with a verified
// one to be checked against the same issuer: its issuer name, its
// authority key identifier and the intermediates above it (DER).
func issuerKey(leaf *x509.Certificate, intermediates []byte) string {
	k := make([]byte, 0, 2*4+len(leaf.RawIssuer)+len(leaf.AuthorityKeyId)+len(intermediates))
	for _, part := range [][]byte{leaf.RawIssuer, leaf.AuthorityKeyId} {
		k = binary.BigEndian.AppendUint32(k, uint32(len(part)))
		k = append(k, part...)
	}
	return string(append(k, intermediates...))
}

// checkLeaf makes the checks x509svid.Verify makes of a leaf whose issuer
// (and the chain above it) has already been verified at v.now: a SPIFFE ID
// of the trust domain, not a CA, no certificate or CRL signing, valid now,
// no critical extension left unhandled, and signed by issuer. The signature
// is not checked when the leaf is what want asked for (see chainVerifier).
func (v *chainVerifier) checkLeaf(leaf *x509.Certificate, issuer *verifiedIssuer, want *leafWant) (spiffeid.ID, error) {
	id, err := x509svid.IDFromCert(leaf)
	switch {
	case err != nil:
		return spiffeid.ID{}, fmt.Errorf("could not get leaf SPIFFE ID: %w", err)
	case leaf.IsCA:
		return id, errors.New("leaf certificate with CA flag set to true")
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return id, errors.New("leaf certificate with KeyCertSign or KeyCrlSign key usage")
	case id.TrustDomain() != v.c.td:
		return id, fmt.Errorf("no bundle for trust domain %q", id.TrustDomain())
	case v.now.Before(leaf.NotBefore) || v.now.After(leaf.NotAfter):
		return id, errors.New("certificate is not valid at this time")
	case len(leaf.UnhandledCriticalExtensions) > 0:
		return id, errors.New("unhandled critical extension")
	case !bytes.Equal(leaf.RawIssuer, issuer.cert.RawSubject):
		return id, errors.New("issuer name does not match")
	}
	if want != nil && want.asked(leaf, id, issuer) && !v.spotCheck() {
		v.skipped++
		return id, nil
	}
	if err := leaf.CheckSignatureFrom(issuer.cert); err != nil {
		return id, err
	}
	return id, nil
}

// asked reports whether leaf, whose general checks passed, is exactly
// what w asked for of issuer: w's SPIFFE ID, DNS names and key, the
// signature algorithm of the leaf that verified issuer, and no validity
// past issuer's.
func (w *leafWant) asked(leaf *x509.Certificate, id spiffeid.ID, issuer *verifiedIssuer) bool {
	return id == w.id && w.key.certifies(leaf) && leaf.SignatureAlgorithm == issuer.sigAlg &&
		!leaf.NotAfter.After(issuer.cert.NotAfter) && slices.Equal(leaf.DNSNames, w.dnsNames) &&
		len(leaf.IPAddresses) == 0 && len(leaf.EmailAddresses) == 0 && len(leaf.URIs) == 1
}

// constrained reports whether any of certs carries name constraints,
// which a leaf must then be checked against by a full verification.
func constrained(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if c.PermittedDNSDomainsCritical || len(c.PermittedDNSDomains) > 0 || len(c.ExcludedDNSDomains) > 0 ||
			len(c.PermittedIPRanges) > 0 || len(c.ExcludedIPRanges) > 0 ||
			len(c.PermittedEmailAddresses) > 0 || len(c.ExcludedEmailAddresses) > 0 ||
			len(c.PermittedURIDomains) > 0 || len(c.ExcludedURIDomains) > 0 {
			return true
		}
	}
	return false
}
