package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/fatih/semgroup"
	"github.com/zricethezav/gitleaks/v8/cmd/scm"
	"github.com/zricethezav/gitleaks/v8/sources"
)

// scanHistory scans every commit of the repository containing dir, as
// gitleaks does: the lines each commit adds, from `git log -p --all`.
// Findings are located at dir-relative paths and carry the commit.
func (s *Scanner) scanHistory(ctx context.Context, dir string, c *collector) {
	dir = filepath.Clean(dir)
	info, err := os.Stat(dir)
	if err != nil {
		return // the walk has reported it
	}
	if !info.IsDir() {
		c.problem(Problem{Path: dir, Message: "not a git repository"})
		return
	}
	prefix, err := gitPrefix(ctx, dir)
	if err != nil {
		c.problem(Problem{Path: dir, Message: err.Error()})
		return
	}
	cmd, err := sources.NewGitLogCmdContext(ctx, dir, "")
	if err != nil {
		c.problem(Problem{Path: dir, Message: fmt.Sprintf("run git log: %v", err)})
		return
	}
	src := &sources.Git{
		Cmd:    cmd,
		Config: &s.rules.cfg,
		Remote: &sources.RemoteInfo{Platform: scm.NoPlatform},
		Sema:   semgroup.NewGroup(ctx, int64(s.cfg.Workers)),
	}
	err = src.Fragments(ctx, func(fr sources.Fragment, err error) error {
		if err != nil {
			c.problem(Problem{Path: dir, Message: fmt.Sprintf("read git history: %v", err)})
			return nil
		}
		if fr.Raw == "" || fr.CommitInfo == nil {
			return nil
		}
		if s.rules.pathAllowed(fr.FilePath) {
			c.skip(SkipExcluded, Problem{Path: historyPath(dir, prefix, fr.FilePath) + "@" + fr.CommitSHA[:min(len(fr.CommitSHA), 10)]})
			return nil
		}
		c.commit(fr.CommitSHA)
		c.bytes.Add(int64(len(fr.Raw)))
		c.progress.bytes.Add(int64(len(fr.Raw)))
		c.add(s.detectChunked(ctx, unit{
			path:      historyPath(dir, prefix, fr.FilePath),
			rulePath:  fr.FilePath,
			data:      []byte(fr.Raw),
			text:      fr.Raw,
			startLine: max(fr.StartLine, 1),
			commit:    fr.CommitInfo,
		}))
		return nil
	})
	if err != nil && ctx.Err() == nil {
		c.problem(Problem{Path: dir, Message: fmt.Sprintf("read git history: %v", err)})
	}
}

// gitPrefix returns dir's path inside its repository's work tree
// ("sub/dir/", or "" at the top), or an error saying dir is not in one.
func gitPrefix(ctx context.Context, dir string) (string, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return "", fmt.Errorf("scan git history: %w", err)
	}
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--show-prefix")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(stderr.String(), "not a git repository") {
			return "", errors.New("not a git repository")
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("scan git history: %s", msg)
	}
	return strings.TrimSpace(string(out)), nil
}

// historyPath turns a repository-relative path from git into the path
// under dir that a walk of dir would report, so history and working-tree
// findings of the same file carry the same path.
func historyPath(dir, prefix, name string) string {
	rel := name
	if prefix != "" {
		if strings.HasPrefix(name, prefix) {
			rel = name[len(prefix):]
		} else {
			up := strings.Repeat("../", strings.Count(strings.TrimSuffix(prefix, "/"), "/")+1)
			rel = path.Clean(up + name)
		}
	}
	return filepath.Join(dir, filepath.FromSlash(rel))
}
