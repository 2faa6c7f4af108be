// Package commonv1 is the generated protobuf and gRPC code of proto/signet/common/v1
// (make generate). Domain code converts it to plain types in internal/apiconv.
package commonv1
