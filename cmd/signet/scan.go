package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/scan"
)

const scanLong = `Scan files, directories, git history and the environment for static
credentials: API tokens and keys (gitleaks' maintained rules), unencrypted
private keys, kubeconfig tokens and client keys, .pgpass/.netrc/.git-credentials
passwords, Docker registry auths, AWS/GCP/Azure credential files, literal
secrets in GitHub Actions and GitLab CI files, and long-lived JWTs.
Passphrase-protected private keys (OpenSSH, PKCS#8, PEM with Proc-Type:
4,ENCRYPTED) are reported too, as kind encrypted-private-key with low severity.

Secrets are never printed. Each finding shows a short preview and a
fingerprint: HMAC-SHA256 of the secret under a key read from
--fingerprint-key-file, else $SIGNET_FINGERPRINT_KEY, else a per-user key
created on first use at $XDG_CONFIG_HOME/signet/fingerprint.key. The same
secret has the same fingerprint wherever it is found.

Not reported: public keys and certificates alone, blocks labelled as
encrypted keys that hold none, JWTs issued for 24 hours or less, values that
reference a secret store (${{ secrets.X }}, $VAR) and well-known placeholders
(changeme, password, postgres, <token>, xxxx); docs/scanning.md lists them all.

Items that cannot be scanned are reported on stderr, one line each, and the
scan goes on: unreadable files and a path that is not a git repository (with
--git) or a malformed --baseline are errors; binary files, files above
--max-file-size and symbolic-link loops are skipped with a notice.
Symbolic links inside directories are followed only with --follow-symlinks.
Binary files are told by their content (a NUL byte in the first 8 KiB), not
their name. Every item left out is counted by reason in the summary
(binary, too-large, unreadable, symlink, visited, excluded, not-regular);
--verbose lists each one on stderr with its reason, including the paths
excluded by gitleaks' allowlist (.git, vendored code, lock files).

On a terminal, a table scan shows its progress on stderr: files and bytes
done, the rate, findings so far, the elapsed time and, once a quick walk
beside the scan has counted what there is to scan, the time left (a --git
scan shows no time left: the history's size is not known in advance). There
is no progress when stderr is not a terminal or with --format json or sarif.

Exit status: 0 when nothing was found, 1 when credentials were found, 2 when
any item could not be scanned (errors, not skip notices) or the scan could
not run.`

const scanExample = `  signet scan ./repo ./etc/app
  signet scan --git ./repo
  signet scan --env
  signet scan --format sarif . > scan.sarif
  signet scan --format json . > baseline.json; signet scan --baseline baseline.json .
  signet scan --git --report --label environment=ci --label owner=platform ./repo`

func newScanCmd() *cobra.Command {
	var (
		gitHistory, env, followSymlinks, quiet bool
		verbose                                bool
		format, baseline, keyFile              string
		jobs                                   int
		maxFileSize                            = scan.ByteSize(scan.DefaultMaxFileSize)
		report                                 scanReport
	)
	cmd := &cobra.Command{
		Use:     "scan [PATH...]",
		Short:   "Find static credentials in files, git history and the environment",
		Long:    scanLong,
		Example: scanExample,
		// Errors and usage are printed by main; the exit status carries
		// the outcome.
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if quiet && verbose {
				return &exitError{code: 2, err: errors.New("flags --quiet and --verbose contradict each other: give at most one")}
			}
			out := cmd.OutOrStdout()
			f, err := outputFormat(format, out)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := report.check(); err != nil {
				return &exitError{code: 2, err: err}
			}
			key, err := loadFingerprintKey(keyFile)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			fp, err := scan.NewFingerprinter(key)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			stderr := cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			// Notices go above the progress line while there is one.
			var bar *scanProgress
			printErr := func(line string) {
				if bar != nil {
					bar.println(line)
					return
				}
				fmt.Fprintln(stderr, line)
			}
			progress := &scan.Progress{}
			s, err := scan.New(ctx, scan.Config{
				Progress:       progress,
				Fingerprinter:  fp,
				MaxFileSize:    int64(maxFileSize),
				Workers:        jobs,
				FollowSymlinks: followSymlinks,
				BaselineFile:   baseline,
				OnProblem: func(p scan.Problem) {
					if p.Skipped && (quiet || verbose) {
						return // with --verbose, OnSkip prints it
					}
					prefix := "signet scan: "
					if p.Skipped {
						prefix += "skipped "
					}
					printErr(prefix + p.String())
				},
				OnSkip: func(sk scan.Skip) {
					if verbose {
						printErr("signet scan: skipped " + sk.String())
					}
				},
			})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			t := scan.Targets{Paths: args, Git: gitHistory}
			if env {
				t.Env = os.Environ()
			}
			if len(t.Paths) == 0 && !env {
				t.Paths = []string{"."}
			}
			if report.enabled {
				if t.Paths, err = absolute(t.Paths); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			if tty := progressTerminal(stderr, f); tty != nil {
				bar = startScanProgress(ctx, tty, s, t, progress)
			}
			rep, err := s.Scan(ctx, t)
			if bar != nil {
				b := bar
				bar = nil // OnProblem is not called after Scan returns
				b.finish()
			}
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := rep.Write(out, f); err != nil {
				return &exitError{code: 2, err: err}
			}
			if report.enabled {
				if err := report.send(ctx, stderr, rep, t); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			switch {
			case rep.Failed():
				return &exitError{code: 2, err: fmt.Errorf("scan: some items could not be scanned (see above)")}
			case len(rep.Findings) > 0:
				return &exitError{code: 1}
			}
			return nil
		},
	}
	// Bad flags are errors of the scan's contract too: exit status 2.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: 2, err: err}
	})
	fl := cmd.Flags()
	fl.BoolVar(&gitHistory, "git", false, "also scan the whole git history of each path, reporting the commit that added each secret")
	fl.BoolVar(&env, "env", false, "scan this process's environment variables")
	fl.StringVar(&format, "format", "", "output format: table, json or sarif (default table on a terminal, else json)")
	fl.StringVar(&baseline, "baseline", "", "JSON report of a previous scan whose findings (same fingerprint and path) are not reported again")
	fl.StringVar(&keyFile, "fingerprint-key-file", "", "file holding the fingerprint key (at least 16 bytes)")
	fl.Var(&maxFileSize, "max-file-size", "skip files larger than this (e.g. 512KiB, 10MiB)")
	fl.BoolVar(&followSymlinks, "follow-symlinks", false, "follow symbolic links inside directories (loops are detected)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "do not print notices for skipped items (errors are still printed)")
	fl.BoolVarP(&verbose, "verbose", "v", false, "list every item left out of the scan on stderr, with its reason")
	fl.IntVarP(&jobs, "jobs", "j", 0, "files scanned in parallel (default: number of CPUs)")
	report.addFlags(cmd)
	return cmd
}

// outputFormat resolves --format; unset means a table on a terminal and
// JSON otherwise.
func outputFormat(name string, out io.Writer) (scan.Format, error) {
	if name != "" {
		return scan.ParseFormat(name)
	}
	if f, ok := out.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			return scan.FormatTable, nil
		}
	}
	return scan.FormatJSON, nil
}

// loadFingerprintKey finds the fingerprint key: the flag's file, the
// environment variable, or the per-user default.
func loadFingerprintKey(file string) ([]byte, error) {
	src := scan.KeySource{File: file, Env: os.Getenv(scan.FingerprintKeyEnv)}
	if src.File == "" && src.Env == "" {
		p, err := scan.DefaultKeyPath()
		if err != nil {
			return nil, err
		}
		src.DefaultPath = p
	}
	return scan.LoadKey(src)
}
