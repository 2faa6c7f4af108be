// Package scantest builds test inputs for package scan: a directory tree
// (and git repository) with fake but well-formed credentials of many kinds
// (passphrase-protected keys among them, made with openssl for PKCS#8)
// planted at known places, look-alikes that must not be reported, and large
// trees of source-like text for benchmarks.
//
// Every credential is generated at run time; none is real and none is
// committed to Signet's repository.
package scantest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Expect is a finding a fixture plants: its rule, kind, slash-separated path
// relative to the fixture root, line, and the commit that added it ("" when
// the file is not committed).
type Expect struct {
	Rule, Kind, Path string
	Line             int
	Commit           string
}

// Fixture is a planted tree. Root is a git repository whose first commit
// (Commit1) adds some of the files plus two files that only the history
// holds, which the second commit (Commit2) deletes; the third (Commit3)
// adds a secret to a committed file. The other files are untracked.
type Fixture struct {
	Root                      string
	Commit1, Commit2, Commit3 string
	// Tree lists the findings of a plain scan of Root, History those of a
	// scan with git history.
	Tree, History []Expect
	// Secrets holds every planted secret value (findings and look-alikes),
	// none of which may appear in any output.
	Secrets []string
	// SamePAT lists the paths holding the same GitHub token, SameKey those
	// holding the same RSA key in different encodings.
	SamePAT, SameKey [2]string
}

// keys are generated once per process: RSA generation is slow.
var keys = sync.OnceValue(func() (k struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	kubeEC  *ecdsa.PrivateKey
	ed, enc ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(cryptorand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader); err != nil {
		panic(err)
	}
	if k.kubeEC, err = ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader); err != nil {
		panic(err)
	}
	_, k.ed, _ = ed25519.GenerateKey(cryptorand.Reader)
	_, k.enc, _ = ed25519.GenerateKey(cryptorand.Reader)
	return k
})

// builder writes fixture files and records expectations.
type builder struct {
	t   testing.TB
	f   *Fixture
	rnd *rand.Rand
	// committed files, in the order written
	committed []string
	// expectations per file, before commits are known
	plain   []pending
	history []pending
	// appended to a committed file by the third commit
	edit struct {
		rel, add string
		expect   Expect
	}
}

type pending struct {
	Expect
	committed bool
}

const (
	alnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	digits = "0123456789"
)

func (b *builder) random(n int, alphabet string) string {
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[b.rnd.IntN(len(alphabet))]
	}
	return string(out)
}

// secret records a planted value and returns it.
func (b *builder) secret(s string) string {
	b.f.Secrets = append(b.f.Secrets, s)
	return s
}

// write creates a file; committed files go into the first commit.
func (b *builder) write(rel, content string, committed bool) {
	p := filepath.Join(b.f.Root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		b.t.Fatal(err)
	}
	if committed {
		b.committed = append(b.committed, rel)
	}
}

// expect records a finding at the line of needle in content.
func (b *builder) expect(rule, kind, rel, content, needle string, committed bool) {
	i := strings.Index(content, needle)
	if i < 0 {
		b.t.Fatalf("fixture %s: needle for %s not in content", rel, rule)
	}
	b.plain = append(b.plain, pending{Expect{Rule: rule, Kind: kind, Path: rel, Line: strings.Count(content[:i], "\n") + 1}, committed})
}

// file writes content and expects the listed rule/needle pairs in it.
func (b *builder) file(rel, content string, committed bool, expects ...[3]string) {
	b.write(rel, content, committed)
	for _, e := range expects {
		b.expect(e[0], e[1], rel, content, e[2], committed)
	}
}

// New plants a fixture in a fresh temporary directory. It runs git, which
// must be installed.
func New(t testing.TB) *Fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	b := &builder{t: t, f: &Fixture{Root: t.TempDir()}, rnd: rand.New(rand.NewChaCha8([32]byte{'s', 'i', 'g', 'n', 'e', 't'}))}
	b.plant()
	b.commit()
	return b.f
}

