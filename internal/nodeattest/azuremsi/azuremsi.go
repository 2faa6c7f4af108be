// Package azuremsi implements the azure_msi node attestation method: an
// Azure virtual machine proves where it runs with an access token of its
// system-assigned managed identity, which Entra ID (Azure AD) signs.
//
// The agent half (Attestor) asks the instance metadata service for a token
// for a resource (by default https://management.azure.com/) and sends the
// token. The server half (Verifier) checks its RS256 signature against the
// tenant's keys, its issuer https://sts.windows.net/<tenant>/ for an allowed
// tenant, its audience (the configured resource) and its lifetime, and that
// its xms_mirid names a virtual machine. Tokens carry no nonce of the
// server's, so the method is trust-on-first-use: a VM attests once, and is
// refused until an operator evicts its node.
//
// The agent ID is spiffe://<td>/signet/agent/azure_msi/<tenant>/<vm-id>,
// where <vm-id> is the object ID of the VM's system-assigned identity (the
// token's sub): the token carries no other per-VM identifier. The node's
// selectors (type azure_msi) are tenant, subscription, resource-group and
// vm-name, from the token's tid and xms_mirid.
package azuremsi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "azure_msi"

// DefaultMetadataURL is the instance metadata service of every Azure VM.
const DefaultMetadataURL = "http://169.254.169.254"

// TokenPath is the managed identity token endpoint, relative to the
// metadata URL, and APIVersion the version the agent asks for.
const (
	TokenPath  = "/metadata/identity/oauth2/token"
	APIVersion = "2018-02-01"
)

// DefaultResource is the resource (audience) of the tokens the agent asks
// for and the server expects.
const DefaultResource = "https://management.azure.com/"

// Issuer returns the issuer of tenant's managed identity (v1) tokens.
func Issuer(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }

// DefaultJWKSURL returns where tenant's signing keys are published.
func DefaultJWKSURL(tenant string) string {
	return "https://login.microsoftonline.com/" + tenant + "/discovery/keys"
}

// ValidGUID reports whether s is a lower-case GUID, the form Azure tenant,
// subscription and object IDs take in tokens.
func ValidGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Claims are the token claims the method uses, beyond those the JWT
// verification checks.
type Claims struct {
	TenantID    string `json:"tid"`
	PrincipalID string `json:"sub"`
	MIRID       string `json:"xms_mirid"`
}

// VM is the virtual machine a token's xms_mirid names.
type VM struct {
	Subscription, ResourceGroup, Name string
}

// ParseClaims decodes a verified token's claims and checks them: GUIDs for
// tid and sub, and an xms_mirid naming a virtual machine (a user-assigned
// identity, or a scale set's, is shared by several machines and refused).
func ParseClaims(b []byte) (Claims, VM, error) {
	var c Claims
	if err := json.Unmarshal(b, &c); err != nil {
		return Claims{}, VM{}, errors.New("token claims are malformed")
	}
	var errs []error
	if !ValidGUID(c.TenantID) {
		errs = append(errs, errors.New("tid is missing or not a GUID"))
	}
	if !ValidGUID(c.PrincipalID) {
		errs = append(errs, errors.New("sub is missing or not a GUID"))
	}
	vm, err := ParseMIRID(c.MIRID)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Claims{}, VM{}, fmt.Errorf("managed identity token: %w", errors.Join(errs...))
	}
	return c, vm, nil
}

// ParseMIRID parses an xms_mirid of the form
// /subscriptions/<s>/resourcegroups/<rg>/providers/Microsoft.Compute/virtualMachines/<name>
// (the fixed parts in any case).
func ParseMIRID(s string) (VM, error) {
	p := strings.Split(s, "/")
	if len(p) != 9 || p[0] != "" || !strings.EqualFold(p[1], "subscriptions") || !strings.EqualFold(p[3], "resourcegroups") ||
		!strings.EqualFold(p[5], "providers") || !strings.EqualFold(p[6], "Microsoft.Compute") || !strings.EqualFold(p[7], "virtualMachines") {
		return VM{}, errors.New("xms_mirid does not name a virtual machine (is the identity system-assigned?)")
	}
	vm := VM{Subscription: strings.ToLower(p[2]), ResourceGroup: p[4], Name: p[8]}
	if !ValidGUID(vm.Subscription) || !validName(vm.ResourceGroup, 90) || !validName(vm.Name, 64) {
		return VM{}, errors.New("xms_mirid has a malformed subscription, resource group or VM name")
	}
	return vm, nil
}

// validName reports whether s is 1 to max letters, digits, '-', '_', '.',
// '(' and ')'.
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.()") == ""
}

// AgentID returns the agent ID of the VM c describes:
// spiffe://<td>/signet/agent/azure_msi/<tenant>/<principal id>.
func AgentID(td spiffeid.TrustDomain, c Claims) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", Name, c.TenantID, c.PrincipalID)
}

// Selectors returns the node selectors of the VM, sorted.
func Selectors(c Claims, vm VM) []model.Selector {
	sel := func(k, v string) model.Selector { return model.Selector{Type: Name, Value: k + ":" + v} }
	return model.SortSelectors([]model.Selector{
		sel("tenant", c.TenantID), sel("subscription", vm.Subscription),
		sel("resource-group", vm.ResourceGroup), sel("vm-name", vm.Name),
	})
}
