package credential

import (
	"bytes"
	"strings"
)

// INIValue is one key = value line of an INI file.
type INIValue struct {
	Section, Key, Value string
	// Start and End are the byte span of the value as written.
	Start, End int
}

// ParseINI parses the INI dialect of AWS shared credential and config files:
// [section] headers, key = value lines (keys lower-cased), and whole-line
// comments starting with '#' or ';'. Lines that fit neither form are
// skipped.
func ParseINI(content []byte) []INIValue {
	var out []INIValue
	section := ""
	for off, line := range lines(content) {
		trimmed := bytes.TrimSpace(line)
		switch {
		case len(trimmed) == 0 || trimmed[0] == '#' || trimmed[0] == ';':
		case trimmed[0] == '[' && trimmed[len(trimmed)-1] == ']':
			section = strings.TrimSpace(string(trimmed[1 : len(trimmed)-1]))
		default:
			eq := bytes.IndexByte(line, '=')
			if eq < 0 {
				break
			}
			key := strings.ToLower(string(bytes.TrimSpace(line[:eq])))
			vStart, vEnd := eq+1, len(line)
			for vStart < vEnd && isSpace(line[vStart]) {
				vStart++
			}
			for vEnd > vStart && isSpace(line[vEnd-1]) {
				vEnd--
			}
			out = append(out, INIValue{
				Section: section, Key: key, Value: string(line[vStart:vEnd]),
				Start: off + vStart, End: off + vEnd,
			})
		}
	}
	return out
}

// DetectAWSCredentials reports aws_secret_access_key values of an AWS
// shared credentials file, one hit per profile. The profile's
// aws_access_key_id is the same credential: its span gets a dismissing hit
// so that it is not reported a second time. A profile with an
// aws_session_token holds temporary credentials and is rated high rather
// than critical.
func DetectAWSCredentials(content []byte) []Hit {
	type profile struct{ id, secret, session *INIValue }
	profiles := map[string]*profile{}
	var order []string
	for _, v := range ParseINI(content) {
		p := profiles[v.Section]
		if p == nil {
			p = &profile{}
			profiles[v.Section] = p
			order = append(order, v.Section)
		}
		switch v.Key {
		case "aws_access_key_id":
			p.id = &v
		case "aws_secret_access_key":
			p.secret = &v
		case "aws_session_token":
			p.session = &v
		}
	}
	var hits []Hit
	for _, name := range order {
		p := profiles[name]
		if p.secret == nil {
			continue
		}
		if IsPlaceholder(p.secret.Value) || IsReference(p.secret.Value) {
			hits = append(hits, Hit{Rule: "aws-credentials-placeholder", Start: p.secret.Start, End: p.secret.End, Dismiss: true, Priority: priorityStructured})
			continue
		}
		h := Hit{
			Rule:        "aws-credentials-file",
			Description: "AWS secret access key in credentials file",
			Kind:        KindCloudCredential,
			Severity:    SeverityCritical,
			Start:       p.secret.Start,
			End:         p.secret.End,
			Value:       Secret(p.secret.Value),
			Details:     map[string]string{"profile": name},
			Priority:    priorityStructured,
		}
		if p.session != nil {
			h.Severity = SeverityHigh
			h.Details["temporary"] = "true"
		}
		hits = append(hits, h)
		if p.id != nil {
			hits = append(hits, Hit{Rule: "aws-access-key-id", Start: p.id.Start, End: p.id.End, Dismiss: true, Priority: priorityStructured})
		}
		if p.session != nil {
			hits = append(hits, Hit{Rule: "aws-session-token", Start: p.session.Start, End: p.session.End, Dismiss: true, Priority: priorityStructured})
		}
	}
	return hits
}
