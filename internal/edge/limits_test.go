package edge_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/edge"
)

func TestHTTPServerBoundsBodies(t *testing.T) {
	srv := edge.HTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}), 1024)
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Fatalf("HTTPServer leaves a timeout or header bound unset: %+v", srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "http://" + ln.Addr().String() + "/"
	tests := []struct {
		name string
		body io.Reader
		want int
	}{
		{"small body", strings.NewReader("ok"), http.StatusNoContent},
		{"declared too large", strings.NewReader(strings.Repeat("x", 4096)), http.StatusRequestEntityTooLarge},
		{"streamed too large", io.MultiReader(strings.NewReader(strings.Repeat("x", 4096))), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(url, "text/plain", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("POST %s = %d, want %d", tt.name, resp.StatusCode, tt.want)
			}
		})
	}
}
