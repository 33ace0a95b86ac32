package rpcclient

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// Code is a call's status code, numbered as gRPC numbers them on the wire
// (grpc-status), so that a server's codes.NotFound is NotFound here.
type Code uint32

// The status codes.
const (
	OK Code = iota
	Canceled
	Unknown
	InvalidArgument
	DeadlineExceeded
	NotFound
	AlreadyExists
	PermissionDenied
	ResourceExhausted
	FailedPrecondition
	Aborted
	OutOfRange
	Unimplemented
	Internal
	Unavailable
	DataLoss
	Unauthenticated
)

var codeNames = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

// String is the code's name as gRPC spells it ("NotFound").
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Error is a call that ended with a status other than OK: the server's
// grpc-status and grpc-message, or one this side gives (a connection
// that failed, an expired deadline).
type Error struct {
	Code    Code
	Message string
}

// Error reads as gRPC's status errors do, so that logs and messages look
// the same whichever side made them.
func (e *Error) Error() string {
	return "rpc error: code = " + e.Code.String() + " desc = " + e.Message
}

// errorf is an *Error with code and msg.
func errorf(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// CodeOf is err's status code: OK for nil, the code of an *Error in its
// chain, else Unknown.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Unknown
}

// MessageOf is err's status message: an *Error's Message, else the whole
// error's text.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// contextError is the status of a call whose context ended.
func contextError(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errorf(DeadlineExceeded, err.Error())
	}
	return errorf(Canceled, err.Error())
}

// httpStatusCode maps an HTTP status that came without grpc-status (a
// proxy, a server that is not gRPC) to a code, as gRPC does.
func httpStatusCode(status int) Code {
	switch status {
	case 400:
		return Internal
	case 401:
		return Unauthenticated
	case 403:
		return PermissionDenied
	case 404:
		return Unimplemented
	case 429, 502, 503, 504:
		return Unavailable
	}
	return Unknown
}

// rstStreamCode maps an HTTP/2 RST_STREAM error code to a status code.
func rstStreamCode(h2code uint32) Code {
	switch h2code {
	case 0x7: // REFUSED_STREAM: the server did not start it; safe to retry
		return Unavailable
	case 0x8: // CANCEL
		return Canceled
	case 0xb: // ENHANCE_YOUR_CALM
		return ResourceExhausted
	case 0xc: // INADEQUATE_SECURITY
		return PermissionDenied
	}
	return Internal
}

// decodeMessage undoes grpc-message's percent-encoding; a malformed
// escape is kept as it is.
func decodeMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
