package credential

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxJWTLifetime is the longest JWT lifetime (exp minus iat) that is not
// reported.
const MaxJWTLifetime = 24 * time.Hour

// maxJWTLen bounds a JWT candidate; longer runs are not decoded.
const maxJWTLen = 16 << 10

// JWTClaims holds the time claims of a JWT payload. A nil field means the
// claim is absent.
type JWTClaims struct {
	Exp, Iat, Nbf *time.Time
}

// Lifetime returns exp minus iat (or nbf when iat is absent) and whether it
// could be computed.
func (c JWTClaims) Lifetime() (time.Duration, bool) {
	if c.Exp == nil {
		return 0, false
	}
	start := c.Iat
	if start == nil {
		start = c.Nbf
	}
	if start == nil {
		return 0, false
	}
	return c.Exp.Sub(*start), true
}

// jwtAlgorithms are the "alg" values ParseJWT accepts: every JWS signature
// algorithm go-jose knows, and "none" (an unsigned token is a credential
// too). Nothing is verified, so the list only tells tokens from look-alikes.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, "none",
}

// ParseJWT decodes a compact JWS without verifying it: the header must be a
// JOSE header whose "alg" is a JWS algorithm (or "none") and the payload a
// JSON object. Base64 padding, which some encoders add, is tolerated. It
// returns the payload's time claims.
func ParseJWT(token []byte) (JWTClaims, error) {
	tok, err := jwt.ParseSigned(string(bytes.ReplaceAll(token, []byte("="), nil)), jwtAlgorithms)
	if err != nil {
		return JWTClaims{}, fmt.Errorf("parse jwt: %w", err)
	}
	var payload map[string]json.RawMessage
	if err := tok.UnsafeClaimsWithoutVerification(&payload); err != nil {
		return JWTClaims{}, fmt.Errorf("parse jwt payload: %w", err)
	}
	if payload == nil {
		return JWTClaims{}, errors.New("parse jwt payload: not an object")
	}
	var c JWTClaims
	if c.Exp, err = numericDate(payload, "exp"); err != nil {
		return JWTClaims{}, err
	}
	if c.Iat, err = numericDate(payload, "iat"); err != nil {
		return JWTClaims{}, err
	}
	if c.Nbf, err = numericDate(payload, "nbf"); err != nil {
		return JWTClaims{}, err
	}
	return c, nil
}

// numericDate reads a JWT NumericDate claim (seconds since the epoch, may be
// fractional). An absent or null claim is nil.
func numericDate(payload map[string]json.RawMessage, name string) (*time.Time, error) {
	raw, ok := payload[name]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < -1e12 || f > 1e12 {
		return nil, fmt.Errorf("parse jwt claim %s: not a numeric date", name)
	}
	sec, frac := math.Modf(f)
	t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return &t, nil
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// findJWTs returns the spans of compact-JWS-shaped candidates starting with
// "eyJ" (a base64url JSON object) in content.
func findJWTs(content []byte) [][2]int {
	var spans [][2]int
	for off := 0; off < len(content); {
		i := bytes.Index(content[off:], []byte("eyJ"))
		if i < 0 {
			break
		}
		start := off + i
		if start > 0 && isB64URL(content[start-1]) {
			off = start + 3
			continue
		}
		end, dots := start, 0
		for end < len(content) && end-start <= maxJWTLen {
			c := content[end]
			if c == '.' {
				dots++
				if dots > 2 {
					break
				}
			} else if !isB64URL(c) && c != '=' {
				break
			}
			end++
		}
		if dots == 2 && end-start <= maxJWTLen {
			spans = append(spans, [2]int{start, end})
		}
		off = max(end, start+3)
	}
	return spans
}

// DetectJWTs reports long-lived JWTs (see JWTVerdict) and dismisses
// short-lived ones. Tokens whose lifetime cannot be told produce no hit, so
// generic rules still see them.
func DetectJWTs(content []byte) []Hit {
	var hits []Hit
	for _, sp := range findJWTs(content) {
		tok := content[sp[0]:sp[1]]
		claims, err := ParseJWT(tok)
		if err != nil {
			continue
		}
		verdict, detail := JWTVerdict(claims)
		switch verdict {
		case JWTUnknown:
			continue
		case JWTShortLived:
			hits = append(hits, Hit{Rule: "jwt-short-lived", Start: sp[0], End: sp[1], Dismiss: true, Priority: priorityGeneric})
			continue
		}
		h := Hit{
			Rule:        "jwt-long-lived",
			Description: "Long-lived JWT (" + detail + ")",
			Kind:        KindJWT,
			Severity:    SeverityMedium,
			Start:       sp[0],
			End:         sp[1],
			Details:     map[string]string{"lifetime": detail},
			Priority:    priorityGeneric,
		}
		if claims.Exp == nil {
			h.Severity = SeverityHigh
		} else {
			h.Details["exp"] = claims.Exp.Format(time.RFC3339)
		}
		hits = append(hits, h)
	}
	return hits
}

// JWTLifetime classifies a JWT by its lifetime.
type JWTLifetime int

// The JWT lifetime classes.
const (
	JWTUnknown    JWTLifetime = iota // exp present, but neither iat nor nbf
	JWTShortLived                    // exp minus iat at most MaxJWTLifetime
	JWTLongLived                     // no exp, or exp minus iat above MaxJWTLifetime
)

// JWTVerdict classifies claims and says why. A token without exp never
// expires. A token with exp but neither iat nor nbf has an unknown lifetime:
// nothing in it says for how long it was issued, and judging it by the
// current time would make scans of the same content disagree over time.
func JWTVerdict(c JWTClaims) (JWTLifetime, string) {
	if c.Exp == nil {
		return JWTLongLived, "no expiry"
	}
	life, ok := c.Lifetime()
	if !ok {
		return JWTUnknown, "unknown lifetime"
	}
	if life > MaxJWTLifetime {
		return JWTLongLived, "lifetime " + formatDays(life)
	}
	return JWTShortLived, "lifetime " + life.String()
}

func formatDays(d time.Duration) string {
	days := d.Hours() / 24
	if days >= 2 {
		return strconv.FormatFloat(math.Floor(days), 'f', 0, 64) + " days"
	}
	return d.Round(time.Minute).String()
}
