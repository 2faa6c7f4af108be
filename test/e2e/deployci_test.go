package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/ci/citest"
)

// TestDeployCIWrappers runs the shell steps of the GitHub composite action
// and of the GitLab include as their CI systems would, with the fake
// issuers' environment, against a server process.
func TestDeployCIWrappers(t *testing.T) {
	gh := citest.New(t, func() map[string]any { return citest.GitHubClaims("acme/app", "refs/heads/main") })
	gh.Audience = "spiffe://example.org"
	gl := citest.New(t, nil)
	d := deployCI(t, gh, gl, "")
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", "spiffe://example.org/signet/ci/github",
		"--spiffe-id", "spiffe://example.org/ci/gh", "--selector", "github:repository:acme/app")
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", "spiffe://example.org/signet/ci/gitlab",
		"--spiffe-id", "spiffe://example.org/ci/gl", "--selector", "gitlab:project_path:group/proj", "--selector", "gitlab:ref_protected:true")
	// The binary under test, as `signet` on PATH.
	path := filepath.Dir(signetBin) + string(os.PathListSeparator) + os.Getenv("PATH")

	t.Run("github composite action", func(t *testing.T) {
		var action struct {
			Inputs map[string]struct {
				Default string `yaml:"default"`
			} `yaml:"inputs"`
			Runs struct {
				Using string `yaml:"using"`
				Steps []struct {
					Shell string            `yaml:"shell"`
					Env   map[string]string `yaml:"env"`
					Run   string            `yaml:"run"`
				} `yaml:"steps"`
			} `yaml:"runs"`
		}
		readYAML(t, "../../deploy/ci/github/action.yml", &action)
		if action.Runs.Using != "composite" || len(action.Runs.Steps) == 0 {
			t.Fatalf("action.yml is not a composite action: %+v", action.Runs)
		}
		runnerTemp := t.TempDir() // $RUNNER_TEMP
		inputs := map[string]string{"server": d.https, "trust-bundle": d.bundlePath, "jwt-audience": "https://vault.example.com"}
		expr := regexp.MustCompile(`\$\{\{\s*([a-z]+)\.([a-z-]+)\s*\}\}`)
		var subst func(string) string
		subst = func(s string) string {
			return expr.ReplaceAllStringFunc(s, func(m string) string {
				p := expr.FindStringSubmatch(m)
				switch p[1] {
				case "inputs":
					if v, ok := inputs[p[2]]; ok {
						return v
					}
					return subst(action.Inputs[p[2]].Default)
				}
				t.Fatalf("action.yml uses %s, which the test does not provide", m)
				return ""
			})
		}
		output := filepath.Join(t.TempDir(), "github_output")
		for i, step := range action.Runs.Steps {
			if step.Shell != "bash" {
				t.Fatalf("step %d: shell %q, want bash", i, step.Shell)
			}
			cmd := exec.Command("bash", "-e", "-c", subst(step.Run))
			cmd.Env = []string{"PATH=" + path, "HOME=" + os.Getenv("HOME"), "GITHUB_OUTPUT=" + output, "RUNNER_TEMP=" + runnerTemp, "SSL_CERT_FILE=" + gh.CAFile,
				"ACTIONS_ID_TOKEN_REQUEST_URL=" + gh.RequestURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + gh.RequestToken}
			for k, v := range step.Env {
				cmd.Env = append(cmd.Env, k+"="+subst(v))
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("step %d: %v\n%s", i, err, out)
			}
		}
		dir := filepath.Join(runnerTemp, "signet-svid")
		checkSVIDDir(t, dir, "spiffe://example.org/ci/gh")
		if _, err := os.Stat(filepath.Join(dir, "jwt-https_vault.example.com.token")); err != nil {
			t.Error(err)
		}
		if out, _ := os.ReadFile(output); !strings.Contains(string(out), "svid-dir="+dir) {
			t.Errorf("GITHUB_OUTPUT = %q, want svid-dir", out)
		}
	})

	t.Run("gitlab include", func(t *testing.T) {
		var include map[string]struct {
			IDTokens     map[string]map[string]string `yaml:"id_tokens"`
			Variables    map[string]string            `yaml:"variables"`
			BeforeScript []string                     `yaml:"before_script"`
		}
		readYAML(t, "../../deploy/ci/gitlab/signet.gitlab-ci.yml", &include)
		job, ok := include[".signet"]
		if !ok || job.IDTokens["SIGNET_ID_TOKEN"]["aud"] == "" || len(job.BeforeScript) == 0 {
			t.Fatalf(".signet template incomplete: %+v", job)
		}
		projectDir := t.TempDir()
		token := gl.Mint(t, job.IDTokens["SIGNET_ID_TOKEN"]["aud"], time.Now(), 5*time.Minute, citest.GitLabClaims("group/proj", "main"))
		env := []string{"PATH=" + path, "HOME=" + os.Getenv("HOME"), "CI_PROJECT_DIR=" + projectDir, "SIGNET_ID_TOKEN=" + token}
		vars := map[string]string{}
		for k, v := range job.Variables {
			vars[k] = v
		}
		vars["SIGNET_SERVER"], vars["SIGNET_TRUST_BUNDLE"] = d.https, d.bundlePath
		for k, v := range vars {
			env = append(env, k+"="+os.Expand(v, func(name string) string {
				if name == "CI_PROJECT_DIR" {
					return projectDir
				}
				return ""
			}))
		}
		for i, line := range job.BeforeScript {
			cmd := exec.Command("sh", "-c", line)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("before_script %d: %v\n%s", i, err, out)
			}
		}
		checkSVIDDir(t, filepath.Join(projectDir, ".signet"), "spiffe://example.org/ci/gl")
	})
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkSVIDDir(t *testing.T, dir, want string) {
	t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid.key"))
	if err != nil {
		t.Fatalf("load svid from %s: %v", dir, err)
	}
	if svid.ID.String() != want {
		t.Errorf("svid %s, want %s", svid.ID, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "bundle.pem")); err != nil {
		t.Error(fmt.Errorf("bundle.pem: %w", err))
	}
}
