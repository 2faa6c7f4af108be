package inventoryapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/errkind"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/store"
)

// maxUsesChecked bounds the lease holders examined to prove one
// replacement.
const maxUsesChecked = 1000

// configured returns the broker's configured credentials, name → provider.
func (c Config) configured() map[string]string {
	if c.Credentials == nil {
		return nil
	}
	return c.Credentials()
}

func (a *inventoryAPI) ReplaceFinding(ctx context.Context, req *inventoryv1.ReplaceFindingRequest) (*inventoryv1.InventoryItem, error) {
	kind, key, err := inventory.ParseItemID(req.GetId())
	if err == nil && kind != "" && kind != inventory.KindFinding {
		err = errkind.New(errkind.InvalidArgument, "id %q is not a finding: use finding:FINGERPRINT", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	cred := req.GetCredential()
	if cred == "" {
		return nil, errkind.New(errkind.InvalidArgument, "credential is required: the broker credential that replaces the secret")
	}
	if conf := a.cfg.configured(); conf != nil {
		if _, ok := conf[cred]; !ok {
			return nil, errkind.New(errkind.InvalidArgument, "credential %q is not configured in broker.credentials (configured: %s)",
				cred, orNone(sortedKeys(conf)))
		}
	} else {
		return nil, errkind.New(errkind.FailedPrecondition, "credential %q: the server has no broker section, so nothing can replace a static secret yet", cred)
	}
	f, err := a.cfg.Store.LinkReplacement(ctx, key, cred, req.GetNote())
	if err != nil {
		return nil, err
	}
	a.cfg.Log.InfoContext(ctx, "finding linked to a replacement", "finding", f.Fingerprint[:store.AuditFingerprintLen], "credential", cred)
	if err := a.settle(ctx); err != nil {
		return nil, err
	}
	if f, err = a.cfg.Store.GetFinding(ctx, f.Fingerprint); err != nil {
		return nil, err
	}
	return a.toProto(ctx, a.cfg.classifier(inventory.Thresholds{}).Finding(f))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// use is a lease of a linked credential for a workload in the finding's
// environment.
type use struct {
	subject, node string
	issued        time.Time
}

// useInEnvironment finds a lease of credential issued since linkedAt to a
// workload whose environment is env (as the inventory classifies it: its
// entry's label, else its node's).
func (a *inventoryAPI) useInEnvironment(ctx context.Context, credential string, since time.Time, env string) (use, bool, error) {
	uses, err := a.cfg.Store.CredentialUses(ctx, credential, since, maxUsesChecked)
	if err != nil {
		return use{}, false, err
	}
	c := a.cfg.classifier(inventory.Thresholds{})
	for _, u := range uses {
		sid, err := apiconv.ParseID("subject", u.Subject)
		if err != nil {
			continue
		}
		entries, err := a.cfg.Store.ListEntries(ctx, store.EntryFilter{SPIFFEID: sid, Limit: 100})
		if err != nil {
			return use{}, false, err
		}
		for _, e := range entries {
			if u.Node != "" && e.ParentID.String() != u.Node && len(entries) > 1 {
				continue
			}
			it, err := a.workload(ctx, c, e)
			if err != nil {
				return use{}, false, err
			}
			if it.Environment == env {
				return use{subject: u.Subject, node: u.Node, issued: u.FirstIssued}, true, nil
			}
		}
	}
	return use{}, false, nil
}

// settle proves what can be proven of the pending replacements: a linked
// finding that a rescan found gone becomes replaced once its credential has
// a lease for a workload in its environment since the link. It runs before
// the inventory is read, so that what it shows is current.
func (a *inventoryAPI) settle(ctx context.Context) error {
	pend, err := a.cfg.Store.PendingReplacements(ctx)
	if err != nil {
		return err
	}
	for _, p := range pend {
		if p.Status != store.FindingGone {
			continue
		}
		u, ok, err := a.useInEnvironment(ctx, p.Credential, p.LinkedAt, p.Environment)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		done, err := a.cfg.Store.MarkReplaced(ctx, p.Fingerprint, p.LinkedAt, map[string]string{
			"subject": u.subject, "environment": p.Environment, "lease_issued_at": u.issued.UTC().Format(time.RFC3339),
		})
		if err != nil {
			return err
		}
		if done {
			a.cfg.Log.InfoContext(ctx, "finding replaced", "finding", p.Fingerprint[:store.AuditFingerprintLen], "credential", p.Credential)
		}
	}
	return nil
}

// replacementToProto describes a finding's link and what its proof lacks.
func (a *inventoryAPI) replacementToProto(ctx context.Context, f *store.Finding) (*inventoryv1.Replacement, error) {
	r := f.Replacement
	p := &inventoryv1.Replacement{
		Credential: r.Credential, Note: r.Note, LinkedBy: r.LinkedBy, LinkedAt: apiconv.UnixOrZero(r.LinkedAt),
		ReplacedAt: apiconv.UnixOrZero(r.ReplacedAt), State: "linked",
	}
	if f.Status == store.FindingReplaced {
		p.State = "replaced"
		return p, nil
	}
	if f.Status == store.FindingOpen {
		open := 0
		where := ""
		for _, l := range f.Locations {
			if l.GoneAt.IsZero() {
				if open == 0 {
					where = l.Host + ":" + l.Path
				}
				open++
			}
		}
		p.Missing = append(p.Missing, fmt.Sprintf("secret still present: %d open location(s), first %s; remove it and rescan with `signet scan --report` over its paths", open, where))
	}
	_, used, err := a.useInEnvironment(ctx, r.Credential, r.LinkedAt, f.Environment)
	if err != nil {
		return nil, err
	}
	if !used {
		p.Missing = append(p.Missing, fmt.Sprintf("no lease of %s for a workload in %s since the link (%s)", r.Credential, f.Environment,
			r.LinkedAt.UTC().Format(time.RFC3339)))
	}
	return p, nil
}

func suggestionToProto(s inventory.Suggestion) *inventoryv1.Suggestion {
	return &inventoryv1.Suggestion{Provider: s.Provider, Credentials: s.Credentials, Text: s.Text}
}

// toProto converts an item for the wire; a finding also gets its
// suggested replacement and the state of its link.
func (a *inventoryAPI) toProto(ctx context.Context, it inventory.Item) (*inventoryv1.InventoryItem, error) {
	p := itemToProto(it)
	if it.Finding == nil {
		return p, nil
	}
	pf := p.GetFinding()
	pf.Suggestion = suggestionToProto(inventory.Suggest(it.Finding, a.cfg.configured()))
	if it.Finding.Replacement != nil {
		var err error
		if pf.Replacement, err = a.replacementToProto(ctx, it.Finding); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// offsetToken and parseOffsetToken page the in-memory listing of kinds
// other than findings.
func offsetToken(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(n)))
}

func parseOffsetToken(tok string) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	s, ok := strings.CutPrefix(string(raw), "o:")
	n, aerr := strconv.Atoi(s)
	if err != nil || !ok || aerr != nil || n < 0 {
		return 0, errkind.New(errkind.InvalidArgument, "page_token %q: not a token of this listing (use the next_page_token the previous page returned)", tok)
	}
	return n, nil
}
