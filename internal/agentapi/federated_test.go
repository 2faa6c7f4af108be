package agentapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

func testBundle(t *testing.T, td string) *spiffebundle.Bundle {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{c})
}

// TestFederatedFor: a node gets the bundles its entries name, each once,
// sorted, and none for a trust domain without a held bundle.
func TestFederatedFor(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString
	fed := map[spiffeid.TrustDomain]*spiffebundle.Bundle{
		td("partner.org"): testBundle(t, "partner.org"), td("cloud.org"): testBundle(t, "cloud.org"), td("unused.org"): testBundle(t, "unused.org"),
	}
	node := spiffeid.RequireFromString("spiffe://example.org/node/a")
	c := entrycache.New(spiffeid.RequireFromString("spiffe://example.org/signet/server"))
	entry := func(id string, fw ...spiffeid.TrustDomain) model.Entry {
		return model.Entry{ID: id, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/w/" + id), ParentID: node,
			Selectors: []model.Selector{{Type: "unix", Value: "uid:" + id}}, FederatesWith: fw, Revision: 1}
	}
	c.Apply(store.EntryChangeSet{Revision: 1, Full: true, Changed: []model.Entry{
		entry("1", td("partner.org"), td("unknown.org")), entry("2"), entry("3", td("cloud.org"), td("partner.org")),
	}})
	tds := c.NodeFederatesWith(node, nil, time.Now())
	got, err := federatedFor(tds, fed)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range got {
		names = append(names, b.GetTrustDomain())
	}
	if len(names) != 2 || names[0] != "cloud.org" || names[1] != "partner.org" {
		t.Errorf("federatedFor(%v) trust domains = %v, want [cloud.org partner.org]", tds, names)
	}
	if got, _ := federatedFor(nil, fed); len(got) != 0 {
		t.Errorf("federatedFor(no federates_with) = %d bundles, want none", len(got))
	}
	if got, _ := federatedFor(tds, nil); len(got) != 0 {
		t.Errorf("federatedFor(no relationships) = %d bundles, want none", len(got))
	}
}
