package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// findRecord returns the first record in a process's log whose msg is
// msg. The log holds JSON records or slog's text format, one per line;
// a text record's values are strings, a JSON record's what it decoded
// to. Lines that are neither are skipped.
func findRecord(log, msg string) (map[string]any, bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			var ok bool
			if rec, ok = textRecord(sc.Text()); !ok {
				continue
			}
		}
		if rec["msg"] == msg {
			return rec, true
		}
	}
	return nil, false
}

// textRecord parses one line of slog's text format: key=value pairs,
// a value either bare (up to the next space) or Go-quoted.
func textRecord(line string) (map[string]any, bool) {
	rec := map[string]any{}
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, ` "`) {
			return nil, false
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, false
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		rec[k] = v
		s = rest
	}
	return rec, len(rec) > 0
}

// logRecord is findRecord for a record the test needs.
func logRecord(t *testing.T, out, msg string) map[string]any {
	t.Helper()
	rec, ok := findRecord(out, msg)
	if !ok {
		t.Fatalf("no %q record in:\n%s", msg, out)
	}
	return rec
}

// listenAddr returns the non-empty string field key of log's first
// record with message msg: where a listener started on port 0 says it
// bound.
func listenAddr(log, msg, key string) (string, error) {
	rec, ok := findRecord(log, msg)
	if !ok {
		return "", fmt.Errorf("no %q line in the log yet", msg)
	}
	if addr, _ := rec[key].(string); addr != "" {
		return addr, nil
	}
	return "", fmt.Errorf("%q record without a %s: %v", msg, key, rec)
}

func TestTextRecord(t *testing.T) {
	rec, ok := textRecord(`time=2026-12-02T12:00:00Z level=INFO msg="server started" https="" path="a \"b\" c" n=3`)
	if !ok {
		t.Fatal("textRecord refused a slog text line")
	}
	for k, want := range map[string]string{"level": "INFO", "msg": "server started", "https": "", "path": `a "b" c`, "n": "3"} {
		if rec[k] != want {
			t.Errorf("%s = %q, want %q", k, rec[k], want)
		}
	}
	for _, line := range []string{"", "plain output", `msg="unterminated`, `=x`} {
		if rec, ok := textRecord(line); ok {
			t.Errorf("textRecord(%q) = %v, want no record", line, rec)
		}
	}
}
