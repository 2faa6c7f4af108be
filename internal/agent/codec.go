package agent

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// maxPooledMessage is the largest message the agent's client codec encodes
// or decodes through gRPC's shared buffer pool: two HTTP/2 frames' worth,
// which covers every message of an agent in steady state (renewals of a
// few SVIDs, JWT-SVIDs, a sync with few changes).
const maxPooledMessage = 32 << 10

// clientCodec is the gRPC codec of the agent's calls to the server: gRPC's
// own protobuf codec for messages up to maxPooledMessage, and for larger
// ones the same protobuf encoding into (or decoding from) a buffer of the
// message's exact size, collected like any allocation.
//
// gRPC's codec takes the buffer of every message from 32 KiB to 1 MiB from
// its pool's 1 MiB tier, and a pooled buffer outlives the GC that finds it
// unused (sync.Pool's victim cache). A fresh agent's large messages — a
// 500-SVID SignX509SVIDs response is 500-600 kB, its request of 500 CSRs
// about 150 kB, a sync page of 1,000 entries about 200 kB — each held a
// 1 MiB buffer, and with a few calls in flight the pool kept 4-5 MB that
// the GC counted as live during a 10,000-entry initial sync (heap profile,
// BENCHMARKS.md), and so let the heap grow by as much again before the next
// collection. Large messages are rare once the agent is in sync; decoding
// one copies it into an exact buffer as gRPC copies it into a pooled one,
// and protobuf copies its fields out, so the buffer is garbage at once.
type clientCodec struct {
	proto encoding.CodecV2
}

var _ encoding.CodecV2 = clientCodec{}

func newClientCodec() clientCodec {
	return clientCodec{proto: encoding.GetCodecV2(protoenc.Name)}
}

// Marshal encodes v, a protobuf message: up to maxPooledMessage with
// gRPC's codec (which sizes a small message once more), above it into a
// buffer of the size just computed, which the encoding reuses
// (UseCachedSize: no caller changes a message while it is sent).
func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("agent codec: cannot encode %T, want a protobuf message", v)
	}
	size := proto.Size(m)
	if size <= maxPooledMessage {
		return c.proto.Marshal(v)
	}
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(make([]byte, 0, size), m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
}

// Unmarshal decodes data into v, a protobuf message. The message does not
// alias data: protobuf copies bytes and strings out.
func (c clientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("agent codec: cannot decode into %T, want a protobuf message", v)
	}
	switch {
	case data.Len() <= maxPooledMessage:
		return c.proto.Unmarshal(data, v)
	case len(data) == 1:
		return proto.Unmarshal(data[0].ReadOnlyData(), m)
	default:
		return proto.Unmarshal(data.Materialize(), m)
	}
}

// Name is the codec's content subtype, protobuf's.
func (clientCodec) Name() string { return protoenc.Name }
