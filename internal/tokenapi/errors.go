package tokenapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/signet-id/signet/internal/errkind"
)

// OAuth 2.0 error codes (RFC 6749 §5.2, RFC 8693 §2.2.2) the endpoint
// answers with.
const (
	ErrInvalidRequest         = "invalid_request"
	ErrInvalidClient          = "invalid_client"
	ErrInvalidGrant           = "invalid_grant"
	ErrUnauthorizedClient     = "unauthorized_client"
	ErrUnsupportedGrantType   = "unsupported_grant_type"
	ErrInvalidScope           = "invalid_scope"
	ErrInvalidTarget          = "invalid_target"
	ErrServerError            = "server_error"
	ErrTemporarilyUnavailable = "temporarily_unavailable"
)

// Error is an OAuth error response: Code is one of the Err constants and
// Description (error_description) says, in one line, which parameter was
// wrong and what would be accepted. Status is the HTTP status; 0 means the
// code's usual one (400, 401 for invalid_client, 500 for server_error, 503
// for temporarily_unavailable).
type Error struct {
	Code        string
	Description string
	Status      int
}

// Errorf returns an *Error with code and a formatted description.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func (e *Error) status() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Code {
	case ErrInvalidClient:
		return http.StatusUnauthorized
	case ErrServerError:
		return http.StatusInternalServerError
	case ErrTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// oauthCodes maps the kinds of errkind errors returned by subject
// verifiers and issuers to OAuth codes.
var oauthCodes = map[errkind.Kind]string{
	errkind.InvalidArgument:    ErrInvalidRequest,
	errkind.Unauthenticated:    ErrInvalidGrant,
	errkind.PermissionDenied:   ErrUnauthorizedClient,
	errkind.NotFound:           ErrInvalidTarget,
	errkind.FailedPrecondition: ErrInvalidRequest,
	errkind.AlreadyExists:      ErrInvalidGrant,
	errkind.Unavailable:        ErrTemporarilyUnavailable,
	errkind.ResourceExhausted:  ErrTemporarilyUnavailable,
}

// toOAuth turns any error into the OAuth error the caller sees. An *Error
// passes as is; a kinded error keeps its caller-safe message under the
// code of its kind; anything else is a server_error carrying only a
// correlation id (returned so the caller can log it with the cause).
func toOAuth(err error) (oe *Error, internalID string) {
	if errors.As(err, &oe) {
		return oe, ""
	}
	msg, id := errkind.Public(err)
	if id != "" {
		return &Error{Code: ErrServerError, Description: msg}, id
	}
	oe = &Error{Code: oauthCodes[errkind.Of(err)], Description: msg}
	if errkind.Of(err) == errkind.ResourceExhausted {
		oe.Status = http.StatusTooManyRequests
	}
	return oe, ""
}
