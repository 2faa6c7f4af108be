package sds

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sdsv1 "github.com/signet-id/signet/internal/gen/signet/envoysds/v1"
)

// serviceName is Envoy's SDS service.
const serviceName = "envoy.service.secret.v3.SecretDiscoveryService"

// secretServer is what serviceDesc dispatches to: Envoy's
// envoy.service.secret.v3.SecretDiscoveryService over sdsv1's messages.
type secretServer interface {
	FetchSecrets(context.Context, *sdsv1.DiscoveryRequest) (*sdsv1.DiscoveryResponse, error)
	StreamSecrets(grpc.BidiStreamingServer[sdsv1.DiscoveryRequest, sdsv1.DiscoveryResponse]) error
}

// serviceDesc is go-control-plane's SecretDiscoveryService_ServiceDesc
// (envoy/service/secret/v3/sds_grpc.pb.go) with sdsv1's messages: the same
// service and method names, so the same HTTP/2 paths
// (/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets). Its
// DeltaSecrets answers Unimplemented, as go-control-plane's
// UnimplementedSecretDiscoveryServiceServer does; the Delta messages are
// not described at all, since their request is never read.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*secretServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "FetchSecrets",
		Handler:    fetchSecretsHandler,
	}},
	Streams: []grpc.StreamDesc{
		{
			StreamName:    "DeltaSecrets",
			Handler:       deltaSecretsHandler,
			ServerStreams: true,
			ClientStreams: true,
		},
		{
			StreamName:    "StreamSecrets",
			Handler:       streamSecretsHandler,
			ServerStreams: true,
			ClientStreams: true,
		},
	},
	Metadata: "envoy/service/secret/v3/sds.proto",
}

func fetchSecretsHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(sdsv1.DiscoveryRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(secretServer).FetchSecrets(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/FetchSecrets"}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(secretServer).FetchSecrets(ctx, req.(*sdsv1.DiscoveryRequest))
	}
	return interceptor(ctx, in, info, handler)
}

func streamSecretsHandler(srv any, stream grpc.ServerStream) error {
	return srv.(secretServer).StreamSecrets(&grpc.GenericServerStream[sdsv1.DiscoveryRequest, sdsv1.DiscoveryResponse]{ServerStream: stream})
}

func deltaSecretsHandler(any, grpc.ServerStream) error {
	return status.Error(codes.Unimplemented, "method DeltaSecrets not implemented")
}
