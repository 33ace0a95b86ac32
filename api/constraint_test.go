package api

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The expressions are those of sbatch(1) for Slurm 22.05, -C/--constraint.
func TestParseConstraintMatches(t *testing.T) {
	tests := []struct {
		expr     string
		features string // the node's, comma-separated
		choice   int
		want     bool
	}{
		{"intel", "intel", -1, true},
		{"intel", "amd", -1, false},
		{"intel&gpu", "intel,gpu", -1, true},
		{"intel&gpu", "intel", -1, false},
		{"intel,gpu", "intel", -1, false}, // ',' is '&'
		{"intel|amd", "amd", -1, true},
		{"intel|amd", "arm", -1, false},
		// Left to right, no precedence: (a|b)&c.
		{"a|b&c", "a", -1, false},
		{"a|b&c", "a,c", -1, true},
		{"(a|b)&c", "b,c", -1, true},
		{"c&(a|b)", "c", -1, false},
		{"[rack1|rack2|rack3]", "rack2", -1, true},
		{"[rack1|rack2|rack3]", "rack2", 1, true},
		{"[rack1|rack2|rack3]", "rack2", 0, false},
		{"a100&[rack1|rack2]", "a100,rack1", 0, true},
		{"a100&[rack1|rack2]", "rack1", 0, false},
		{"[(a&b)|c]", "a,b", 0, true},
		{"[(a&b)|c]", "a", 0, false},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.expr)
		if err != nil {
			t.Errorf("ParseConstraint(%q) error %v", tt.expr, err)
			continue
		}
		has := strings.Split(tt.features, ",")
		if got := c.Matches(func(f string) bool { return slices.Contains(has, f) }, tt.choice); got != tt.want {
			t.Errorf("ParseConstraint(%q).Matches(%s, %d) = %v, want %v", tt.expr, tt.features, tt.choice, got, tt.want)
		}
	}
}

func TestParseConstraintShape(t *testing.T) {
	tests := []struct {
		expr    string
		choices int
		counts  bool
	}{
		{"a", 1, false},
		{"a&b|c", 1, false},
		{"[a|b|c]", 3, false},
		{"x&[a|b]", 2, false},
		{"graphics*4", 1, true},
		{"[rack1*2&rack2*4]", 1, true},
		{"[(rack1|rack2)*1&(rack3)*2]", 1, true},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.expr)
		if err != nil {
			t.Errorf("ParseConstraint(%q) error %v", tt.expr, err)
			continue
		}
		if c.Choices() != tt.choices || c.HasCounts() != tt.counts {
			t.Errorf("ParseConstraint(%q): Choices %d, HasCounts %v; want %d, %v", tt.expr, c.Choices(), c.HasCounts(), tt.choices, tt.counts)
		}
	}
}

func TestParseConstraintErrors(t *testing.T) {
	tests := []struct {
		expr string
		pos  int
		msg  string
	}{
		{"", 1, "a feature is missing"},
		{"&a", 1, "a feature must come before '&'"},
		{"a&", 2, "a feature must follow '&'"},
		{"a&&b", 3, "a feature must come before '&'"},
		{"a||b", 3, "a feature must come before '|'"},
		{"(a", 1, "'(' is not closed"},
		{"a)", 2, "')' has no opening partner"},
		{"[a|b", 1, "'[' is not closed"},
		{"[a|b]&[c|d]", 7, "only one [...] set is allowed"},
		{"((a))", 2, "parentheses do not nest"},
		{"(a*2)", 3, "a count is not allowed inside parentheses"},
		{"(a|[b])", 4, "a [...] set must not be inside parentheses or another set"},
		{"a*0", 3, "a count after '*' must be a positive number"},
		{"a*x", 3, "a count after '*' must be a positive number"},
		{"*2", 1, "a feature must come before '*'"},
		{"a b", 2, "blank in a feature name"},
		{"a()", 2, "unexpected '('"},
	}
	for _, tt := range tests {
		_, err := ParseConstraint(tt.expr)
		var ce *ConstraintError
		if !errors.As(err, &ce) {
			t.Errorf("ParseConstraint(%q) = %v, want a ConstraintError", tt.expr, err)
			continue
		}
		if ce.Pos != tt.pos || ce.Msg != tt.msg {
			t.Errorf("ParseConstraint(%q) = position %d: %s, want position %d: %s", tt.expr, ce.Pos, ce.Msg, tt.pos, tt.msg)
		}
	}
}

func TestNodeFeatures(t *testing.T) {
	n := &Node{Features: []string{"ib", "h100"}, Topology: &Topology{Gpus: []*GPU{
		{Model: "NVIDIA H100 80GB HBM3"}, {Model: "NVIDIA H100 80GB HBM3"}}}}
	if got := n.AllFeatures(); !slices.Equal(got, []string{"ib", "h100"}) {
		t.Errorf("AllFeatures() = %q, want [ib h100]", got)
	}
	n.Features = []string{"ib"}
	if got := n.AllFeatures(); !slices.Equal(got, []string{"ib", "h100"}) {
		t.Errorf("AllFeatures() = %q, want [ib h100] (h100 from the GPU model)", got)
	}
	if !n.HasGPUType("H100") || n.HasGPUType("a100") || (&Node{}).HasGPUType("h100") {
		t.Error("HasGPUType: want H100 on an H100 node, not a100, and nothing on a node without GPUs")
	}
	for model, want := range map[string]string{"NVIDIA A100-SXM4-80GB": "a100", "Tesla V100-SXM2-32GB": "v100", "NVIDIA L40S": "l40s"} {
		if got := GPUFeature(model); got != want {
			t.Errorf("GPUFeature(%q) = %q, want %q", model, got, want)
		}
	}
}
