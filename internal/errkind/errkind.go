// Package errkind classifies errors into a small, transport-neutral set of
// kinds that the edges (gRPC, HTTP, CLI) map to their own status codes.
//
// Domain code returns errors built with New or Wrap; the transport adapters
// map them (GRPCCode) exactly once at the boundary. An error with no
// kind is Internal: its text is logged, and the caller sees only an opaque
// "internal error (id=…)" message carrying the same id as the log line.
package errkind

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind is a transport-neutral error class. The zero value is Internal.
type Kind int

// The kinds an error can carry.
const (
	Internal Kind = iota
	NotFound
	InvalidArgument
	PermissionDenied
	Unauthenticated
	AlreadyExists
	FailedPrecondition
	Unavailable
	// ResourceExhausted: the caller is over a rate or size limit; retry
	// later, more slowly.
	ResourceExhausted
)

var kindNames = [...]string{
	Internal:           "internal",
	NotFound:           "not found",
	InvalidArgument:    "invalid argument",
	PermissionDenied:   "permission denied",
	Unauthenticated:    "unauthenticated",
	AlreadyExists:      "already exists",
	FailedPrecondition: "failed precondition",
	Unavailable:        "unavailable",
	ResourceExhausted:  "resource exhausted",
}

// String returns the kind's lower-case name.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Error is an error with a kind. Its message is safe to show to the caller.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause; not shown to remote callers
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind k with a formatted, caller-safe message.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k whose caller-safe message is msg and whose
// cause is err. A nil err yields a nil error.
func Wrap(k Kind, err error, msg string) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Msg: msg, Err: err}
}

// Of reports the kind of err: the kind of the outermost *Error in its chain,
// or Internal when there is none.
func Of(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err carries kind k.
func Is(err error, k Kind) bool { return err != nil && Of(err) == k }

// Public returns the message a remote caller may see for err, and for
// internal errors a fresh correlation id to log beside the full error. For
// kinded errors the id is empty.
func Public(err error) (msg, id string) {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal {
		if e.Err != nil && Of(e.Err) != Internal {
			// A kinded cause is itself caller-safe: keep the detail.
			return e.Error(), ""
		}
		return e.Msg, ""
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	id = hex.EncodeToString(b[:])
	return "internal error (id=" + id + ")", id
}

var grpcCodes = map[Kind]codes.Code{
	Internal:           codes.Internal,
	NotFound:           codes.NotFound,
	InvalidArgument:    codes.InvalidArgument,
	PermissionDenied:   codes.PermissionDenied,
	Unauthenticated:    codes.Unauthenticated,
	AlreadyExists:      codes.AlreadyExists,
	FailedPrecondition: codes.FailedPrecondition,
	Unavailable:        codes.Unavailable,
	ResourceExhausted:  codes.ResourceExhausted,
}

// GRPCCode maps a kind to its gRPC status code.
func GRPCCode(k Kind) codes.Code { return grpcCodes[k] }

// FromGRPC converts a gRPC status error back into a kinded error, so clients
// can branch on kinds. Non-status errors become Unavailable (the transport
// failed before the server answered).
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Kind: Unavailable, Msg: err.Error()}
	}
	for k, c := range grpcCodes {
		if c == st.Code() {
			return &Error{Kind: k, Msg: st.Message()}
		}
	}
	if st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled {
		return &Error{Kind: Unavailable, Msg: st.Message()}
	}
	return &Error{Kind: Internal, Msg: st.Message()}
}
