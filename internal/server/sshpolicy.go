package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/broker/provider"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
)

// sshRuleCheck returns the policy check (policy.Holder.SetCheck) that
// refuses a rule whose ssh key names a credential that is not a
// configured ssh credential, or widens one: principals and extensions
// outside the credential's, or a force_command replacing its own.
func sshRuleCheck(creds []broker.Credential) func(*policy.Policy) error {
	byName := map[string]broker.Credential{}
	for _, c := range creds {
		byName[c.Name] = c
	}
	return func(p *policy.Policy) error {
		var errs []error
		for _, r := range p.SSHRules() {
			at := fmt.Sprintf("policy %s:%d: rule %q: ssh", p.Name(), r.Line, r.Rule)
			for _, name := range r.Credentials {
				c, ok := byName[name]
				if !ok {
					errs = append(errs, fmt.Errorf("%s: credential %s is not configured (broker.credentials), so what the rule narrows cannot be checked", at, name))
					continue
				}
				sp, ok := c.Provider.(*sshprovider.Provider)
				if !ok {
					errs = append(errs, fmt.Errorf("%s: credential %s is a %s credential: the ssh key applies only to ssh credentials", at, name, c.ProviderName))
					continue
				}
				err := sp.CheckOptions(provider.SSHOptions{Principals: r.SSH.Principals, Extensions: r.SSH.Extensions, ForceCommand: r.SSH.ForceCommand})
				if err != nil {
					for l := range strings.SplitSeq(err.Error(), "\n") {
						errs = append(errs, fmt.Errorf("%s.%s (credential %s)", at, l, name))
					}
				}
			}
		}
		return errors.Join(errs...)
	}
}