func (b *builder) plant() {
	k := keys()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	// gitleaks-only kinds.
	pat := b.secret("ghp_" + b.random(36, alnum))
	slack := b.secret("xoxb-" + b.random(12, digits) + "-" + b.random(12, digits) + "-" + b.random(24, alnum))
	env := "# application settings\nGITHUB_TOKEN=" + pat + "\nSLACK_BOT=" + slack + "\nLOG_LEVEL=debug\n"
	b.file("config/app.env", env, true,
		[3]string{"github-pat", "token", pat}, [3]string{"slack-bot-token", "token", slack})
	b.file("config/copy.env", "OTHER_GITHUB_TOKEN="+pat+"\n", false, [3]string{"github-pat", "token", pat})
	b.f.SamePAT = [2]string{"config/app.env", "config/copy.env"}
	stripe := b.secret("sk_live_" + b.random(24, alnum))
	charge := "package billing\n\n// Charge talks to the payment API.\nconst apiKey = \"" + stripe + "\"\n"
	b.file("billing/charge.go", charge, true, [3]string{"stripe-access-token", "token", stripe})
	restricted := b.secret("rk_live_" + b.random(24, alnum))
	b.edit.rel, b.edit.add = "billing/charge.go", "\n// refunds\nconst refundKey = \""+restricted+"\"\n"
	b.edit.expect = Expect{Rule: "stripe-access-token", Kind: "token", Path: b.edit.rel, Line: strings.Count(charge, "\n") + 3}

	// Private keys: PKCS#1 RSA with a one-year certificate, PKCS#8 EC,
	// unencrypted OpenSSH.
	rsaPEM := b.secret(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)})))
	cert := selfSigned(b.t, k.rsa, now, 365*24*time.Hour)
	server := "# web server key and certificate\n" + rsaPEM + cert
	b.file("keys/server.pem", server, false, [3]string{"pem-private-key", "private-key", "-----BEGIN RSA"})
	ecDER, err := x509.MarshalPKCS8PrivateKey(k.ec)
	if err != nil {
		b.t.Fatal(err)
	}
	ecPEM := b.secret(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})))
	b.file("keys/ec.key", ecPEM, true, [3]string{"pem-private-key", "private-key", "-----BEGIN"})
	sshBlock, err := ssh.MarshalPrivateKey(k.ed, "deploy@example")
	if err != nil {
		b.t.Fatal(err)
	}
	sshPEM := b.secret(string(pem.EncodeToMemory(sshBlock)))
	b.file("keys/id_ed25519", sshPEM, true, [3]string{"openssh-private-key", "private-key", "-----BEGIN"})

	// Kubeconfig: token, client key, basic auth, and a placeholder.
	kubeToken := b.secret(b.random(48, alnum))
	kubeDER, err := x509.MarshalECPrivateKey(k.kubeEC)
	if err != nil {
		b.t.Fatal(err)
	}
	kubeKey := b.secret(base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kubeDER})))
	kubePW := b.secret(b.random(20, alnum))
	kube := `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://k8s.example.com:6443
contexts:
- name: prod
  context: {cluster: prod, user: alice}
current-context: prod
users:
- name: alice
  user:
    token: ` + kubeToken + `
- name: bob
  user:
    client-certificate: /etc/k8s/bob.crt
    client-key-data: ` + kubeKey + `
- name: carol
  user:
    username: carol
    password: "` + kubePW + `"
- name: dave
  user:
    username: dave
    password: changeme
`
	b.file("kube/config", kube, true,
		[3]string{"kubeconfig-token", "token", kubeToken},
		[3]string{"kubeconfig-client-key", "private-key", kubeKey},
		[3]string{"kubeconfig-basic-auth", "password", kubePW})

	// Password files.
	pgpw := b.secret(b.random(18, alnum))
	pgpass := "# host:port:db:user:password\ndb.internal:5432:app:app_user:" + pgpw + "\nlocalhost:5432:*:postgres:changeme\n"
	b.file(".pgpass", pgpass, false, [3]string{"pgpass-password", "password", pgpw})
	netpw := b.secret(b.random(16, alnum))
	netrc := "machine api.example.com\n  login deploy\n  password " + netpw + "\n"
	b.file(".netrc", netrc, false, [3]string{"netrc-password", "password", netpw})
	gitpw := b.secret(b.random(22, alnum))
	b.file(".git-credentials", "https://deploy:"+gitpw+"@git.example.com\n", false,
		[3]string{"git-credentials-password", "password", gitpw})

	// Docker config: a basic auth and an identity token.
	dockerAuth := b.secret(base64.StdEncoding.EncodeToString([]byte("deploy:" + b.random(20, alnum))))
	identity := b.secret(b.random(40, alnum))
	docker := fmt.Sprintf("{\n  \"auths\": {\n    \"registry.example.com\": {\n      \"auth\": %q\n    },\n    \"ghcr.io\": {\n      \"identitytoken\": %q\n    }\n  }\n}\n", dockerAuth, identity)
	b.file("docker/config.json", docker, false,
		[3]string{"docker-config-auth", "password", dockerAuth},
		[3]string{"docker-config-auth", "password", identity})

	// Cloud credential files.
	keyID := b.secret("AKIA" + b.random(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
	awsSecret := b.secret(b.random(40, alnum+"/+"))
	aws := "[default]\naws_access_key_id = " + keyID + "\naws_secret_access_key = " + awsSecret + "\nregion = eu-west-1\n"
	b.file("aws/credentials", aws, true, [3]string{"aws-credentials-file", "cloud-credential", awsSecret})
	rsaDER, err := x509.MarshalPKCS8PrivateKey(k.rsa)
	if err != nil {
		b.t.Fatal(err)
	}
	gcpKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}))
	b.secret(gcpKey)
	gcpJSON, err := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     "demo-project",
		"private_key_id": b.random(40, "0123456789abcdef"),
		"private_key":    gcpKey,
		"client_email":   "ci@demo-project.iam.gserviceaccount.com",
		"client_id":      b.random(21, digits),
	}, "", "  ")
	if err != nil {
		b.t.Fatal(err)
	}
	b.file("gcp/service-account.json", string(gcpJSON)+"\n", true,
		[3]string{"gcp-service-account-key", "cloud-credential", `"private_key": "`})
	b.f.SameKey = [2]string{"keys/server.pem", "gcp/service-account.json"}
	azSecret := b.secret(b.random(34, alnum+"~.-_"))
	az := fmt.Sprintf("{\n  \"clientId\": %q,\n  \"clientSecret\": %q,\n  \"subscriptionId\": %q,\n  \"tenantId\": %q\n}\n",
		uuidish(b), azSecret, uuidish(b), uuidish(b))
	b.file("azure/sdk-auth.json", az, false, [3]string{"azure-sdk-auth", "cloud-credential", azSecret})

	// CI configuration: literal secrets next to references and placeholders.
	deployPW := b.secret(b.random(20, alnum))
	workflow := `name: ci
on: [push]
env:
  DEPLOY_PASSWORD: ` + deployPW + `
  API_TOKEN: ${{ secrets.API_TOKEN }}
  LOG_FORMAT: json
jobs:
  test:
    runs-on: ubuntu-latest
    services:
      postgres:
        image: postgres:16
        env:
          POSTGRES_PASSWORD: postgres
    steps:
      - uses: actions/checkout@v4
      - run: make test
        env:
          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}
`
	b.file(".github/workflows/ci.yml", workflow, true, [3]string{"ci-literal-secret", "password", deployPW})
	regToken := b.secret(b.random(32, alnum))
	gitlab := "variables:\n  REGISTRY_TOKEN: \"" + regToken + "\"\n  DB_PASSWORD: $DB_PASSWORD\n\ntest:\n  script: make test\n"
	b.file(".gitlab-ci.yml", gitlab, false, [3]string{"ci-literal-secret", "token", regToken})

	// JWTs: thirty days, no expiry, and one hour (not reported).
	long := b.secret(b.jwt(map[string]any{"sub": "svc-billing", "iat": now.Unix(), "exp": now.Add(30 * 24 * time.Hour).Unix()}))
	forever := b.secret(b.jwt(map[string]any{"sub": "svc-reports", "iat": now.Unix()}))
	short := b.secret(b.jwt(map[string]any{"sub": "svc-web", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}))
	jwts := "long=" + long + "\nforever=" + forever + "\nshort=" + short + "\n"
	b.file("tokens/jwt.txt", jwts, true,
		[3]string{"jwt-long-lived", "jwt", long}, [3]string{"jwt-long-lived", "jwt", forever})

	// Passphrase-protected keys, one per container: reported as their own
	// kind, with low severity.
	sshEnc := EncryptedOpenSSH(b.t, k.enc, "enc@example", "correct horse battery staple")
	pkcs8Enc := EncryptedPKCS8(b.t, k.ec, "correct horse battery staple", "-v2", "aes-256-cbc")
	legacyEnc := EncryptedLegacyPEM(b.t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa), "correct horse battery staple", x509.PEMCipherAES256)
	encrypted := b.secret(sshEnc + pkcs8Enc + legacyEnc)
	b.file("keys/encrypted.pem", encrypted, false,
		[3]string{"encrypted-private-key", "encrypted-private-key", "-----BEGIN OPENSSH"},
		[3]string{"encrypted-private-key", "encrypted-private-key", "-----BEGIN ENCRYPTED"},
		[3]string{"encrypted-private-key", "encrypted-private-key", "-----BEGIN RSA"})

	// Look-alikes: blocks labelled encrypted with no key in them, a
	// certificate and a public key alone, documentation examples.
	broken := string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte(b.random(600, alnum))})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{
			"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,",
		}, Bytes: []byte(b.random(1200, alnum))}))
	b.secret(broken)
	b.file("keys/broken-encrypted.pem", broken, false)
	b.file("keys/ca.crt", cert, false)
	pub, err := ssh.NewPublicKey(k.ed.Public())
	if err != nil {
		b.t.Fatal(err)
	}
	b.file("keys/id_ed25519.pub", string(ssh.MarshalAuthorizedKey(pub)), true)
	b.file("docs/aws.md", "# AWS\n\nExport `AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE` and\n`AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`.\n", false)
	b.file("assets/blob.dat", "\x7fELF\x00\x01\x02"+b.random(64, alnum), false)

	// Only in history: added by the first commit, deleted by the second.
	glpat := b.secret("glpat-" + b.random(20, alnum))
	old := "GITLAB_TOKEN=" + glpat + "\n"
	b.write("old/deploy.env", old, true)
	npm := b.secret("npm_" + b.random(36, strings.ToLower(alnum[26:])))
	npmrc := "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=" + npm + "\n"
	b.write("old/.npmrc", npmrc, true)
	for _, h := range []struct{ rule, rel, content, needle string }{
		{"gitlab-pat", "old/deploy.env", old, glpat},
		{"npm-access-token", "old/.npmrc", npmrc, npm},
	} {
		i := strings.Index(h.content, h.needle)
		b.history = append(b.history, pending{Expect{Rule: h.rule, Kind: "token", Path: h.rel, Line: strings.Count(h.content[:i], "\n") + 1}, true})
	}
}

