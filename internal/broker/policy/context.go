package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/signet-id/signet/internal/errkind"
)

// Limits of a request context (ParseContext).
const (
	// MaxContextSize bounds the JSON text of a request context.
	MaxContextSize = 16 << 10
	// MaxContextDepth bounds the nesting of a request context: the top
	// object is depth 1, an object or array inside it depth 2.
	MaxContextDepth = 8
)

// ParseContext parses a request's task context (the token endpoint's
// request_context parameter, the CLI's --context-json): a JSON object of
// at most MaxContextSize bytes nested at most MaxContextDepth deep, in
// valid UTF-8, without duplicate keys. Empty input (or only white space) is
// an empty context. Strings, booleans and null map to themselves, objects to
// map[string]any, arrays to []any, and numbers to int64 when they are
// integers that fit and to float64 otherwise. Errors are of kind
// errkind.InvalidArgument and say what is accepted.
func ParseContext(raw []byte) (map[string]any, error) {
	if len(raw) > MaxContextSize {
		return nil, contextError("is %d bytes: at most %d are accepted", len(raw), MaxContextSize)
	}
	if !utf8.Valid(raw) {
		return nil, contextError("is not valid UTF-8")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, contextError("is not JSON: %s", jsonProblem(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, contextError("is %s, not a JSON object: send an object such as {\"ticket\":\"CHG-1\"}", jsonKind(tok))
	}
	v, err := parseObject(dec, 1, "")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, contextError("has data after the JSON object: send exactly one object")
	}
	return v, nil
}

func contextError(format string, args ...any) error {
	return errkind.New(errkind.InvalidArgument, "context "+format, args...)
}

// parseObject reads the members of an object whose '{' was read.
func parseObject(dec *json.Decoder, depth int, path string) (map[string]any, error) {
	out := map[string]any{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, contextError("is not valid JSON: %s", jsonProblem(err))
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return out, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, contextError("is not valid JSON: an object key is not a string")
		}
		p := joinPath(path, key)
		if _, dup := out[key]; dup {
			return nil, contextError("has the key %q twice: each key may appear once", truncate(p))
		}
		v, err := parseValue(dec, depth, p)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
}

// parseValue reads one value inside a container at depth.
func parseValue(dec *json.Decoder, depth int, path string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, contextError("is not valid JSON: %s", jsonProblem(err))
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth+1 > MaxContextDepth {
			return nil, contextError("is nested too deep at %q: at most %d levels of objects and arrays are accepted", truncate(path), MaxContextDepth)
		}
		switch t {
		case '{':
			return parseObject(dec, depth+1, path)
		case '[':
			list := []any{}
			for i := 0; ; i++ {
				if !dec.More() {
					if _, err := dec.Token(); err != nil { // the ']'
						return nil, contextError("is not valid JSON: %s", jsonProblem(err))
					}
					return list, nil
				}
				v, err := parseValue(dec, depth+1, fmt.Sprintf("%s[%d]", path, i))
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
		}
		return nil, contextError("is not valid JSON")
	case json.Number:
		return number(t, path)
	default: // string, bool, nil
		return t, nil
	}
}

// number converts a JSON number.
func number(n json.Number, path string) (any, error) {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, contextError("has the number %s at %q that is out of range: use a 64-bit float or integer, or a string", truncate(s), truncate(path))
	}
	return f, nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonKind names the JSON type of a first token.
func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "not an object"
}

// jsonProblem describes a decoding error without Go type names.
func jsonProblem(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "it ends early"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	return err.Error()
}
