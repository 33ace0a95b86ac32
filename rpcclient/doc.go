// Package rpcclient is the client side of gRPC's wire protocol, written on
// the standard library and golang.org/x/net/http2/hpack so that the CLI
// (cmd/loom) does not link grpc-go, whose package initialisation and dial
// machinery cost every short-lived command several milliseconds.
//
// It speaks HTTP/2 with prior knowledge on unix sockets and plaintext TCP,
// and over TLS with ALPN "h2". A call is one stream: HEADERS with :path,
// content-type application/grpc, te: trailers, grpc-timeout from the
// context's deadline and the caller's metadata; length-prefixed protobuf
// messages in DATA frames, within the server's flow-control windows; and
// the status in the trailers (grpc-status, percent-decoded grpc-message),
// returned as an *Error whose Code is numbered as gRPC's codes. A
// cancelled context resets the stream (RST_STREAM CANCEL). The client
// answers PING and SETTINGS, credits back what it reads (WINDOW_UPDATE)
// so that tens of MB stream at full speed, and after GOAWAY starts new
// calls on a new connection.
//
// The typed stubs are generated into api/apiclient by make proto. The
// tests run this package against grpc-go's server.
package rpcclient
