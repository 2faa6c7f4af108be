package credential_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/scan/credential"
)

// rules returns "rule@text" for each hit, with dismissals marked "!".
func rules(content []byte, hits []credential.Hit) []string {
	var out []string
	for _, h := range hits {
		s := h.Rule + "@" + string(content[h.Start:h.End])
		if h.Dismiss {
			s = "!" + s
		}
		out = append(out, s)
	}
	return out
}

func TestIsSecretName(t *testing.T) {
	tests := map[string]bool{
		"DB_PASSWORD": true, "password": true, "clientSecret": true, "API_KEY": true,
		"api-key": true, "AWS_SECRET_ACCESS_KEY": true, "GITHUB_TOKEN": true, "NPM_AUTH_TOKEN": true,
		"SSH_PRIVATE_KEY": true, "PGPASSWORD": true, "clientsecret": true, "DB_PWD": true, "BYPASS": false,
		"PWD": false, "OLDPWD": false, "TOKEN_URL": false, "PASSWORD_FILE": false, "SECRET_NAME": false,
		"CACHE_KEY": false, "PRIMARY_KEY": false, "PASSTHROUGH": false, "HOME": false, "KEY": false,
		"AWS_ACCESS_KEY_ID": false, "": false,
	}
	for name, want := range tests {
		if got := credential.IsSecretName(name); got != want {
			t.Errorf("IsSecretName(%q) = %t, want %t", name, got, want)
		}
	}
}

func TestIsPlaceholder(t *testing.T) {
	tests := map[string]bool{
		"changeme": true, "CHANGEME": true, "password": true, "postgres": true, "<your-token>": true,
		"xxxxxxxx": true, "********": true, "": true, "  ": true,
		"hunter2": false, "s3cr3t-Value": false, "changeme123": false,
	}
	for v, want := range tests {
		if got := credential.IsPlaceholder(v); got != want {
			t.Errorf("IsPlaceholder(%q) = %t, want %t", v, got, want)
		}
	}
}

func TestIsReference(t *testing.T) {
	tests := map[string]bool{
		"${{ secrets.TOKEN }}": true, "$DB_PASSWORD": true, "${DB_PASSWORD}": true, "pre-$TOKEN": true,
		"literal": false, "pa$$word1": false, "cost: 5$": false,
	}
	for v, want := range tests {
		if got := credential.IsReference(v); got != want {
			t.Errorf("IsReference(%q) = %t, want %t", v, got, want)
		}
	}
}

func TestPreview(t *testing.T) {
	tests := map[string]string{
		"ghp_0123456789abcdef0123456789abcdef0123": "ghp_…(40)",
		"hunter22":      "hu…(8)",
		"abc":           "…(3)",
		"":              "…(0)",
		"a\x1bcdefghij": "a?…(10)",
		"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n": "MIIE…(32)",
		`-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n`: "MIIE…(32)",
		"пароль-пароль": "пар…(13)",
	}
	for in, want := range tests {
		if got := credential.Preview(in); got != want {
			t.Errorf("Preview(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecretRedacts(t *testing.T) {
	s := credential.Secret("hunter2-hunter2")
	h := credential.Hit{Rule: "x", Value: s}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("hit", "hit", h, "secret", s)
	js, err := json.Marshal(struct{ S credential.Secret }{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, h, h, s, s, s), logged.String(), string(js)} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74") {
			t.Errorf("secret rendered in %q", out)
		}
	}
}

func pemKey(t *testing.T, typ string, der []byte, headers map[string]string) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der}))
}

