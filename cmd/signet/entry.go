package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/adminapi"
	"github.com/signet-id/signet/internal/apiconv"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

func newEntryCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:        "entry",
		Short:      "Manage registration entries: which SPIFFE ID a workload with given selectors receives",
		SuggestFor: []string{"entries"},
	}
	conn.addFlags(cmd)
	cmd.AddCommand(newEntryCreateCmd(&conn), newEntryListCmd(&conn), newEntryShowCmd(&conn),
		newEntryUpdateCmd(&conn), newEntryDeleteCmd(&conn))
	return cmd
}

// entryFlags are the entry fields settable on the command line.
type entryFlags struct {
	spiffeID, parentID, x509TTL, jwtTTL, expiresAt, hint string
	selectors, dns, federatesWith, labels                []string
	admin, downstream, node                              bool
}

func (f *entryFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.spiffeID, "spiffe-id", "", "SPIFFE ID the workload receives, e.g. spiffe://example.org/web")
	fl.StringVar(&f.parentID, "parent-id", "", "SPIFFE ID of the node (agent) or node alias the entry belongs to")
	fl.StringArrayVar(&f.selectors, "selector", nil, "selector the workload must have, type:value (repeatable), e.g. unix:uid:1000")
	fl.StringVar(&f.x509TTL, "x509-ttl", "", "X509-SVID lifetime, e.g. 1h (default: the server's)")
	fl.StringVar(&f.jwtTTL, "jwt-ttl", "", "JWT-SVID lifetime, e.g. 5m (default: the server's)")
	fl.StringArrayVar(&f.dns, "dns", nil, "DNS name for the X509-SVID, e.g. web.example.org or *.web.example.org; not an IP address (repeatable)")
	fl.StringArrayVar(&f.federatesWith, "federates-with", nil, "trust domain whose bundle the workload also receives (repeatable)")
	fl.StringArrayVar(&f.labels, "label", nil, "inventory label key=value, e.g. owner=payments (repeatable)")
	fl.StringVar(&f.expiresAt, "expires-at", "", "RFC 3339 time after which the entry is no longer served")
	fl.StringVar(&f.hint, "hint", "", "hint for workloads holding several SVIDs")
	fl.BoolVar(&f.admin, "admin", false, "SVIDs of this entry may call the admin API")
	fl.BoolVar(&f.downstream, "downstream", false, "SVIDs of this entry may sign for a nested CA")
}

// addNode adds --node, the shorthand for a node alias's parent ID.
func (f *entryFlags) addNode(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.node, "node", false,
		"make the entry a node alias: shorthand for --parent-id spiffe://<trust domain>/signet/server; its selectors are node selectors (x509pop:subject:cn:web-7)")
}

// resolveNode turns --node into the alias parent of the entry's trust
// domain.
func (f *entryFlags) resolveNode() error {
	if !f.node {
		return nil
	}
	if f.parentID != "" {
		return fmt.Errorf("--node and --parent-id: give one (--node means --parent-id spiffe://<trust domain>/signet/server)")
	}
	id, err := spiffeid.FromString(f.spiffeID)
	if err != nil {
		return fmt.Errorf("--spiffe-id %q: %v (--node takes the trust domain from it)", f.spiffeID, err)
	}
	f.parentID = spiffeid.RequireFromPath(id.TrustDomain(), "/signet/server").String()
	return nil
}

// toJSON assembles the flags into the entry JSON shape, which validates.
func (f *entryFlags) toJSON() (entryJSON, error) {
	labels, err := parseLabels("--label", f.labels)
	if err != nil {
		return entryJSON{}, err
	}
	if len(labels) == 0 {
		labels = nil
	}
	return entryJSON{
		SPIFFEID: f.spiffeID, ParentID: f.parentID, Selectors: f.selectors, X509TTL: f.x509TTL, JWTTTL: f.jwtTTL,
		DNSNames: f.dns, Admin: f.admin, Downstream: f.downstream, FederatesWith: f.federatesWith,
		ExpiresAt: f.expiresAt, Hint: f.hint, Labels: labels,
	}, nil
}

