package store

import "github.com/signet-id/signet/internal/model"

// The store persists the types of internal/model. They live there so that
// packages which must not link the SQL store (the agent, the Workload API)
// can use them; these aliases keep the store's own code unqualified.
type (
	Selector       = model.Selector
	Entry          = model.Entry
	Node           = model.Node
	JoinToken      = model.JoinToken
	AuthorityKind  = model.AuthorityKind
	AuthorityState = model.AuthorityState
	Authority      = model.Authority
	AuditRecord    = model.AuditRecord

	FindingStatus   = model.FindingStatus
	Finding         = model.Finding
	FindingLocation = model.FindingLocation
	FindingReport   = model.FindingReport
	ReportResult    = model.ReportResult
	CoverageReport  = model.CoverageReport
	RiskFactor      = model.RiskFactor

	FindingReplacement = model.FindingReplacement
)

// Finding statuses, as in internal/model.
const (
	FindingOpen     = model.FindingOpen
	FindingGone     = model.FindingGone
	FindingResolved = model.FindingResolved
	FindingReplaced = model.FindingReplaced
)

// Authority kinds and states, as in internal/model.
const (
	AuthorityX509 = model.AuthorityX509
	AuthorityJWT  = model.AuthorityJWT
	StatePrepared = model.StatePrepared
	StateActive   = model.StateActive
	StateOld      = model.StateOld
	StateTainted  = model.StateTainted
	StateRevoked  = model.StateRevoked
)

// SortSelectors canonicalizes a selector list; see model.SortSelectors.
func SortSelectors(sels []Selector) []Selector { return model.SortSelectors(sels) }
