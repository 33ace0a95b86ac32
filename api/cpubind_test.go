package api

import (
	"slices"
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
		{in: "threads", want: "threads"},
		{in: "sockets,verbose", want: "verbose,sockets"},
		{in: "ldoms", want: "ldoms"},
		{in: "rank", want: "rank"},
		{in: "map_cpu:0,1", want: "map_cpu:0,1"},
		{in: "verbose,map_cpu:3,0x10,quiet", want: "map_cpu:3,0x10"},
		{in: "mask_cpu:0x3,C", want: "mask_cpu:0x3,C"},
		{in: "map_cpu:0,mask_cpu:0x1", err: `"map_cpu" and "mask_cpu": give one binding`},
		{in: "map_cpu:", err: "map_cpu: empty entry"},
		{in: "map_cpu:a", err: `map_cpu: "a" is not a CPU number`},
		{in: "mask_cpu:0x0", err: `mask_cpu: "0x0" is not a non-zero hexadecimal CPU mask`},
		{in: "mask_cpu:zz", err: `mask_cpu: "zz" is not a non-zero`},
		{in: "map_ldom:0", err: `"map_ldom" is not implemented`},
		{in: "boards", err: `"boards" is not implemented`},
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

func TestCPUBindEntry(t *testing.T) {
	tests := []struct {
		in    string
		local uint32
		want  []uint32
	}{
		{"map_cpu:3,0x10", 0, []uint32{3}},
		{"map_cpu:3,0x10", 1, []uint32{16}},
		{"map_cpu:3,0x10", 2, []uint32{3}},
		{"mask_cpu:0x5,c", 0, []uint32{0, 2}},
		{"mask_cpu:0x5,c", 1, []uint32{2, 3}},
		{"cores", 0, nil},
	}
	for _, tt := range tests {
		b, err := ParseCPUBind(tt.in)
		if err != nil {
			t.Fatalf("ParseCPUBind(%q): %v", tt.in, err)
		}
		if got := b.Entry(tt.local); !slices.Equal(got, tt.want) {
			t.Errorf("ParseCPUBind(%q).Entry(%d) = %v, want %v", tt.in, tt.local, got, tt.want)
		}
	}
}

func TestFormatCores(t *testing.T) {
	for _, tt := range []struct {
		in   []uint32
		want string
	}{
		{nil, ""},
		{[]uint32{3}, "3"},
		{[]uint32{8, 0, 1, 2, 3, 10, 11, 2}, "0-3,8,10-11"},
	} {
		if got := FormatCores(tt.in); got != tt.want {
			t.Errorf("FormatCores(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestChooseCores(t *testing.T) {
	free := []uint32{0, 1, 2, 5, 6, 7}
	for _, tt := range []struct {
		near []uint32
		n    int
		want []uint32
	}{
		{nil, 2, []uint32{0, 1}},
		{[]uint32{4, 5, 6, 7}, 2, []uint32{5, 6}},
		{[]uint32{6, 7}, 4, []uint32{0, 1, 6, 7}},
		{nil, 7, nil},
		{nil, 0, nil},
	} {
		if got := ChooseCores(free, tt.near, tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("ChooseCores(%v, %v, %d) = %v, want %v", free, tt.near, tt.n, got, tt.want)
		}
	}
}