func uuidish(b *builder) string {
	h := b.random(32, "0123456789abcdef")
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// jwt builds an HS256 JWT with the given claims.
func (b *builder) jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, err := json.Marshal(claims)
	if err != nil {
		b.t.Fatal(err)
	}
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	m := hmac.New(sha256.New, []byte(b.random(32, alnum)))
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}

// selfSigned returns a PEM certificate for key valid for validity from
// notBefore.
func selfSigned(t testing.TB, key *rsa.PrivateKey, notBefore time.Time, validity time.Duration) string {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "www.example.com"},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(validity),
	}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// commit creates the repository: the first commit adds the committed files,
// the second deletes the history-only ones.
func (b *builder) commit() {
	b.git("init", "-q", "-b", "main")
	b.git(append([]string{"add", "--"}, b.committed...)...)
	b.git("commit", "-q", "-m", "add service configuration")
	b.f.Commit1 = b.git("rev-parse", "HEAD")
	b.git("rm", "-q", "--", "old/deploy.env", "old/.npmrc")
	b.git("commit", "-q", "-m", "remove leaked tokens")
	b.f.Commit2 = b.git("rev-parse", "HEAD")
	p := filepath.Join(b.f.Root, filepath.FromSlash(b.edit.rel))
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := f.WriteString(b.edit.add); err != nil {
		b.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.t.Fatal(err)
	}
	b.git("commit", "-q", "-a", "-m", "add refund key")
	b.f.Commit3 = b.git("rev-parse", "HEAD")
	b.f.Tree = append(b.f.Tree, b.edit.expect)
	e := b.edit.expect
	e.Commit = b.f.Commit3
	b.f.History = append(b.f.History, e)
	for _, p := range b.plain {
		b.f.Tree = append(b.f.Tree, p.Expect)
		e := p.Expect
		if p.committed {
			e.Commit = b.f.Commit1
		}
		b.f.History = append(b.f.History, e)
	}
	for _, p := range b.history {
		e := p.Expect
		e.Commit = b.f.Commit1
		b.f.History = append(b.f.History, e)
	}
}

// git runs git in the fixture root, isolated from the user's and system's
// configuration, and returns its trimmed output.
func (b *builder) git(args ...string) string {
	b.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Fixture Author", "-c", "user.email=author@example.com",
		"-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = b.f.Root
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "HOME="+b.f.Root,
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Token returns a random-looking token: prefix followed by n alphanumeric
// characters drawn from a generator seeded with seed, so tests get the same
// token on every run and different seeds give different tokens.
func Token(prefix string, n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]byte, n)
	for i := range out {
		out[i] = alnum[r.IntN(len(alnum))]
	}
	return prefix + string(out)
}
