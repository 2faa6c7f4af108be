package docker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/container"
)

// fromMoby is what inspectResponse should hold for an answer moby's own
// type decodes as m.
func fromMoby(m container.InspectResponse) inspectResponse {
	out := inspectResponse{ID: m.ID, Image: m.Image}
	if m.Config != nil {
		out.Config = &inspectConfig{Image: m.Config.Image, Labels: m.Config.Labels, Env: m.Config.Env}
	}
	return out
}

// checkInspectMatchesMoby: body decodes into inspectResponse as it does
// into moby's container.InspectResponse (for the fields read), and is
// refused only when moby's type refuses it too.
func checkInspectMatchesMoby(t *testing.T, body []byte) {
	t.Helper()
	var m container.InspectResponse
	var got inspectResponse
	mobyErr, err := json.Unmarshal(body, &m), json.Unmarshal(body, &got)
	switch {
	case err != nil && mobyErr == nil:
		t.Fatalf("inspectResponse refuses %q (%v), moby's type accepts it", body, err)
	case err != nil || mobyErr != nil:
		return // moby refuses what declares fields inspectResponse skips
	}
	if diff := cmp.Diff(fromMoby(m), got); diff != "" {
		t.Errorf("decode %q (-moby +inspectResponse):\n%s", body, diff)
	}
}

// TestInspectMatchesMoby: a real engine's answer and edge cases decode as
// moby's types decode them.
func TestInspectMatchesMoby(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "inspect.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		string(data),
		`{"Id":"x","Config":{"Env":["A","=","A=B=C"],"Labels":{"":""}}}`,
		`{"ID":"x","image":"sha256:1","config":{"image":"nginx","labels":null,"env":null}}`,
		`{"Id":"x","Config":null}`,
		`{"Id":"x","Image":"a","Image":"b"}`,
		`{}`,
	} {
		checkInspectMatchesMoby(t, []byte(body))
	}
}

// FuzzInspectMatchesMoby is TestInspectMatchesMoby for arbitrary bodies.
func FuzzInspectMatchesMoby(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "inspect.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"Id":"x","Config":{"Env":["A","=","A=B=C"],"Labels":{"":""}}}`))
	f.Fuzz(func(t *testing.T, body []byte) { checkInspectMatchesMoby(t, body) })
}
