// Package adminv1 is the generated protobuf and gRPC code of proto/signet/admin/v1
// (make generate). Domain code converts it to plain types in internal/apiconv.
package adminv1
