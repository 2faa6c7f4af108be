// Package jointoken implements the join_token node attestation method: an
// operator creates a single-use token with `signet token create`, and the
// agent presents it once to obtain its first agent SVID.
//
// Both halves live here. The agent side is Attestor, whose payload is the
// token itself. The server side is Generate, which mints tokens, and Hash,
// the only form in which a server stores or looks a token up; AgentID
// derives a node's SPIFFE ID from that hash so that the token never appears
// in an ID, a log line or the store.
//
// Tokens are secrets until used: nothing in this package logs one, and
// Attestor redacts itself in fmt and log/slog output.
package jointoken

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/nodeattest"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "join_token"

// MaxLen bounds the length of a token either side accepts. Generated tokens
// are TokenLen characters long.
const MaxLen = 256

// TokenLen is the length of a token made by Generate: 32 URL-safe base64
// characters carrying 192 random bits.
const TokenLen = 32

// Generate returns a fresh random token of TokenLen characters from the
// URL-safe base64 alphabet (192 bits from crypto/rand).
func Generate() (string, error) {
	var b [TokenLen * 3 / 4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate join token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Hash returns the SHA-256 of token: the form servers store and look tokens
// up by.
func Hash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Check reports whether token is acceptable as a join token: 1 to MaxLen
// printable ASCII characters without spaces. The error never contains the
// token.
func Check(token string) error {
	if token == "" {
		return errors.New("join token is empty")
	}
	if len(token) > MaxLen {
		return fmt.Errorf("join token is %d bytes long, over the %d limit", len(token), MaxLen)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("join token has a non-printable or space character at offset %d", i)
		}
	}
	return nil
}

// AgentID returns the SPIFFE ID given to a node admitted with the token of
// the given hash when the token names no ID of its own:
// spiffe://<td>/signet/agent/join_token/<first 16 bytes of the hash in hex>.
func AgentID(td spiffeid.TrustDomain, hash []byte) (spiffeid.ID, error) {
	if len(hash) != sha256.Size {
		return spiffeid.ID{}, fmt.Errorf("derive join_token agent id: hash is %d bytes, want %d", len(hash), sha256.Size)
	}
	return spiffeid.FromSegments(td, "signet", "agent", Name, hex.EncodeToString(hash[:16]))
}

// Attestor is the agent side of join_token attestation. Its payload is the
// token. The zero value is not usable; create one with New.
type Attestor struct {
	token []byte
}

var (
	_ nodeattest.Attestor = (*Attestor)(nil)
	_ slog.LogValuer      = (*Attestor)(nil)
	_ fmt.Stringer        = (*Attestor)(nil)
	_ fmt.GoStringer      = (*Attestor)(nil)
)

// New returns an attestor presenting token. It fails when Check does.
func New(token string) (*Attestor, error) {
	if err := Check(token); err != nil {
		return nil, fmt.Errorf("join_token attestor: %w", err)
	}
	return &Attestor{token: []byte(token)}, nil
}

// Name returns "join_token".
func (a *Attestor) Name() string { return Name }

// Payload returns a copy of the token bytes.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("join_token payload: %w", err)
	}
	return bytes.Clone(a.token), nil
}

// String describes the attestor without its token.
func (a *Attestor) String() string { return "join_token(REDACTED)" }

// GoString describes the attestor without its token, for %#v.
func (a *Attestor) GoString() string { return "jointoken.Attestor{REDACTED}" }

// LogValue redacts the token in log/slog output.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }

// AgentConfig is the agent half's configuration, the value of
// node_attestor.join_token in the agent's file. Give the token or a file
// holding it (so it never shows in `ps` or a config repository), not both.
type AgentConfig struct {
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Validate reports a missing, doubled or malformed token.
func (c AgentConfig) Validate() error {
	switch {
	case c.Token != "" && c.TokenFile != "":
		return errors.New("token, token_file: give one of the two, not both")
	case c.Token == "" && c.TokenFile == "":
		return errors.New("token: required (or token_file: a file holding it)")
	case c.Token != "":
		if err := Check(c.Token); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}
	return nil
}

// ReadTokenFile reads a join token from path: the file's first line, with
// surrounding space trimmed. The error never contains the token.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read join token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxLen+2))
	if err != nil {
		return "", fmt.Errorf("read join token file %s: %w", path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if err := Check(tok); err != nil {
		return "", fmt.Errorf("join token file %s: %w", path, err)
	}
	return tok, nil
}
