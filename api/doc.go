// Package api holds Loom's protobuf messages and gRPC services (loom.proto
// and its generated code) and the small hand-written rules on those types:
// spec validation and normalization, job-state codes and hostlists. It
// imports no other Loom package. The names of the variables every rank
// receives live in package rankenv, which needs no gRPC.
package api
