package api

import (
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		sig  syscall.Signal
		lead int64
		ok   bool
	}{
		{"USR1@3", syscall.SIGUSR1, 3, true},
		{"B:SIGUSR2@90", syscall.SIGUSR2, 90, true},
		{"R:10", syscall.Signal(10), 60, true},
		{"TERM", syscall.SIGTERM, 60, true},
		{"FOO@3", 0, 0, false},
		{"USR1@x", 0, 0, false},
		{"99", 0, 0, false},
	}
	for _, tt := range tests {
		sig, lead, err := ParseSignal(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (sig != tt.sig || lead != tt.lead)) {
			t.Errorf("ParseSignal(%q) = %v, %d, %v; want %v, %d, ok=%v", tt.in, sig, lead, err, tt.sig, tt.lead, tt.ok)
		}
	}
}