func newEntryCreateCmd(conn *adminConn) *cobra.Command {
	var (
		f      entryFlags
		file   string
		atomic bool
		out    output
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an entry from flags, or many from a JSON file (--file)",
		Example: `  signet entry create --parent-id spiffe://example.org/node/web-1 \
      --spiffe-id spiffe://example.org/web --selector unix:uid:1000 --x509-ttl 1h
  signet entry create --node --spiffe-id spiffe://example.org/fleet/web --selector x509pop:subject:cn:web-7
  signet entry create --file entries.json --atomic
  signet entry create --file 100k.json    # progress as batches commit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var feed *entryFeed
			warn := newSelectorWarner(cmd.ErrOrStderr())
			if file != "" {
				if cmd.Flags().Changed("spiffe-id") || cmd.Flags().Changed("parent-id") || cmd.Flags().Changed("selector") {
					return fmt.Errorf("--file and entry flags (--spiffe-id, --parent-id, --selector …) are mutually exclusive")
				}
				doc, err := readEntriesDoc(file)
				if err != nil {
					return err
				}
				feed = doc.feed(cmd.Context())
			} else {
				if err := f.resolveNode(); err != nil {
					return err
				}
				if f.spiffeID == "" || f.parentID == "" || len(f.selectors) == 0 {
					return fmt.Errorf("--spiffe-id, --parent-id (or --node) and at least one --selector are required (or --file)")
				}
				j, err := f.toJSON()
				if err != nil {
					return err
				}
				e, err := j.toProto()
				if err != nil {
					return flagNamed(err)
				}
				feed = sliceFeed([]*commonv1.Entry{e})
			}
			progress, done := entryProgress(cmd, feed.n, file != "" && !atomic && !out.json)
			results, err := createEntries(cmd, conn, feed, atomic, reportAs(out.json, feed.n), progress, warn)
			done()
			if err != nil {
				return err
			}
			warnUnfederated(cmd, conn, createdEntries(results))
			err = printEntryResults(cmd, results, out.json)
			if file == "" {
				err = flagNamed(err)
			}
			return err
		},
	}
	f.add(cmd)
	f.addNode(cmd)
	cmd.Flags().StringVar(&file, "file", "", "JSON file of entries (\"-\" for stdin), in the format entry list --json prints")
	cmd.Flags().BoolVar(&atomic, "atomic", false, "create all entries or none, in one transaction, streamed to the server "+
		strconv.Itoa(entryBatchSize)+" at a time (default: each entry succeeds or fails on its own, streamed "+
		strconv.Itoa(entryBatchSize)+" at a time and committed in batches, with progress on a terminal)")
	out.addFlags(cmd)
	return cmd
}

// entryBatchSize is how many entries of a --file one message of a
// CreateEntryBatches stream (each entry on its own) or of an atomic
// CreateEntriesStream carries, and one CreateEntries call to a server
// without those streams: the file is sent batch by batch, so neither the
// server nor a message holds it whole. The server collects a
// batch's garbage after it (adminapi's collectAfter); 5,000 per call took
// the same server CPU for 100,000 entries but let each call's garbage
// (about 12 KB per entry) push the server's peak RSS past 150 MB
// (BENCHMARKS.md, issue 16).
const entryBatchSize = 2000

// entryStreamTimeout bounds an atomic CreateEntriesStream: the server's
// own bound.
const entryStreamTimeout = adminapi.StreamDeadline

// atomicRejected is the result an atomic batch reports for a valid entry
// when another entry is invalid, as the server's CreateEntries does.
func atomicRejected(e *commonv1.Entry) *adminv1.EntryResult {
	return &adminv1.EntryResult{Entry: e, Status: &commonv1.Status{
		Code: int32(codes.FailedPrecondition), Message: "not created: another entry of the atomic batch is invalid"}}
}

// createEntries creates the entries of feed and returns one result per
// entry, in the document's order. An entry that failed its local checks is
// not sent: it fails with that error, and in an atomic batch nothing is
// created then. An atomic batch is one CreateEntriesStream (one store
// transaction: all or none), or one CreateEntries call on a server without
// the stream; otherwise several entries go in one CreateEntryBatches
// stream, or in calls of entryBatchSize to a server without it, and
// progress, when set, learns how many entries were answered after each
// batch. The streams send each batch as soon as the feed has decoded it.
// A stream or call that fails ends the command with an error that counts
// what the batches before it created.
func createEntries(cmd *cobra.Command, conn *adminConn, feed *entryFeed, atomic bool, as createdAs, progress func(sent int), warn *selectorWarner) ([]*adminv1.EntryResult, error) {
	defer feed.stop() // a command that fails early leaves no goroutine decoding
	r := &feedReader{feed: feed, results: make([]*adminv1.EntryResult, feed.n), warn: warn}
	// The first batch is read before anything is sent: a document of one
	// batch is sent whole (one entry in one CreateEntries call), and an
	// atomic batch with an invalid entry in it is not sent at all.
	for r.log.len() < entryBatchSize && !(atomic && r.invalid > 0) && r.next() {
	}
	if atomic && r.invalid > 0 {
		r.drain()
		if err := r.err(); err != nil {
			return nil, err
		}
		r.rejectValid()
		return r.results, nil
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	if r.log.len() == 0 {
		return r.results, nil // every entry failed its local checks
	}
	c, closeConn, err := conn.client()
	if err != nil {
		return nil, err
	}
	defer closeConn()
	// The streams first; a server without them gets CreateEntries calls.
	var streamed func() error
	switch {
	case atomic:
		streamed = func() error { return createEntriesStream(cmd.Context(), c, r, as) }
	case !r.closed || r.log.len() > 1:
		streamed = func() error { return createEntryBatches(cmd.Context(), c, r, as, progress) }
	}
	if streamed != nil {
		err := streamed()
		if status.Code(err) != codes.Unimplemented {
			if err != nil {
				return nil, rpcErr(err)
			}
			return r.results, nil
		}
	}
	// The streams read the feed to its end before they return.
	if err := r.err(); err != nil {
		return nil, err
	}
	send, pos := r.log.entries, r.log.index
	size := entryBatchSize
	if atomic {
		size = len(send) // all or none: one call
	}
	created := 0
	for start := 0; start < len(send); start += size {
		batch := send[start:min(start+size, len(send))]
		ctx, cancel := context.WithTimeout(cmd.Context(), adminCallTimeout)
		resp, err := c.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: batch, Atomic: atomic})
		cancel()
		if err != nil {
			err = rpcErr(err)
			if start > 0 {
				err = fmt.Errorf("%d of %d entries created in the batches before this one; the remaining %d were not created: %w",
					created, feed.n, len(send)-start, err)
			}
			return nil, err
		}
		got := resp.GetResults()
		if len(got) != len(batch) {
			return nil, fmt.Errorf("server answered %d results for %d entries", len(got), len(batch))
		}
		for j, res := range got {
			r.results[pos[start+j]] = res
			if codes.Code(res.GetStatus().GetCode()) == codes.OK {
				created++
			}
		}
		if progress != nil {
			progress(len(batch))
		}
	}
	return r.results, nil
}

// feedReader takes the entries of a feed for createEntries: the failure
// of each invalid entry goes to results at once, the valid entries to log
// and pending, and from pending in batches to the server. Its methods are
// called from one goroutine at a time; log is also read by the goroutine
// that reads the server's answers.
type feedReader struct {
	feed    *entryFeed
	results []*adminv1.EntryResult // one per entry of the document
	warn    *selectorWarner
	log     feedLog
	pending []*commonv1.Entry // valid entries taken but not yet sent
	read    int               // entries taken from the feed
	invalid int
	closed  bool // the feed has no more chunks
}

// next takes the feed's next chunk; false once the feed is closed.
func (r *feedReader) next() bool {
	c, ok := <-r.feed.chunks
	if !ok {
		r.closed = true
		return false
	}
	valid := c.entries
	var index []int
	if c.invalid != nil {
		valid, index = nil, make([]int, 0, len(c.entries))
	}
	for k, e := range c.entries {
		i := c.first + k
		if c.invalid != nil {
			if err := c.invalid[k]; err != nil {
				r.results[i] = &adminv1.EntryResult{Entry: e, Status: &commonv1.Status{
					Code: int32(codes.InvalidArgument), Message: err.Error()}}
				r.invalid++
				continue
			}
			valid, index = append(valid, e), append(index, i)
		}
		r.warn.check(e)
	}
	r.log.add(valid, index, c.first)
	r.pending = append(r.pending, valid...)
	r.read += len(c.entries)
	return true
}

// drain takes what is left of the feed, sending nothing.
func (r *feedReader) drain() {
	for r.next() {
	}
	r.pending = nil
}

// err is why the feed ended before its last entry (the command was
// interrupted), or nil.
func (r *feedReader) err() error {
	if !r.closed || r.read == r.feed.n {
		return nil
	}
	return fmt.Errorf("entries file: stopped after %d of %d entries: %w", r.read, r.feed.n, context.Cause(r.feed.ctx))
}

// rejectValid reports every valid entry of an atomic batch that was not
// created because another entry is invalid.
func (r *feedReader) rejectValid() {
	for k, i := range r.log.index {
		r.results[i] = atomicRejected(r.log.entries[k])
	}
}

// sendAll sends the pending entries and the rest of the feed, as the feed
// hands them on, with send in messages of entryBatchSize, and reads the
// feed to its end. It stops sending when send fails, returning that error
// (a server that ends the stream early, io.EOF, is no error here: the
// stream's receiving side has its status), and, with stopOnInvalid, at
// the first invalid entry.
func (r *feedReader) sendAll(send func(*adminv1.CreateEntriesStreamRequest) error, stopOnInvalid bool) error {
	for {
		if stopOnInvalid && r.invalid > 0 {
			break
		}
		for len(r.pending) >= entryBatchSize || (r.closed && len(r.pending) > 0) {
			n := min(entryBatchSize, len(r.pending))
			if err := send(&adminv1.CreateEntriesStreamRequest{Entries: r.pending[:n]}); err != nil {
				r.drain()
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			r.pending = r.pending[n:]
		}
		if r.closed || !r.next() {
			if len(r.pending) == 0 {
				return nil
			}
		}
	}
	r.drain()
	return nil
}

// createEntryBatches creates the entries of r each on its own with one
// CreateEntryBatches stream of entryBatchSize entries per message, sent
// while the server's answers are read, and fills r.results as
// CreateEntries would: each entry as stored, or its failure. progress,
// when set, learns how many entries each answer covers (the server answers
// once per transaction committed). A server without the stream fails with
// codes.Unimplemented before any entry is created, once r has read the
// feed to its end. When the stream fails mid-way, the error counts what
// was answered before.
func createEntryBatches(ctx context.Context, c adminv1.AdminClient, r *feedReader, as createdAs, progress func(int)) error {
	ctx, cancel := context.WithTimeout(ctx, entryStreamTimeout)
	defer cancel()
	stream, err := c.CreateEntryBatches(ctx)
	if err != nil {
		r.drain()
		return err
	}
	sent := make(chan error, 1)
	go func() {
		err := r.sendAll(stream.Send, false)
		if err == nil {
			err = stream.CloseSend()
		}
		sent <- err
	}()
	results := make([]*adminv1.EntryResult, r.feed.n) // by the entries' order in the stream
	answered, created := 0, 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil {
			err = takeBatchAnswer(resp, r.log.sent(), results, answered, as)
		}
		if err != nil {
			cancel()
			<-sent
			if answered == 0 {
				return err // the caller falls back on Unimplemented
			}
			rest := "were not created"
			if code := status.Code(err); code == codes.Unavailable || code == codes.Canceled || code == codes.Unknown {
				rest = "were not answered: list entries to see which of them were created"
			}
			return fmt.Errorf("%d of %d entries created in the batches answered before this error; the remaining %d %s: %w",
				created, r.feed.n, r.feed.n-r.invalid-answered, rest, rpcErr(err))
		}
		n := len(resp.GetIds())
		created += n - len(resp.GetFailures())
		answered += n
		if progress != nil {
			progress(n)
		}
	}
	if err := <-sent; err != nil {
		return err
	}
	if err := r.err(); err != nil {
		return err
	}
	if answered != r.log.len() {
		return fmt.Errorf("server answered %d of %d entries", answered, r.log.len())
	}
	for k, res := range results[:answered] {
		r.results[r.log.index[k]] = res
	}
	return nil
}

// takeBatchAnswer fills results (by the entries' order in the stream) with
// one CreateEntryBatchesResponse, which must answer entries sent, from
// index answered on, each once: an ID for an entry created, a failure for
// the others.
func takeBatchAnswer(resp *adminv1.CreateEntryBatchesResponse, sent []*commonv1.Entry, results []*adminv1.EntryResult, answered int, as createdAs) error {
	ids := resp.GetIds()
	if resp.GetFirst() != int64(answered) || len(ids) == 0 || len(ids) > len(sent)-answered {
		return fmt.Errorf("server answered %d entries from entry %d, expected some from entry %d of %d sent", len(ids), resp.GetFirst(), answered, len(sent))
	}
	for _, f := range resp.GetFailures() {
		i := f.GetIndex()
		if i < int64(answered) || i >= int64(answered+len(ids)) || results[i] != nil || ids[i-int64(answered)] != "" {
			return fmt.Errorf("server answered a failure for entry %d outside its answer or with an ID", i)
		}
		results[i] = &adminv1.EntryResult{Entry: sent[i], Status: f.GetStatus()}
	}
	for j, id := range ids {
		i := answered + j
		switch {
		case id != "":
			results[i] = &adminv1.EntryResult{Entry: as(sent[i], id, resp.GetRevision(), resp.GetCreatedAt()), Status: &commonv1.Status{}}
		case results[i] == nil:
			return fmt.Errorf("server answered neither an ID nor a failure for entry %d", i)
		}
	}
	return nil
}

// createEntriesStream creates the entries of r, all or none, with one
// CreateEntriesStream of entryBatchSize entries per message, and fills
// r.results as CreateEntries would: each entry as stored, or, when any
// failed, each failure and atomicRejected for the others. An entry that
// fails its local checks after others were sent ends the stream without
// closing it, and the server rolls back what it received.
func createEntriesStream(ctx context.Context, c adminv1.AdminClient, r *feedReader, as createdAs) error {
	ctx, cancel := context.WithTimeout(ctx, entryStreamTimeout)
	defer cancel()
	stream, err := c.CreateEntriesStream(ctx)
	if err != nil {
		r.drain()
		return err
	}
	err = r.sendAll(stream.Send, true)
	if err == nil {
		err = r.err()
	}
	if r.invalid > 0 {
		cancel()
		r.rejectValid()
		return err
	}
	if err != nil {
		return err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	entries, index := r.log.entries, r.log.index
	if fs := resp.GetFailures(); len(fs) > 0 {
		failed := make([]bool, len(entries))
		for _, f := range fs {
			k := f.GetIndex()
			if k < 0 || k >= int64(len(entries)) || failed[k] {
				return fmt.Errorf("server answered a failure for entry %d of %d", k, len(entries))
			}
			failed[k] = true
			r.results[index[k]] = &adminv1.EntryResult{Entry: entries[k], Status: f.GetStatus()}
		}
		for k, e := range entries {
			if !failed[k] {
				r.results[index[k]] = atomicRejected(e)
			}
		}
		return nil
	}
	ids := resp.GetIds()
	if len(ids) != len(entries) {
		return fmt.Errorf("server answered %d ids for %d entries", len(ids), len(entries))
	}
	for k, e := range entries {
		r.results[index[k]] = &adminv1.EntryResult{Entry: as(e, ids[k], resp.GetRevision(), resp.GetCreatedAt()),
			Status: &commonv1.Status{}}
	}
	return nil
}

// createdAs is how a stream's results show an entry e the server created
// with id at revision rev and time at (Unix seconds): storedEntry or
// reportedEntry.
type createdAs func(e *commonv1.Entry, id string, rev, at int64) *commonv1.Entry

// reportedEntry is what the text report of many entries shows of a created
// entry: its IDs and the server-set fields. Making storedEntry of each of
// 100,000 entries took a quarter of a second of the CLI's CPU while the
// server was writing.
func reportedEntry(e *commonv1.Entry, id string, rev, at int64) *commonv1.Entry {
	return &commonv1.Entry{Id: id, SpiffeId: e.GetSpiffeId(), ParentId: e.GetParentId(), Revision: rev, CreatedAt: at, UpdatedAt: at}
}

// storedEntry is e as the server stores and CreateEntries returns it once
// created with id at revision rev and time at (Unix seconds): converted
// as the server converts it (selectors in canonical order, trust domains
// as IDs) with the server-set fields filled in.
func storedEntry(e *commonv1.Entry, id string, rev, at int64) *commonv1.Entry {
	var out *commonv1.Entry
	if m, err := apiconv.EntryFromProto(e); err == nil {
		m.Selectors = model.SortSelectors(slices.Clone(m.Selectors))
		out = apiconv.EntryToProto(m)
	} else { // the server took it: cannot happen, but show it as sent
		out = proto.Clone(e).(*commonv1.Entry)
	}
	out.Id, out.Revision, out.CreatedAt, out.UpdatedAt = id, rev, at, at
	return out
}

// reportAs is how the results of n entries carry each created entry for
// printEntryResults: as stored when it prints entries in full (as JSON, or
// one entry alone), otherwise only what its line shows.
func reportAs(asJSON bool, n int) createdAs {
	if asJSON || n == 1 {
		return storedEntry
	}
	return reportedEntry
}

// printEntryResults reports a batch: every entry's outcome, then a count.
// It fails the command when any entry failed, after printing every outcome.
func printEntryResults(cmd *cobra.Command, results []*adminv1.EntryResult, asJSON bool) error {
	failed := 0
	for _, r := range results {
		if codes.Code(r.GetStatus().GetCode()) != codes.OK {
			failed++
		}
	}
	w := cmd.OutOrStdout()
	switch {
	case asJSON:
		type item struct {
			Entry  entryJSON `json:"entry"`
			Status string    `json:"status"`
			Error  string    `json:"error,omitempty"`
		}
		items := make([]item, len(results))
		for i, r := range results {
			items[i] = item{Entry: entryToJSON(r.GetEntry()), Status: codes.Code(r.GetStatus().GetCode()).String(), Error: r.GetStatus().GetMessage()}
		}
		if err := writeJSON(w, map[string]any{"results": items, "created": len(results) - failed, "failed": failed}); err != nil {
			return err
		}
	case len(results) == 1:
		if failed > 0 {
			return errors.New(results[0].GetStatus().GetMessage())
		}
		return printEntry(w, results[0].GetEntry())
	default:
		bw := bufio.NewWriter(w) // one line per entry: not one write each
		for i, r := range results {
			name := r.GetEntry().GetSpiffeId()
			if name == "" {
				name = "no spiffe_id"
			}
			if codes.Code(r.GetStatus().GetCode()) != codes.OK {
				fmt.Fprintf(bw, "entry %d (%s): failed: %s\n", i, name, r.GetStatus().GetMessage())
				continue
			}
			fmt.Fprintf(bw, "entry %d (%s): created %s\n", i, name, r.GetEntry().GetId())
		}
		fmt.Fprintf(bw, "created %d of %d entries\n", len(results)-failed, len(results))
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d entries failed", failed, len(results))}
	}
	return nil
}

// entryFlagNames maps the entry field names of server and validation
// messages to the flags of entry create and update.
var entryFlagNames = strings.NewReplacer(
	"x509_ttl_seconds", "--x509-ttl", "jwt_ttl_seconds", "--jwt-ttl", "x509_ttl", "--x509-ttl", "jwt_ttl", "--jwt-ttl",
	"spiffe_id", "--spiffe-id", "parent_id", "--parent-id", "dns_names", "--dns", "selectors", "--selector",
	"federates_with", "--federates-with", "expires_at", "--expires-at",
)

// flagNamed rewords an error about an entry given by flags to name the
// flags, not the entry's field names. Exit codes are kept.
func flagNamed(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err == nil {
			return err
		}
		return &exitError{code: ee.code, err: errors.New(entryFlagNames.Replace(ee.err.Error()))}
	}
	return errors.New(entryFlagNames.Replace(err.Error()))
}

func printEntry(w io.Writer, e *commonv1.Entry) error {
	j := entryToJSON(e)
	rows := [][]string{
		{"Entry ID:", j.ID}, {"SPIFFE ID:", j.SPIFFEID}, {"Parent ID:", j.ParentID},
		{"Selectors:", selectorsText(e)}, {"X509-SVID TTL:", orDefault(j.X509TTL)}, {"JWT-SVID TTL:", orDefault(j.JWTTTL)},
	}
	if len(j.DNSNames) > 0 {
		rows = append(rows, []string{"DNS names:", strings.Join(j.DNSNames, ",")})
	}
	if j.Admin {
		rows = append(rows, []string{"Admin:", "true"})
	}
	if j.Downstream {
		rows = append(rows, []string{"Downstream:", "true"})
	}
	if len(j.FederatesWith) > 0 {
		rows = append(rows, []string{"Federates with:", strings.Join(j.FederatesWith, ",")})
	}
	if j.ExpiresAt != "" {
		rows = append(rows, []string{"Expires at:", j.ExpiresAt})
	}
	if j.Hint != "" {
		rows = append(rows, []string{"Hint:", j.Hint})
	}
	for k, v := range j.Labels {
		rows = append(rows, []string{"Label:", k + "=" + v})
	}
	rows = append(rows, []string{"Revision:", fmt.Sprint(j.Revision)})
	return table(w, rows)
}

func orDefault(s string) string {
	if s == "" {
		return "server default"
	}
	return s
}

func newEntryListCmd(conn *adminConn) *cobra.Command {
	var (
		parentID, spiffeID, federatesWith string
		selectors                         []string
		page                              pageFlags
		out                               output
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List entries, optionally filtered, a page at a time; the table ends with the count",
		Example: `  signet entry list --parent-id spiffe://example.org/node/a
  signet entry list --federates-with partner.org       # whose workloads get partner.org's bundle
  signet entry list --limit 500 --page-token TOKEN   # the next page, as the previous one said`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := page.size()
			if err != nil {
				return err
			}
			req := &adminv1.ListEntriesRequest{ParentId: parentID, SpiffeId: spiffeID, FederatesWith: federatesWith, PageSize: size, PageToken: page.token}
			for _, s := range selectors {
				sel, err := model.ParseSelector(s)
				if err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
				req.Selectors = append(req.Selectors, &commonv1.Selector{Type: sel.Type, Value: sel.Value})
			}
			var resp *adminv1.ListEntriesResponse
			err = conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.ListEntries(ctx, req)
				return err
			})
			if err != nil {
				return flagNamed(err)
			}
			w := cmd.OutOrStdout()
			entries := resp.GetEntries()
			if out.json {
				list := make([]entryJSON, len(entries))
				for i, e := range entries {
					list[i] = entryToJSON(e)
				}
				return writeJSON(w, map[string]any{"entries": list, "next_page_token": resp.GetNextPageToken()})
			}
			rows := [][]string{{"ENTRY ID", "SPIFFE ID", "PARENT ID", "SELECTORS", "X509 TTL", "LAST ISSUED"}}
			for _, e := range entries {
				rows = append(rows, []string{e.GetId(), e.GetSpiffeId(), e.GetParentId(), selectorsText(e),
					orDash(seconds(e.GetX509TtlSeconds())), fmtTime(unixTime(e.GetLastIssuedAt()))})
			}
			if err := table(w, rows); err != nil {
				return err
			}
			if _, err = fmt.Fprintf(w, "%d entries\n", len(entries)); err != nil {
				return err
			}
			return nextPage(cmd, resp.GetNextPageToken())
		},
	}
	cmd.Flags().StringVar(&parentID, "parent-id", "", "only entries with this parent ID")
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "only entries with this SPIFFE ID")
	cmd.Flags().StringArrayVar(&selectors, "selector", nil, "only entries having this selector (repeatable)")
	cmd.Flags().StringVar(&federatesWith, "federates-with", "", "only entries that federate with this trust domain, e.g. partner.org")
	page.addFlags(cmd, "entries")
	out.addFlags(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newEntryShowCmd(conn *adminConn) *cobra.Command {
	var (
		out      output
		spiffeID string
	)
	cmd := &cobra.Command{
		Use:   "show ENTRY_ID | --spiffe-id ID",
		Short: "Show one entry, or every entry of a SPIFFE ID",
		Example: `  signet entry show 6f1c…
  signet entry show --spiffe-id spiffe://example.org/web`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case spiffeID != "" && len(args) > 0:
				return fmt.Errorf("give an ENTRY_ID or --spiffe-id, not both")
			case spiffeID == "" && len(args) != 1:
				return fmt.Errorf("give one ENTRY_ID, or --spiffe-id ID")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var entries []*commonv1.Entry
			if spiffeID != "" {
				// One page: the entries of one SPIFFE ID are few.
				err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
					resp, err := c.ListEntries(ctx, &adminv1.ListEntriesRequest{SpiffeId: spiffeID, PageSize: maxListLimit})
					entries = resp.GetEntries()
					return err
				})
				if err != nil {
					return flagNamed(err)
				}
				if len(entries) == 0 {
					return fmt.Errorf("no entry has SPIFFE ID %s: see signet entry list", spiffeID)
				}
			} else {
				err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) error {
					e, err := c.GetEntry(ctx, &adminv1.GetEntryRequest{Id: args[0]})
					entries = []*commonv1.Entry{e}
					return err
				})
				if err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if out.json {
				if spiffeID == "" {
					return writeJSON(w, entryToJSON(entries[0]))
				}
				list := make([]entryJSON, len(entries))
				for i, e := range entries {
					list[i] = entryToJSON(e)
				}
				return writeJSON(w, map[string]any{"entries": list})
			}
			for i, e := range entries {
				if i > 0 {
					fmt.Fprintln(w)
				}
				j := entryToJSON(e)
				if err := printEntry(w, e); err != nil {
					return err
				}
				if err := table(w, [][]string{{"Created:", orDash(j.CreatedAt)}, {"Updated:", orDash(j.UpdatedAt)},
					{"First issued:", orDash(j.FirstIssuedAt)}, {"Last issued:", orDash(j.LastIssuedAt)},
					{"First served:", orDash(j.FirstServedAt)}, {"Last served:", orDash(j.LastServedAt)}}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&spiffeID, "spiffe-id", "", "show the entries with this SPIFFE ID instead of one by ID")
	out.addFlags(cmd)
	return cmd
}

