package docker

import "github.com/signet-id/signet/internal/model"

// SetProcRoot points the attestor at a directory laid out like /proc.
func SetProcRoot(a *Attestor, dir string) { a.procRoot = dir }

// ParseInspect exposes the inspect-answer parser.
func ParseInspect(body []byte, id string, env []string) ([]model.Selector, error) {
	return parseInspect(body, id, env)
}
