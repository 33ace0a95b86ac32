package api

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
