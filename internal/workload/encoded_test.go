package workload

import (
	"bytes"
	"testing"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// x509Response is a response with every field set and a map of several
// entries, built with the map filled in the given order.
func x509Response(order []string) *workloadpb.X509SVIDResponse {
	resp := &workloadpb.X509SVIDResponse{
		Svids: []*workloadpb.X509SVID{
			{SpiffeId: "spiffe://example.org/web", X509Svid: []byte("chain-1"), X509SvidKey: []byte("key-1"), Bundle: []byte("bundle"), Hint: "internal"},
			{SpiffeId: "spiffe://example.org/db", X509Svid: []byte("chain-2"), X509SvidKey: []byte("key-2"), Bundle: []byte("bundle")},
		},
		FederatedBundles: map[string][]byte{},
	}
	for _, td := range order {
		resp.FederatedBundles["spiffe://"+td] = []byte("bundle of " + td)
	}
	return resp
}

func TestPreparedDecodesToMessage(t *testing.T) {
	msg := x509Response([]string{"a.example", "b.example", "c.example"})
	p, err := prepare(msg)
	if err != nil {
		t.Fatal(err)
	}
	var got workloadpb.X509SVIDResponse
	if err := proto.Unmarshal(p.enc.wire, &got); err != nil {
		t.Fatalf("decode prepared response: %v", err)
	}
	if !proto.Equal(&got, msg) {
		t.Errorf("prepared response decodes to %v, want %v", &got, msg)
	}

	// The codec sends the prepared bytes as they are, and any other
	// message as gRPC's protobuf codec does.
	c := newCodec()
	out, err := c.Marshal(p.enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Materialize(), p.enc.wire) {
		t.Error("codec.Marshal(encoded) is not the encoded bytes")
	}
	plain, err := c.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var viaCodec workloadpb.X509SVIDResponse
	if err := c.Unmarshal(plain, &viaCodec); err != nil {
		t.Fatalf("codec.Unmarshal: %v", err)
	}
	plain.Free()
	if !proto.Equal(&viaCodec, msg) {
		t.Errorf("codec round trip = %v, want %v", &viaCodec, msg)
	}
	if c.Name() != "proto" {
		t.Errorf("codec.Name() = %q, want proto (the content subtype must not change)", c.Name())
	}
}

// TestPreparedSame checks the comparison watch uses to decide whether to
// resend: equal messages compare the same whatever order their maps were
// filled in, and any difference shows.
func TestPreparedSame(t *testing.T) {
	mustPrepare := func(m *workloadpb.X509SVIDResponse) prepared[*workloadpb.X509SVIDResponse] {
		t.Helper()
		p, err := prepare(m)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := mustPrepare(x509Response([]string{"a.example", "b.example", "c.example"}))
	b := mustPrepare(x509Response([]string{"c.example", "a.example", "b.example"}))
	if !a.same(b) {
		t.Error("equal responses with maps filled in another order: not the same encoding")
	}
	changed := x509Response([]string{"a.example", "b.example", "c.example"})
	changed.Svids[1].X509Svid = []byte("chain-3") // a rotation
	if a.same(mustPrepare(changed)) {
		t.Error("responses with different SVIDs: same encoding")
	}
	if a.same(prepared[*workloadpb.X509SVIDResponse]{}) {
		t.Error("a response is the same as none")
	}
}

func TestCodecDecodesRequests(t *testing.T) {
	req := &workloadpb.JWTSVIDRequest{Audience: []string{"a", "b"}, SpiffeId: "spiffe://example.org/web"}
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got workloadpb.JWTSVIDRequest
	if err := newCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, req) {
		t.Errorf("codec.Unmarshal = %v, want %v", &got, req)
	}
}
