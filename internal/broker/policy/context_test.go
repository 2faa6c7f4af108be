package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/errkind"
)

func TestParseContext(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]any
	}{
		{``, map[string]any{}},
		{"  \n", map[string]any{}},
		{`{}`, map[string]any{}},
		{`{"ticket":"CHG-1"}`, map[string]any{"ticket": "CHG-1"}},
		{`{"n":3,"f":1.5,"e":1e3,"big":123456789012345678901,"neg":-7}`, map[string]any{"n": int64(3), "f": 1.5, "e": 1000.0, "big": 1.2345678901234568e20, "neg": int64(-7)}},
		{`{"ok":true,"none":null,"list":[1,"a",[false]],"obj":{"k":{"x":"y"}}}`, map[string]any{
			"ok": true, "none": nil, "list": []any{int64(1), "a", []any{false}}, "obj": map[string]any{"k": map[string]any{"x": "y"}},
		}},
		{`{"empty":[]}`, map[string]any{"empty": []any{}}},
		{` {"a":"ü€"} `, map[string]any{"a": "ü€"}},
	}
	for _, tt := range tests {
		got, err := ParseContext([]byte(tt.in))
		if err != nil {
			t.Errorf("ParseContext(%q) = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseContext(%q) differs (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseContextErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxContextDepth) + `1` + strings.Repeat(`}`, MaxContextDepth)
	tooDeep := strings.Repeat(`{"a":`, MaxContextDepth+1) + `1` + strings.Repeat(`}`, MaxContextDepth+1)
	tooDeepList := `{"a":` + strings.Repeat(`[`, MaxContextDepth) + strings.Repeat(`]`, MaxContextDepth) + `}`
	if _, err := ParseContext([]byte(deep)); err != nil {
		t.Fatalf("ParseContext(depth %d) = %v, want it accepted", MaxContextDepth, err)
	}
	tests := []struct {
		name, in, want string
	}{
		{"array", `["a"]`, "context is an array, not a JSON object"},
		{"string", `"CHG-1"`, "context is a string, not a JSON object"},
		{"number", `12`, "context is a number, not a JSON object"},
		{"null", `null`, "context is null, not a JSON object"},
		{"bool", `true`, "context is a boolean, not a JSON object"},
		{"k=v", `ticket=CHG-1`, "context is not JSON"},
		{"truncated", `{"a":`, "context is not valid JSON: it ends early"},
		{"unclosed list", `{"a":[1,2`, "context is not valid JSON"},
		{"trailing", `{"a":1} {"b":2}`, "context has data after the JSON object"},
		{"trailing garbage", `{"a":1}x`, "context has data after the JSON object"},
		{"duplicate", `{"a":1,"a":2}`, `context has the key "a" twice`},
		{"nested duplicate", `{"o":{"k":1,"k":1}}`, `context has the key "o.k" twice`},
		{"too deep", tooDeep, "context is nested too deep at"},
		{"too deep list", tooDeepList, "context is nested too deep at"},
		{"bad utf-8", "{\"a\":\"\xff\"}", "context is not valid UTF-8"},
		{"too big", `{"a":"` + strings.Repeat("x", MaxContextSize) + `"}`, "at most 16384 are accepted"},
		{"number out of range", `{"a":1e400}`, `context has the number 1e400 at "a" that is out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseContext([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseContext(%.40q) = %v, want an error containing %q", tt.in, err, tt.want)
			}
			if !errkind.Is(err, errkind.InvalidArgument) {
				t.Errorf("ParseContext(%.40q) error kind = %v, want InvalidArgument", tt.in, errkind.Of(err))
			}
		})
	}
}
