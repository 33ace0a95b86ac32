package api

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCompressHostlist(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		want  string
	}{
		{"empty", nil, ""},
		{"single", []string{"node1"}, "node1"},
		{"no number", []string{"login"}, "login"},
		{"range with gap", []string{"node1", "node2", "node3", "node5"}, "node[1-3,5]"},
		{"unsorted and duplicated", []string{"node3", "node1", "node2", "node1"}, "node[1-3]"},
		{"zero padded", []string{"gpu001", "gpu002", "gpu003", "gpu010"}, "gpu[001-003,010]"},
		{"padded crosses width", []string{"gpu098", "gpu099", "gpu100"}, "gpu[098-100]"},
		{"two prefixes", []string{"b5", "a1", "a2", "a3"}, "a[1-3],b5"},
		{"different padding", []string{"n1", "n01"}, "n[01,1]"},
		{"unpadded crosses decade", []string{"n9", "n10", "n11"}, "n[9-11]"},
		{"mixed named and numbered", []string{"login", "node2", "node1"}, "login,node[1-2]"},
		{"number inside name", []string{"r1n1", "r1n2", "r2n1"}, "r1n[1-2],r2n1"},
		{"zero", []string{"n0", "n1"}, "n[0-1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CompressHostlist(tt.hosts); got != tt.want {
				t.Errorf("CompressHostlist(%q) = %q, want %q", tt.hosts, got, tt.want)
			}
		})
	}
}

func TestExpandHostlist(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"", nil},
		{"node1", []string{"node1"}},
		{"node[1-3,5]", []string{"node1", "node2", "node3", "node5"}},
		{"gpu[001-003]", []string{"gpu001", "gpu002", "gpu003"}},
		{"gpu[08-10]", []string{"gpu08", "gpu09", "gpu10"}},
		{"n[9-11]", []string{"n9", "n10", "n11"}},
		{"a[1-3],b5", []string{"a1", "a2", "a3", "b5"}},
		{"r[1-2]n[1-2]", []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
		{"rack[1-2]-gpu", []string{"rack1-gpu", "rack2-gpu"}},
		{"a, b", []string{"a", "b"}},
		{"node[3]", []string{"node3"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := ExpandHostlist(tt.expr)
			if err != nil {
				t.Fatalf("ExpandHostlist(%q) error: %v", tt.expr, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ExpandHostlist(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestExpandHostlistErrors(t *testing.T) {
	tests := []struct {
		expr    string
		wantMsg string
	}{
		{"node[1-3", "missing ']'"},
		{"node1-3]", "unbalanced ']'"},
		{"node[]", "empty brackets"},
		{"node[a-b]", `"a" is not a number`},
		{"node[5-3]", `range "5-3" goes down`},
		{"node[1-]", "empty number"},
		{"a,,b", "empty host name"},
		{"n[[1]]", "nested"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := ExpandHostlist(tt.expr)
			if err == nil {
				t.Fatalf("ExpandHostlist(%q) = %q, want error containing %q", tt.expr, got, tt.wantMsg)
			}
			var he *HostlistError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ExpandHostlist(%q) error = %v, want a HostlistError containing %q", tt.expr, err, tt.wantMsg)
			}
		})
	}
}

func TestExpandHostlistTooLong(t *testing.T) {
	for _, expr := range []string{"n[1-100000000]", "a[1-2000]b[1-2000]"} {
		if _, err := ExpandHostlist(expr); !errors.Is(err, ErrHostlistTooLong) {
			t.Errorf("ExpandHostlist(%q) error = %v, want ErrHostlistTooLong", expr, err)
		}
	}
}

// TestHostlistRoundTrip checks that expanding a compressed list gives the
// sorted, deduplicated input back.
func TestHostlistRoundTrip(t *testing.T) {
	inputs := [][]string{
		{"node1", "node2", "node3", "node5"},
		{"gpu001", "gpu002", "gpu099", "gpu100", "gpu101"},
		{"a1", "a2", "b", "c10", "c9", "c11"},
		{"n1", "n01", "n001"},
		{"x0", "x00", "x1"},
	}
	for _, in := range inputs {
		c := CompressHostlist(in)
		got, err := ExpandHostlist(c)
		if err != nil {
			t.Fatalf("ExpandHostlist(CompressHostlist(%q) = %q) error: %v", in, c, err)
		}
		want := slices.Clone(in)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("ExpandHostlist(CompressHostlist(%q) = %q) = %q, want %q", in, c, got, want)
		}
	}
}