// flagFields maps entry flags to the update_mask field names they change.
var flagFields = map[string]string{
	"spiffe-id": "spiffe_id", "parent-id": "parent_id", "selector": "selectors", "x509-ttl": "x509_ttl_seconds",
	"jwt-ttl": "jwt_ttl_seconds", "dns": "dns_names", "admin": "admin", "downstream": "downstream",
	"federates-with": "federates_with", "expires-at": "expires_at", "hint": "hint", "label": "labels",
}

func newEntryUpdateCmd(conn *adminConn) *cobra.Command {
	var (
		f   entryFlags
		out output
	)
	cmd := &cobra.Command{
		Use:   "update ENTRY_ID",
		Short: "Change the given fields of an entry; fields not given are kept",
		Example: `  signet entry update 6f1c… --x509-ttl 30m
  signet entry update 6f1c… --selector unix:uid:1000 --selector unix:gid:1000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var mask []string
			for flag, field := range flagFields {
				if cmd.Flags().Changed(flag) {
					mask = append(mask, field)
				}
			}
			if len(mask) == 0 {
				return fmt.Errorf("nothing to update: give at least one field flag, e.g. --x509-ttl 30m")
			}
			j, err := f.toJSON()
			if err != nil {
				return err
			}
			e, err := partialEntry(j)
			if err != nil {
				return err
			}
			e.Id = args[0]
			var updated *commonv1.Entry
			err = conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				updated, err = c.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Entry: e, UpdateMask: mask})
				return err
			})
			if err != nil {
				return flagNamed(err)
			}
			if cmd.Flags().Changed("federates-with") {
				warnUnfederated(cmd, conn, []*commonv1.Entry{updated})
			}
			if out.json {
				return writeJSON(cmd.OutOrStdout(), entryToJSON(updated))
			}
			return printEntry(cmd.OutOrStdout(), updated)
		},
	}
	f.add(cmd)
	out.addFlags(cmd)
	return cmd
}

// partialEntry converts only the fields given, without requiring the ones
// an update leaves alone; the server validates the merged entry.
func partialEntry(j entryJSON) (*commonv1.Entry, error) {
	e := &commonv1.Entry{SpiffeId: j.SPIFFEID, ParentId: j.ParentID, DnsNames: j.DNSNames, Admin: j.Admin,
		Downstream: j.Downstream, FederatesWith: j.FederatesWith, Hint: j.Hint, Labels: j.Labels}
	for _, d := range j.DNSNames {
		if err := checkDNSName("--dns", d); err != nil {
			return nil, err
		}
	}
	for i, s := range j.Selectors {
		sel, err := model.ParseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("--selector[%d]: %w", i, err)
		}
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: sel.Type, Value: sel.Value})
	}
	var err error
	if e.X509TtlSeconds, err = parseTTL("--x509-ttl", j.X509TTL); err != nil {
		return nil, err
	}
	if e.JwtTtlSeconds, err = parseTTL("--jwt-ttl", j.JWTTTL); err != nil {
		return nil, err
	}
	if j.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, j.ExpiresAt)
		if err != nil {
			return nil, fmt.Errorf("--expires-at %q: want an RFC 3339 time such as 2027-01-02T15:04:05Z", j.ExpiresAt)
		}
		e.ExpiresAt = t.Unix()
	}
	return e, nil
}

func newEntryDeleteCmd(conn *adminConn) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ENTRY_ID...",
		Short: "Delete entries",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *adminv1.DeleteEntriesResponse
			err := conn.call(cmd, func(ctx context.Context, c adminv1.AdminClient) (err error) {
				resp, err = c.DeleteEntries(ctx, &adminv1.DeleteEntriesRequest{Ids: args})
				return err
			})
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range resp.GetResults() {
				if codes.Code(r.GetStatus().GetCode()) != codes.OK {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", r.GetId(), r.GetStatus().GetMessage())
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", r.GetId())
			}
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
}
