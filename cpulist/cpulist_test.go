package cpulist

import "testing"

func TestFormatParse(t *testing.T) {
	for _, c := range []struct {
		in   []int
		want string
	}{
		{nil, ""}, {[]int{3}, "3"}, {[]int{0, 1, 2, 3}, "0-3"}, {[]int{8, 0, 2, 1, 8}, "0-2,8"}, {[]int{1, 3, 5, 6}, "1,3,5-6"},
	} {
		got := Format(c.in)
		if got != c.want {
			t.Errorf("Format(%v) = %q, want %q", c.in, got, c.want)
		}
		back, err := Parse(got)
		if err != nil || Format(back) != c.want {
			t.Errorf("Parse(%q) = %v, %v; formats as %q", got, back, err, Format(back))
		}
	}
	for _, bad := range []string{"x", "3-1", "1-y"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", bad)
		}
	}
}

func TestFormatUint32(t *testing.T) {
	if got := Format([]uint32{11, 10, 8, 0, 1, 2, 3}); got != "0-3,8,10-11" {
		t.Errorf("Format = %q, want %q", got, "0-3,8,10-11")
	}
}
