package credential_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/scan/credential"
)

// checkHits fails if a hit's span is outside content or a finding lacks
// its classification.
func checkHits(t *testing.T, content []byte, hits []credential.Hit) {
	t.Helper()
	for _, h := range hits {
		if h.Start < 0 || h.End < h.Start || h.End > len(content) {
			t.Fatalf("%s: span [%d,%d) outside content of %d bytes", h.Rule, h.Start, h.End, len(content))
		}
		if h.Rule == "" || !h.Dismiss && (h.Kind == "" || h.Severity == "" || h.Description == "") {
			t.Fatalf("hit %v lacks rule, kind, severity or description", h)
		}
		if h.Priority <= 0 {
			t.Fatalf("hit %v has priority %d, want positive", h, h.Priority)
		}
	}
}

// fuzzKey returns PEM keys generated for this run; none is committed.
func fuzzKeys(f *testing.F) (sec1, openssh []byte) {
	f.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		f.Fatal(err)
	}
	b, err := ssh.MarshalPrivateKey(ec, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(b)
}

func FuzzDetectPEM(f *testing.F) {
	sec1, openssh := fuzzKeys(f)
	f.Add(sec1)
	f.Add(openssh)
	f.Add(append(append([]byte("junk\n"), sec1...), openssh...))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkHits(t, content, credential.DetectPEM(content))
		for _, b := range []string{"OPENSSH PRIVATE KEY", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"} {
			_, _ = credential.ParsePrivateKeyBlock(&pem.Block{Type: b, Bytes: content})
		}
		_, _ = credential.ParseOpenSSHHeader(content)
		_, _ = credential.ParseEncryptedPKCS8(content)
	})
}

func FuzzParseJWT(f *testing.F) {
	f.Add([]byte(jwt(`{"alg":"HS256"}`, `{"iat":1,"exp":2}`)))
	f.Add([]byte(jwt(`{"alg":"none"}`, `{"exp":1e300}`)))
	f.Add([]byte("eyJ.eyJ.x"))
	f.Fuzz(func(t *testing.T, token []byte) {
		if c, err := credential.ParseJWT(token); err == nil {
			credential.JWTVerdict(c)
		}
		checkHits(t, token, credential.DetectJWTs(token))
	})
}

func FuzzDetectKubeconfig(f *testing.F) {
	sec1, _ := fuzzKeys(f)
	f.Add([]byte("kind: Config\nusers:\n- name: a\n  user:\n    token: abc\n    client-key-data: " +
		base64.StdEncoding.EncodeToString(sec1) + "\n"))
	f.Add([]byte("clusters: []\nusers: [{name: x, user: {password: \"p\\tw\"}}]\n---\nkind: Config\nusers: *a\n"))
	f.Add([]byte("kind: Config\nusers:\n- &a {user: {token: |\n    multi\n    line\n  }}\n- *a\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkHits(t, content, credential.DetectKubeconfig(content))
	})
}

func FuzzDetectCIConfig(f *testing.F) {
	f.Add([]byte("env:\n  TOKEN: lit\njobs:\n  a:\n    steps:\n    - with: {api-key: x}\n"))
	f.Add([]byte("variables:\n  DB_PASSWORD: {value: x}\nj:\n  variables: {API_TOKEN: \"$X\"}\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkHits(t, content, credential.DetectCIConfig(".github/workflows/ci.yml", content))
		checkHits(t, content, credential.DetectCIConfig(".gitlab-ci.yml", content))
	})
}

func FuzzParseNetrc(f *testing.F) {
	f.Add([]byte("machine m login l password p\ndefault password \"q\\\"x\"\n"))
	f.Add([]byte("macdef x\nline\n\nmachine m password p"))
	f.Add([]byte("password \"unterminated"))
	f.Fuzz(func(t *testing.T, content []byte) {
		for _, e := range credential.ParseNetrc(content) {
			if e.Start < 0 || e.End < e.Start || e.End > len(content) {
				t.Fatalf("ParseNetrc: span [%d,%d) outside %d bytes", e.Start, e.End, len(content))
			}
		}
		checkHits(t, content, credential.DetectNetrc(content))
	})
}

func FuzzParsePgpass(f *testing.F) {
	f.Add([]byte("h:5432:db:u:p\\:w\\\\\n#c\n*:*:*:*:\\"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkHits(t, content, credential.DetectPgpass(content))
	})
}

func FuzzParseGitCredentials(f *testing.F) {
	f.Add([]byte("https://u:p%40@h.example\nhttp://u@h\nssh://a:b@[::1]:22/x\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkHits(t, content, credential.DetectGitCredentials(content))
	})
}

func FuzzDetectAWSCredentials(f *testing.F) {
	f.Add([]byte("[p]\naws_access_key_id=AKIA\naws_secret_access_key = s\naws_session_token=t\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkHits(t, content, credential.DetectAWSCredentials(content))
	})
}

func FuzzDetectJSONCredentials(f *testing.F) {
	f.Add([]byte(`{"auths":{"r":{"auth":"dTpw","identitytoken":"x"}}}`))
	f.Add([]byte(`{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`))
	f.Add([]byte(`{"clientId":"a","clientSecret":"b","RefreshToken":{"k":{"secret":"\u00e9"}}}`))
	f.Add([]byte(`[[[[{"a":[1,"x",{"b":null}]}]]]]`))
	f.Fuzz(func(t *testing.T, content []byte) {
		for _, name := range []string{"config.json", ".dockercfg", "accessTokens.json"} {
			checkHits(t, content, credential.DetectJSONCredentials(name, content))
		}
	})
}

func FuzzDetect(f *testing.F) {
	sec1, openssh := fuzzKeys(f)
	f.Add("keys/id", sec1)
	f.Add("id_ed25519", openssh)
	f.Add(".netrc", []byte("machine m password p"))
	f.Add("kube/config", []byte("kind: Config\nusers: [{name: a, user: {token: t}}]"))
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		checkHits(t, content, credential.Detect(name, content))
		if i := len(name); i < len(content) && content[i] == '=' {
			checkHits(t, content, credential.DetectEnv(content, i))
		}
	})
}
