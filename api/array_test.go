package api

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseArray(t *testing.T) {
	tests := []struct {
		in   string
		want string // tasks, or "error: <substring>"
	}{
		{"0-3", "[0 1 2 3]"},
		{"1,3,5-7", "[1 3 5 6 7]"},
		{"0-99%8", "100 tasks"},
		{"0-15:4", "[0 4 8 12]"},
		{"3,3,3", "[3]"},
		{"7-3", "error: is not a range"},
		{"x", "error: is not a task index"},
		{"0-3%0", "error: limit"},
		{"0-20000", "error: more than"},
		// Brackets, as Slurm's _parse_array_tok strips them.
		{"[1]", "[1]"},
		{"[0-3,7]", "[0 1 2 3 7]"},
		{"[0-15:4]%2", "[0 4 8 12]"},
		{"[x]", "error: is not a task index"},
	}
	for _, tt := range tests {
		got, err := ParseArray(tt.in)
		var s string
		switch {
		case err != nil:
			s = "error: " + err.Error()
		case len(got) > 10:
			s = fmt.Sprintf("%d tasks", len(got))
		default:
			s = fmt.Sprint(got)
		}
		if strings.HasPrefix(tt.want, "error: ") {
			if err == nil || !strings.Contains(s, strings.TrimPrefix(tt.want, "error: ")) {
				t.Errorf("ParseArray(%q) = %s, want an error containing %q", tt.in, s, strings.TrimPrefix(tt.want, "error: "))
			}
			continue
		}
		if s != tt.want {
			t.Errorf("ParseArray(%q) = %s, want %s", tt.in, s, tt.want)
		}
	}
}

func TestValidateSpecArray(t *testing.T) {
	err := ValidateSpec(&JobSpec{Script: "x", Array: "5-1"})
	if err == nil || !strings.HasPrefix(err.Error(), "--array=5-1: ") {
		t.Fatalf("ValidateSpec(--array=5-1) = %v, want an error naming --array=5-1", err)
	}
}
