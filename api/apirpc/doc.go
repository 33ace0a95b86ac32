// Package apirpc is the gRPC side of Loom's services (api/apirpc/service.proto):
// the generated servers and grpc-go clients that servers and agents use,
// and their message size options. The messages are in package api; the
// CLI calls the same services through api/apiclient and rpcclient, so
// that it does not link gRPC.
package apirpc
