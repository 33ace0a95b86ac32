// Package api holds Loom's protobuf messages and gRPC services (loom.proto
// and its generated code) and the small hand-written rules on those types:
// spec validation and normalization, job-state codes, hostlists and the
// rank environment contract. It imports no other Loom package.
package api
