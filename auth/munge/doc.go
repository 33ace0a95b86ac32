// Package munge creates and checks MUNGE credentials through the site's
// munged, the daemon Slurm sites already run for the same purpose.
//
// A credential is an opaque string that names the uid and gid of the
// process that made it, sealed with the key every host of the cluster
// shares. Encode asks the local munged to make one around a payload;
// Decode asks the local munged to check one and returns the maker's uid,
// gid and payload. munged refuses a credential it has decoded before
// (replayed), one older than its time-to-live (expired), one from the
// future (rewound) and one sealed with another key (invalid); each refusal
// is an *Error that matches one of the package's sentinels with errors.Is.
//
// The package loads libmunge.so.2 with dlopen on first use instead of
// linking it, so a binary built with it starts, and fails only the calls
// that need MUNGE, on hosts where munge is not installed: there Encode and
// Decode return ErrNoLibrary. Without cgo every call returns ErrNoLibrary.
//
// StartTestDaemon, in testing.go, starts a private munged with its own key
// and socket for the tests of this and other packages.
package munge
