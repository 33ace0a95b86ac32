package api

import "google.golang.org/grpc"

// Message size limits of every Loom connection, set explicitly on both
// ends so that neither falls back to gRPC's 4 MiB default.
const (
	// MaxRequestBytes is the largest message a client sends and a server
	// accepts: a submit with a script of MaxScriptBytes and a large
	// environment fits.
	MaxRequestBytes = 3 * MaxScriptBytes
	// MaxResponseBytes is the largest message a server sends and a client
	// accepts. Listings stay far below it: they carry no scripts or
	// environments and come in pages (ListJobsRequest.limit).
	MaxResponseBytes = 64 << 20
)

// ServerSizeOptions are a server's message size limits.
func ServerSizeOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxRequestBytes), grpc.MaxSendMsgSize(MaxResponseBytes)}
}

// ClientSizeOption is a client connection's message size limits.
func ClientSizeOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxResponseBytes), grpc.MaxCallSendMsgSize(MaxRequestBytes))
}
