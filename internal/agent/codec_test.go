package agent

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// signResponse is a SignX509SVIDsResponse of n results with chains of
// chainLen bytes: about (chainLen + 50) * n bytes encoded.
func signResponse(n, chainLen int) *agentv1.SignX509SVIDsResponse {
	resp := &agentv1.SignX509SVIDsResponse{}
	for i := range n {
		chain := make([]byte, chainLen)
		for j := range chain {
			chain[j] = byte(i + j)
		}
		resp.Results = append(resp.Results, &agentv1.X509SVIDResult{EntryId: fmt.Sprintf("entry-%05d", i), CertChain: [][]byte{chain}})
	}
	return resp
}

// split cuts b into a BufferSlice of chunks of at most size bytes, as
// gRPC hands over a message that spanned several HTTP/2 frames.
func split(b []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(size, len(b))
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return s
}

// TestClientCodec: the agent's codec encodes as gRPC's protobuf codec
// does, and decodes what it encodes, below and above maxPooledMessage and
// from one buffer or many; the decoded message does not alias the input.
func TestClientCodec(t *testing.T) {
	c := newClientCodec()
	grpcCodec := encoding.GetCodecV2(protoenc.Name)
	for _, tc := range []struct {
		name  string
		msg   *agentv1.SignX509SVIDsResponse
		chunk int
	}{
		{"empty", &agentv1.SignX509SVIDsResponse{}, 16 << 10},
		{"small one buffer", signResponse(3, 500), 16 << 10},
		{"small frames", signResponse(20, 500), 4 << 10},
		{"large one buffer", signResponse(200, 600), 1 << 20},
		{"large frames", signResponse(200, 600), 16 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := c.Marshal(tc.msg)
			if err != nil {
				t.Fatalf("Marshal() = %v", err)
			}
			wire := data.Materialize()
			data.Free()
			want, err := grpcCodec.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := wire, want.Materialize(); string(got) != string(want) {
				t.Fatalf("Marshal() = %d bytes, not gRPC's %d", len(got), len(want))
			}
			input := split(append([]byte(nil), wire...), tc.chunk)
			var got agentv1.SignX509SVIDsResponse
			if err := c.Unmarshal(input, &got); err != nil {
				t.Fatalf("Unmarshal() = %v", err)
			}
			if !proto.Equal(&got, tc.msg) {
				t.Fatalf("Unmarshal(Marshal(m)) differs from m")
			}
			for _, b := range input {
				clear(b.ReadOnlyData()) // a freed buffer is reused by gRPC
			}
			if !proto.Equal(&got, tc.msg) {
				t.Fatalf("the decoded message aliases the buffers it was decoded from")
			}
		})
	}
}

func TestClientCodecRefusesOtherTypes(t *testing.T) {
	c := newClientCodec()
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("Marshal(string) = nil error, want one")
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, new(int)); err == nil {
		t.Error("Unmarshal(*int) = nil error, want one")
	}
	if got := c.Name(); got != protoenc.Name {
		t.Errorf("Name() = %q, want %q", got, protoenc.Name)
	}
}

// FuzzClientCodecUnmarshal: whatever the server sends, however it is cut
// into buffers, the agent's codec decodes it as proto.Unmarshal does.
func FuzzClientCodecUnmarshal(f *testing.F) {
	for _, m := range []*agentv1.SignX509SVIDsResponse{signResponse(2, 40), signResponse(70, 500)} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(100))
		f.Add(b, uint16(0))
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint16(1))
	c := newClientCodec()
	f.Fuzz(func(t *testing.T, wire []byte, chunk uint16) {
		var want agentv1.SignX509SVIDsResponse
		wantErr := proto.Unmarshal(wire, &want)
		var got agentv1.SignX509SVIDsResponse
		err := c.Unmarshal(split(append([]byte(nil), wire...), max(1, int(chunk))), &got)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Unmarshal() = %v, proto.Unmarshal = %v", err, wantErr)
		}
		if err == nil && !proto.Equal(&got, &want) {
			t.Fatal("Unmarshal() decoded another message than proto.Unmarshal")
		}
	})
}
