package tokenapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// Grant types, token types and parameter names of RFC 8693 and Signet.
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeX509SVID is Signet's token type for an X.509-SVID chain (PEM).
	TokenTypeX509SVID = "urn:signet:params:oauth:token-type:x509-svid"
)

// MaxBodySize bounds a token request's body.
const MaxBodySize = 64 << 10

// Maximum repetitions of the repeatable parameters.
const maxRepeated = 16

// Request is one parsed token request. Parameters RFC 8693 defines have
// fields; Params holds every parameter as sent (including extensions such
// as csr, spiffe_id or request_context), each present at most once except
// audience and resource.
type Request struct {
	GrantType          string
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	ActorTokenType     string
	RequestedTokenType string
	// Audience and Resource are the repeated audience and resource
	// parameters, in order.
	Audience []string
	Resource []string
	Scope    string
	Params   url.Values
	// Peer is the subject of the X509-SVID the caller presented over mTLS,
	// nil without one; set by the Handler.
	Peer *Subject
}

// Param returns the single value of an extension parameter, "" when absent.
func (r *Request) Param(name string) string { return r.Params.Get(name) }

// repeatable are the parameters RFC 8693 §2.1 lets a client send several times.
var repeatable = map[string]bool{"audience": true, "resource": true}

// ParseRequest reads and checks a token request: method POST, content type
// application/x-www-form-urlencoded, no URL query, a body of at most
// MaxBodySize bytes in UTF-8, no parameter twice (but audience and
// resource), grant_type token exchange with a known structure. It checks
// the shape only; whether the subject token is valid and whether the
// requested token type is served is the handler's. Every failure is an
// *Error whose description names the parameter.
func ParseRequest(r *http.Request) (*Request, error) {
	if r.Method != http.MethodPost {
		return nil, &Error{Code: ErrInvalidRequest, Description: "method " + r.Method + " is not allowed: send the token request with POST", Status: http.StatusMethodNotAllowed}
	}
	if r.URL.RawQuery != "" {
		return nil, Errorf(ErrInvalidRequest, "parameters must travel in the request body, not the URL query")
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, &Error{Code: ErrInvalidRequest, Status: http.StatusUnsupportedMediaType,
			Description: "Content-Type " + quoteShort(ct) + " is not accepted: use application/x-www-form-urlencoded"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, Errorf(ErrInvalidRequest, "request body could not be read")
	}
	if len(body) > MaxBodySize {
		return nil, tooLarge()
	}
	return ParseForm(body)
}

func tooLarge() *Error {
	return &Error{Code: ErrInvalidRequest, Status: http.StatusRequestEntityTooLarge,
		Description: "request body is larger than the 65536 bytes allowed"}
}

// ParseForm parses and checks a form-encoded token request body (see
// ParseRequest).
func ParseForm(body []byte) (*Request, error) {
	if !utf8.Valid(body) {
		return nil, Errorf(ErrInvalidRequest, "request body is not valid UTF-8")
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, Errorf(ErrInvalidRequest, "request body is not a valid form: %s", quoteShort(err.Error()))
	}
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := len(vals[name])
		if repeatable[name] {
			if n > maxRepeated {
				return nil, Errorf(ErrInvalidRequest, "parameter %s is repeated %d times: at most %d are accepted", name, n, maxRepeated)
			}
			for _, v := range vals[name] {
				if v == "" {
					return nil, Errorf(ErrInvalidRequest, "parameter %s is empty", name)
				}
			}
			continue
		}
		if n > 1 {
			return nil, Errorf(ErrInvalidRequest, "parameter %s is sent %d times: send it once", quoteShort(name), n)
		}
	}
	req := &Request{
		GrantType:          vals.Get("grant_type"),
		SubjectToken:       vals.Get("subject_token"),
		SubjectTokenType:   vals.Get("subject_token_type"),
		ActorToken:         vals.Get("actor_token"),
		ActorTokenType:     vals.Get("actor_token_type"),
		RequestedTokenType: vals.Get("requested_token_type"),
		Audience:           vals["audience"],
		Resource:           vals["resource"],
		Scope:              vals.Get("scope"),
		Params:             vals,
	}
	switch req.GrantType {
	case GrantTokenExchange:
	case "":
		return nil, Errorf(ErrInvalidRequest, "parameter grant_type is required: use %s", GrantTokenExchange)
	default:
		return nil, Errorf(ErrUnsupportedGrantType, "grant_type %s is not supported: use %s", quoteShort(req.GrantType), GrantTokenExchange)
	}
	if (req.SubjectToken == "") != (req.SubjectTokenType == "") {
		if req.SubjectToken == "" {
			return nil, Errorf(ErrInvalidRequest, "parameter subject_token is required with subject_token_type")
		}
		return nil, Errorf(ErrInvalidRequest, "parameter subject_token_type is required with subject_token, e.g. %s", TokenTypeIDToken)
	}
	if (req.ActorToken == "") != (req.ActorTokenType == "") {
		return nil, Errorf(ErrInvalidRequest, "parameters actor_token and actor_token_type go together: send both or neither")
	}
	return req, nil
}

// quoteShort quotes s for an error description, cut to 64 runes.
func quoteShort(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		r := []rune(s)
		s = string(r[:64]) + "…"
	}
	return strings.ToValidUTF8(`"`+strings.ReplaceAll(s, `"`, `'`)+`"`, "?")
}