func TestDetectPEM(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sshBlock, err := ssh.MarshalPrivateKey(ec, "")
	if err != nil {
		t.Fatal(err)
	}
	sshEnc, err := ssh.MarshalPrivateKeyWithPassphrase(ec, "", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	tests := []struct {
		name, content string
		want          []string
	}{
		{"sec1", pemKey(t, "EC PRIVATE KEY", sec1, nil), []string{"pem-private-key"}},
		{"pkcs8", "x = '''\n" + pemKey(t, "PRIVATE KEY", pkcs8, nil) + "'''\n", []string{"pem-private-key"}},
		{"openssh", string(pem.EncodeToMemory(sshBlock)), []string{"openssh-private-key"}},
		{"openssh encrypted", string(pem.EncodeToMemory(sshEnc)), []string{"encrypted-private-key"}},
		{"pkcs8 labelled encrypted, opaque body", pemKey(t, "ENCRYPTED PRIVATE KEY", []byte("opaque"), nil), []string{"!malformed-encrypted-private-key"}},
		{"legacy labelled encrypted, no IV", pemKey(t, "EC PRIVATE KEY", []byte("opaque"), map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,"}), []string{"!malformed-encrypted-private-key"}},
		{"public key", pemKey(t, "PUBLIC KEY", pubDER, nil), nil},
		{"garbage key", pemKey(t, "RSA PRIVATE KEY", []byte("not der"), nil), nil},
		{"malformed then good", "-----BEGIN EC PRIVATE KEY-----\n!!!\n" + pemKey(t, "EC PRIVATE KEY", sec1, nil), []string{"pem-private-key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := credential.DetectPEM([]byte(tt.content))
			var got []string
			for _, h := range hits {
				r := h.Rule
				if h.Dismiss {
					r = "!" + r
				}
				got = append(got, r)
				if !strings.HasPrefix(tt.content[h.Start:h.End], "-----BEGIN") || !strings.HasSuffix(tt.content[h.Start:h.End], "-----") {
					t.Errorf("DetectPEM span %q is not the block", tt.content[h.Start:h.End])
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DetectPEM(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}

	// The same key in three containers has one canonical value.
	var values []string
	for _, c := range []string{pemKey(t, "EC PRIVATE KEY", sec1, nil), pemKey(t, "PRIVATE KEY", pkcs8, nil), string(pem.EncodeToMemory(sshBlock))} {
		hits := credential.DetectPEM([]byte(c))
		if len(hits) != 1 {
			t.Fatalf("DetectPEM: %d hits, want 1", len(hits))
		}
		values = append(values, string(hits[0].Value))
	}
	if values[0] != values[1] || values[1] != values[2] {
		t.Errorf("DetectPEM: the same key in SEC 1, PKCS#8 and OpenSSH form has different canonical values")
	}
}

func TestJWTVerdict(t *testing.T) {
	at := func(d time.Duration) *time.Time { v := time.Unix(1_700_000_000, 0).Add(d); return &v }
	tests := []struct {
		name   string
		claims credential.JWTClaims
		want   credential.JWTLifetime
	}{
		{"no exp", credential.JWTClaims{Iat: at(0)}, credential.JWTLongLived},
		{"no claims", credential.JWTClaims{}, credential.JWTLongLived},
		{"one hour", credential.JWTClaims{Iat: at(0), Exp: at(time.Hour)}, credential.JWTShortLived},
		{"exactly a day", credential.JWTClaims{Iat: at(0), Exp: at(24 * time.Hour)}, credential.JWTShortLived},
		{"a day and a second", credential.JWTClaims{Iat: at(0), Exp: at(24*time.Hour + time.Second)}, credential.JWTLongLived},
		{"nbf instead of iat", credential.JWTClaims{Nbf: at(0), Exp: at(48 * time.Hour)}, credential.JWTLongLived},
		{"exp only", credential.JWTClaims{Exp: at(time.Hour)}, credential.JWTUnknown},
	}
	for _, tt := range tests {
		if got, why := credential.JWTVerdict(tt.claims); got != tt.want {
			t.Errorf("JWTVerdict(%s) = %v (%s), want %v", tt.name, got, why, tt.want)
		}
	}
}

func jwt(header, payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + ".c2lnbmF0dXJlLXNpZ25hdHVyZQ"
}

func TestDetectJWTs(t *testing.T) {
	long := jwt(`{"alg":"RS256"}`, `{"iat":1700000000,"exp":1702592000}`)
	short := jwt(`{"alg":"RS256"}`, `{"iat":1700000000,"exp":1700003600.5}`)
	forever := jwt(`{"alg":"none"}`, `{"sub":"x"}`)
	unknown := jwt(`{"alg":"RS256"}`, `{"exp":1700003600}`)
	noAlg := jwt(`{"typ":"JWT"}`, `{"sub":"x"}`)
	badExp := jwt(`{"alg":"HS256"}`, `{"exp":"tomorrow"}`)
	content := "a=" + long + "\nb=\"" + short + "\"\nc: " + forever + "\nd " + unknown + " " + noAlg + " " + badExp + " xeyJ" + long[3:]
	got := rules([]byte(content), credential.DetectJWTs([]byte(content)))
	want := []string{"jwt-long-lived@" + long, "!jwt-short-lived@" + short, "jwt-long-lived@" + forever}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectJWTs mismatch (-want +got):\n%s", diff)
	}
}

func TestParseNetrc(t *testing.T) {
	content := `# comment
machine a.example.com login alice password "p@ss word"
macdef init
  password not-a-password
  cd /tmp

machine b.example.com
  login bob
  account acct
  password b0bs-secret
default login anon password anon-pw
machine c.example.com login carol
`
	got := credential.ParseNetrc([]byte(content))
	var short []string
	for _, e := range got {
		short = append(short, e.Machine+"/"+e.Login+"/"+e.Password+"/"+content[e.Start:e.End])
	}
	want := []string{
		"a.example.com/alice/p@ss word/p@ss word",
		"b.example.com/bob/b0bs-secret/b0bs-secret",
		"/anon/anon-pw/anon-pw",
	}
	if diff := cmp.Diff(want, short); diff != "" {
		t.Errorf("ParseNetrc mismatch (-want +got):\n%s", diff)
	}
}

func TestParsePgpass(t *testing.T) {
	content := "# comment\r\nhost:5432:db:user:pa\\:ss\\\\wd\r\nlocalhost:*:*:postgres:with:colon\nshort:line\n\n*:*:*:u:\n"
	var got []string
	for _, e := range credential.ParsePgpass([]byte(content)) {
		got = append(got, e.Host+"|"+e.User+"|"+e.Password+"|"+content[e.Start:e.End])
	}
	want := []string{
		`host|user|pa:ss\wd|pa\:ss\\wd`,
		"localhost|postgres|with:colon|with:colon",
		"*|u||",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParsePgpass mismatch (-want +got):\n%s", diff)
	}
}

func TestParseGitCredentials(t *testing.T) {
	content := "https://alice:p%40ss@github.com\nhttps://bob@example.com\nnot a url\nhttps://carol:tok:en@git.example.com:8443/path\n"
	var got []string
	for _, c := range credential.ParseGitCredentials([]byte(content)) {
		got = append(got, c.Host+"|"+c.User+"|"+c.Password+"|"+content[c.Start:c.End])
	}
	want := []string{"github.com|alice|p@ss|p%40ss", "git.example.com:8443|carol|tok:en|tok:en"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseGitCredentials mismatch (-want +got):\n%s", diff)
	}
}

func TestDetectAWSCredentials(t *testing.T) {
	content := `[default]
aws_access_key_id = AKIAABCDEFGHIJKLMNOP
aws_secret_access_key = Secret0Secret1Secret2Secret3Secret4Secret
[temp]
aws_access_key_id=ASIAABCDEFGHIJKLMNOP
aws_secret_access_key=Temp0Temp1Temp2Temp3Temp4Temp5Temp6Temp7
aws_session_token = FwoGZXIvYXdzEJr
; a placeholder
[example]
aws_secret_access_key = changeme
`
	got := rules([]byte(content), credential.DetectAWSCredentials([]byte(content)))
	want := []string{
		"aws-credentials-file@Secret0Secret1Secret2Secret3Secret4Secret",
		"!aws-access-key-id@AKIAABCDEFGHIJKLMNOP",
		"aws-credentials-file@Temp0Temp1Temp2Temp3Temp4Temp5Temp6Temp7",
		"!aws-access-key-id@ASIAABCDEFGHIJKLMNOP",
		"!aws-session-token@FwoGZXIvYXdzEJr",
		"!aws-credentials-placeholder@changeme",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectAWSCredentials mismatch (-want +got):\n%s", diff)
	}
}

func TestDetectKubeconfig(t *testing.T) {
	content := `apiVersion: v1
kind: Config
users:
- name: a
  user:
    token: 'tok-0123456789abcdef'
- name: b
  user:
    tokenFile: /var/run/token
    exec: {command: aws}
- name: c
  user:
    auth-provider:
      name: oidc
      config:
        client-secret: cs-0123456789
        refresh-token: rt-0123456789
        id-token: not-reported-here
- name: d
  user: {username: d, password: changeme}
`
	got := rules([]byte(content), credential.DetectKubeconfig([]byte(content)))
	want := []string{
		"kubeconfig-token@tok-0123456789abcdef",
		"kubeconfig-auth-provider-secret@cs-0123456789",
		"kubeconfig-auth-provider-secret@rt-0123456789",
		"!kubeconfig-placeholder@changeme",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectKubeconfig mismatch (-want +got):\n%s", diff)
	}
	if hits := credential.DetectKubeconfig([]byte("users:\n- name: x\n  user: {token: abc123456789}\n")); len(hits) != 0 {
		t.Errorf("DetectKubeconfig(not a kubeconfig) = %v, want nothing", hits)
	}
}

func TestDetectCIConfig(t *testing.T) {
	workflow := `env:
  NPM_TOKEN: "lit-npm-0123456789"
  RETRIES: 3
jobs:
  build:
    container:
      image: ghcr.io/x/y
      credentials: {username: bot, password: lit-pass-0123456789}
    steps:
      - uses: docker/login-action@v3
        with:
          password: ${{ secrets.REGISTRY_PASSWORD }}
          api-key: lit-api-0123456789
      - run: echo
        env:
          TOKEN_URL: https://x/token
          SIGNING_KEY: $SIGNING_KEY
          ENABLE_TOKEN: true
`
	got := rules([]byte(workflow), credential.DetectCIConfig(".github/workflows/build.yaml", []byte(workflow)))
	want := []string{
		"ci-literal-secret@lit-npm-0123456789",
		"!ci-secret-reference@${{ secrets.REGISTRY_PASSWORD }}",
		"ci-literal-secret@lit-api-0123456789",
		"!ci-secret-reference@$SIGNING_KEY",
		"ci-literal-secret@lit-pass-0123456789",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectCIConfig(github) mismatch (-want +got):\n%s", diff)
	}

	gitlab := `variables:
  DEPLOY_TOKEN:
    value: "lit-deploy-0123456789"
    description: deploy
test:
  variables:
    DB_PASSWORD: lit-db-0123456789
    DB_USER: app
`
	got = rules([]byte(gitlab), credential.DetectCIConfig("ci/.gitlab-ci.yml", []byte(gitlab)))
	want = []string{"ci-literal-secret@lit-deploy-0123456789", "ci-literal-secret@lit-db-0123456789"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectCIConfig(gitlab) mismatch (-want +got):\n%s", diff)
	}
}

func TestDetectJSONCredentials(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("user:pw-0123456789"))
	userOnly := base64.StdEncoding.EncodeToString([]byte("user:"))
	docker := `{"auths": {"r.example.com": {"auth": "` + auth + `"}, "q.example.com": {"auth": "` + userOnly + `"},
  "ghcr.io": {"identitytoken": "id-0123456789"}}, "credsStore": "desktop", "list": [{"auth": "not-in-auths"}]}`
	got := rules([]byte(docker), credential.DetectJSONCredentials("config.json", []byte(docker)))
	want := []string{"docker-config-auth@" + auth, "!docker-config-auth-placeholder@" + userOnly, "docker-config-auth@id-0123456789"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectJSONCredentials(docker) mismatch (-want +got):\n%s", diff)
	}

	adc := `{"type": "authorized_user", "client_id": "x.apps.googleusercontent.com", "refresh_token": "1//rt-0123456789\u0041"}`
	got = rules([]byte(adc), credential.DetectJSONCredentials("application_default_credentials.json", []byte(adc)))
	want = []string{`gcp-authorized-user@1//rt-0123456789\u0041`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DetectJSONCredentials(adc) mismatch (-want +got):\n%s", diff)
	}
	if hits := credential.DetectJSONCredentials("x.json", []byte(`{"type": "external_account", "audience": "x"}`)); len(hits) != 0 {
		t.Errorf("DetectJSONCredentials(workload identity federation config) = %v, want nothing", hits)
	}
}

func TestWalkJSON(t *testing.T) {
	content := `{"a": {"b": ["x", {"c": "y"}], "d": 1, "e": "z"}, "f": "w\"q"}`
	var got []string
	for _, s := range credential.WalkJSON([]byte(content)) {
		got = append(got, strings.Join(s.Path, ".")+"="+s.Value+"@"+content[s.Start:s.End])
	}
	want := []string{"a.b=x@x", "a.b.c=y@y", "a.e=z@z", `f=w"q@w\"q`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WalkJSON mismatch (-want +got):\n%s", diff)
	}
}

func TestParseJWT(t *testing.T) {
	enc := base64.URLEncoding // padded
	padded := enc.EncodeToString([]byte(`{"alg":"ES256"}`)) + "." + enc.EncodeToString([]byte(`{"iat":1700000000,"exp":1700000001.5}`)) + ".c2ln"
	tests := []struct {
		name, token string
		wantErr     bool
	}{
		{"padded parts", padded, false},
		{"unsigned", jwt(`{"alg":"none"}`, `{}`), false},
		{"unknown alg", jwt(`{"alg":"rot13"}`, `{}`), true},
		{"alg not a string", jwt(`{"alg":256}`, `{}`), true},
		{"payload an array", jwt(`{"alg":"HS256"}`, `[1]`), true},
		{"payload null", jwt(`{"alg":"HS256"}`, `null`), true},
		{"two parts", "eyJhbGciOiJub25lIn0.e30", true},
	}
	for _, tt := range tests {
		c, err := credential.ParseJWT([]byte(tt.token))
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseJWT(%s) error = %v, want error %t", tt.name, err, tt.wantErr)
		}
		if tt.name == "padded parts" && err == nil && (c.Exp == nil || c.Exp.Sub(*c.Iat) != 1500*time.Millisecond) {
			t.Errorf("ParseJWT(%s) = %+v, want a 1.5 s lifetime", tt.name, c)
		}
	}
}
