package scan

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/signet-id/signet/internal/scan/credential"
)

// SARIF 2.1.0 document types: only the parts a scan fills in.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool    sarifTool     `json:"tool"`
		Results []sarifResult `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string             `json:"id"`
		ShortDescription     sarifMessage       `json:"shortDescription"`
		DefaultConfiguration sarifConfiguration `json:"defaultConfiguration"`
		Properties           map[string]any     `json:"properties,omitempty"`
	}
	sarifConfiguration struct {
		Level string `json:"level"`
	}
	sarifMessage struct {
		Text string `json:"text"`
	}
	sarifResult struct {
		RuleID              string            `json:"ruleId"`
		RuleIndex           int               `json:"ruleIndex"`
		Level               string            `json:"level"`
		Message             sarifMessage      `json:"message"`
		Locations           []sarifLocation   `json:"locations"`
		PartialFingerprints map[string]string `json:"partialFingerprints"`
		Properties          map[string]any    `json:"properties,omitempty"`
	}
	sarifLocation struct {
		PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
		LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifact `json:"artifactLocation"`
		Region           *sarifRegion  `json:"region,omitempty"`
	}
	sarifArtifact struct {
		URI string `json:"uri"`
	}
	sarifRegion struct {
		StartLine   int `json:"startLine"`
		StartColumn int `json:"startColumn,omitempty"`
		EndLine     int `json:"endLine,omitempty"`
	}
	sarifLogical struct {
		Name               string `json:"name"`
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// sarifFingerprintKey names Signet's fingerprint in partialFingerprints.
const sarifFingerprintKey = "signetSecretHmac/v1"

// WriteSARIF writes r as a SARIF 2.1.0 log with one run: a rule per rule id
// found, and a result per finding located by file and region (or, for
// environment variables, by a logical location). Fingerprints go in
// partialFingerprints.
func (r *Report) WriteSARIF(w io.Writer) error {
	var ids []string
	byID := map[string]Finding{}
	for _, f := range r.Findings {
		if _, ok := byID[f.RuleID]; !ok {
			ids = append(ids, f.RuleID)
			byID[f.RuleID] = f
		}
	}
	slices.Sort(ids)
	rules := make([]sarifRule, len(ids))
	index := map[string]int{}
	for i, id := range ids {
		f := byID[id]
		index[id] = i
		rules[i] = sarifRule{
			ID:                   id,
			ShortDescription:     sarifMessage{Text: ruleDescription(f)},
			DefaultConfiguration: sarifConfiguration{Level: sarifLevel(f.Severity)},
			Properties:           map[string]any{"kind": f.Kind, "detector": f.Detector},
		}
	}
	results := make([]sarifResult, 0, len(r.Findings))
	for _, f := range r.Findings {
		props := map[string]any{"severity": f.Severity, "kind": f.Kind, "preview": f.Preview}
		if l := f.Location; l.Commit != "" {
			props["commit"], props["author"], props["email"], props["date"] = l.Commit, l.Author, l.Email, l.Date
		}
		if len(f.Details) > 0 {
			props["details"] = f.Details
		}
		results = append(results, sarifResult{
			RuleID:              f.RuleID,
			RuleIndex:           index[f.RuleID],
			Level:               sarifLevel(f.Severity),
			Message:             sarifMessage{Text: fmt.Sprintf("%s (secret %s, fingerprint %s)", f.Description, f.Preview, f.Fingerprint)},
			Locations:           []sarifLocation{sarifLocationOf(f.Location)},
			PartialFingerprints: map[string]string{sarifFingerprintKey: f.Fingerprint},
			Properties:          props,
		})
	}
	doc := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs: []sarifRun{{
			Tool:    sarifTool{Driver: sarifDriver{Name: "signet scan", InformationURI: "https://github.com/signet-id/signet", Rules: rules}},
			Results: results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write sarif report: %w", err)
	}
	return nil
}

// ruleDescription is a rule's description without per-finding detail.
func ruleDescription(f Finding) string {
	d, _, _ := strings.Cut(f.Description, " (")
	if d == "" {
		d = f.RuleID
	}
	return d
}

func sarifLevel(s credential.Severity) string {
	switch s {
	case credential.SeverityCritical, credential.SeverityHigh:
		return "error"
	case credential.SeverityMedium:
		return "warning"
	}
	return "note"
}

func sarifLocationOf(l Location) sarifLocation {
	if name, ok := strings.CutPrefix(l.Path, "env:"); ok && l.Line == 0 {
		return sarifLocation{LogicalLocations: []sarifLogical{{Name: name, FullyQualifiedName: l.Path, Kind: "variable"}}}
	}
	loc := &sarifPhysical{ArtifactLocation: sarifArtifact{URI: (&url.URL{Path: filepath.ToSlash(l.Path)}).String()}}
	if l.Line > 0 {
		loc.Region = &sarifRegion{StartLine: l.Line, StartColumn: l.Column, EndLine: l.EndLine}
	}
	return sarifLocation{PhysicalLocation: loc}
}
