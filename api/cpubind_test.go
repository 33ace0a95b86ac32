package api

import (
	"strings"
	"testing"
)

func TestParseCPUBind(t *testing.T) {
	tests := []struct {
		in, want, err string // want is String's form; err a substring of the error
	}{
		{in: "", want: "cores"},
		{in: "cores", want: "cores"},
		{in: "none", want: "none"},
		{in: "no", want: "none"},
		{in: "verbose,cores", want: "verbose,cores"},
		{in: "v,none,quiet", want: "none"},
		{in: "verbose", want: "verbose,cores"},
		{in: "none,no", want: "none"},
		{in: "none,cores", err: `"none" and "cores": give one binding`},
		{in: "map_cpu:0,1", err: `"map_cpu" is not implemented`},
		{in: "mask_cpu:0x1", err: `"mask_cpu" is not implemented`},
		{in: "sockets", err: `"sockets" is not implemented`},
		{in: "none,", err: "empty entry"},
	}
	for _, tt := range tests {
		b, err := ParseCPUBind(tt.in)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseCPUBind(%q) error = %v, want %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("ParseCPUBind(%q): %v", tt.in, err)
		case b.String() != tt.want:
			t.Errorf("ParseCPUBind(%q) = %s, want %s", tt.in, b, tt.want)
		}
	}
}
