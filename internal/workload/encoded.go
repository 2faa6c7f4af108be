package workload

import (
	"bytes"
	"fmt"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// encoded is a response message in its protobuf wire form. The server's
// codec sends it as it is, so a cached response shared by many callers is
// encoded once when it is built (once per SVID rotation or bundle change)
// instead of once per call. gRPC still frames it, and compresses it when a
// caller asked for compression, as it does any message.
type encoded struct {
	wire []byte // read-only once built
}

// prepared is a response message together with its encoding.
type prepared[M proto.Message] struct {
	msg M // for logging; never modified once prepared
	enc *encoded
}

// wireOptions encode maps in key order, so that equal messages have equal
// encodings (watch compares encodings to decide whether to resend).
var wireOptions = proto.MarshalOptions{Deterministic: true}

// prepare encodes m for sending.
func prepare[M proto.Message](m M) (prepared[M], error) {
	wire, err := wireOptions.Marshal(m)
	if err != nil {
		return prepared[M]{}, fmt.Errorf("encode %T: %w", m, err)
	}
	return prepared[M]{msg: m, enc: &encoded{wire: wire}}, nil
}

// prepareBuilt prepares the message a response builder returned, or
// passes its error on.
func prepareBuilt[M proto.Message](m M, err error) (prepared[M], error) {
	if err != nil {
		return prepared[M]{}, err
	}
	return prepare(m)
}

// same reports whether p and q encode the same message.
func (p prepared[M]) same(q prepared[M]) bool {
	return p.enc != nil && q.enc != nil && bytes.Equal(p.enc.wire, q.enc.wire)
}

// codec is the gRPC codec of every service on the Workload API socket:
// gRPC's own protobuf codec, except that an *encoded message is sent as
// its bytes. Requests are decoded by the protobuf codec unchanged.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec {
	return codec{proto: encoding.GetCodecV2(protoenc.Name)}
}

// Marshal returns the wire form of v: an *encoded message's bytes (shared,
// not copied: gRPC only reads them, and freeing a mem.SliceBuffer does
// nothing), or what the protobuf codec makes of any other message.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(e.wire)}, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal decodes a request with the protobuf codec.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// Name is the protobuf codec's: the content subtype is unchanged.
func (codec) Name() string { return protoenc.Name }
