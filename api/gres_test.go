package api

import (
	"maps"
	"strings"
	"testing"
)

// TestParseNodeGres: a node's counts as gres.conf(5) of Slurm 22.05 reads
// Count: a number with an optional K, M, G, T or P suffix multiplying it
// by 1024, 1048576, 1073741824, and so on; a name alone is one.
func TestParseNodeGres(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]uint64
		wantErr string
	}{
		{in: "", want: map[string]uint64{}},
		{in: "nvme:3600,license_x:4", want: map[string]uint64{"nvme": 3600, "license_x": 4}},
		{in: "lustre", want: map[string]uint64{"lustre": 1}},
		{in: "bandwidth:10G", want: map[string]uint64{"bandwidth": 10 * 1073741824}},
		{in: "a:1K,b:1M,c:1T,d:1P", want: map[string]uint64{"a": 1024, "b": 1048576, "c": 1 << 40, "d": 1 << 50}},
		{in: " nvme:3 , lic:1 ", want: map[string]uint64{"nvme": 3, "lic": 1}},
		{in: "nvme:3,nvme:4", wantErr: "nvme given twice"},
		{in: "gpu:8", wantErr: "gpu is not declared as a count"},
		{in: "nvme:fast:3", wantErr: "have no types"},
		{in: "nvme:", wantErr: `nvme: count "" is not a number`},
		{in: "nvme:-1", wantErr: `count "-1" is not a number`},
		{in: "9lives:1", wantErr: `generic resource name "9lives"`},
		{in: "a,b,", wantErr: "empty generic resource name"},
	}
	for _, tt := range tests {
		got, err := ParseNodeGres(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseNodeGres(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("ParseNodeGres(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatGres(t *testing.T) {
	if got := FormatGres(map[string]uint64{"nvme": 3600, "license_x": 4}); got != "license_x:4,nvme:3600" {
		t.Errorf("FormatGres = %q, want license_x:4,nvme:3600", got)
	}
	if got := FormatGres(nil); got != "" {
		t.Errorf("FormatGres(nil) = %q, want empty", got)
	}
}

func TestValidateSpecGres(t *testing.T) {
	tests := []struct {
		gres    map[string]uint64
		wantErr string
	}{
		{map[string]uint64{"nvme": 200}, ""},
		{map[string]uint64{"nvme": 0}, "--gres: nvme:0 asks for none"},
		{map[string]uint64{"gpu": 2}, "--gres: gpu is not declared as a count"},
		{map[string]uint64{"a b": 1}, `--gres: generic resource name "a b"`},
	}
	for _, tt := range tests {
		err := ValidateSpec(&JobSpec{Script: "x", GresPerNode: tt.gres})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateSpec(gres %v) = %v, want nil", tt.gres, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidateSpec(gres %v) = %v, want an error containing %q", tt.gres, err, tt.wantErr)
		}
	}
}

func TestCheckNodeGres(t *testing.T) {
	if err := CheckNodeGres(map[string]uint64{"nvme": 3600, "license_x": 4}); err != nil {
		t.Errorf("CheckNodeGres(nvme, license_x) = %v", err)
	}
	if err := CheckNodeGres(map[string]uint64{"gpu": 8}); err == nil {
		t.Errorf("CheckNodeGres(gpu:8) = nil, want a refusal")
	}
	if err := CheckNodeGres(map[string]uint64{"a,b": 1}); err == nil {
		t.Errorf("CheckNodeGres(a,b) = nil, want a refusal")
	}
}
