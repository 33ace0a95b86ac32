package apirpc

import (
	"google.golang.org/grpc"

	"github.com/loomhpc/loom/api"
)

// ServerSizeOptions are a server's message size limits.
func ServerSizeOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(api.MaxRequestBytes), grpc.MaxSendMsgSize(api.MaxResponseBytes)}
}

// ClientSizeOption is a client connection's message size limits.
func ClientSizeOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(api.MaxResponseBytes), grpc.MaxCallSendMsgSize(api.MaxRequestBytes))
}
