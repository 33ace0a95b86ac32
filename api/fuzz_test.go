package api

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzHostlist: a hostlist that expands compresses to one that expands to
// the same names, sorted and without duplicates; a failure is a
// HostlistError or ErrHostlistTooLong; no expansion exceeds
// MaxHostlistHosts.
func FuzzHostlist(f *testing.F) {
	for _, s := range []string{"node[1-3,5]", "gpu[001-032]", "r[1-2]n[1-2]", "a[1-2],b5", "x0,x00,x1", "n[9-11]", "[1-3]", "", "a]", "n[1-4294967296]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		names, err := ExpandHostlist(expr)
		if err != nil {
			var he *HostlistError
			if !errors.As(err, &he) && !errors.Is(err, ErrHostlistTooLong) {
				t.Fatalf("ExpandHostlist(%q) error %v (%T), want a HostlistError or ErrHostlistTooLong", expr, err, err)
			}
			return
		}
		if len(names) > MaxHostlistHosts {
			t.Fatalf("ExpandHostlist(%q) = %d names, more than %d", expr, len(names), MaxHostlistHosts)
		}
		if len(names) > 10000 {
			return // correct, but too slow to compress on every run
		}
		for _, n := range names {
			if n == "" {
				t.Fatalf("ExpandHostlist(%q) holds an empty name: %q", expr, names)
			}
		}
		c := CompressHostlist(names)
		again, err := ExpandHostlist(c)
		if err != nil {
			t.Fatalf("ExpandHostlist(CompressHostlist(ExpandHostlist(%q)) = %q): %v", expr, c, err)
		}
		want := slices.Clone(names)
		slices.Sort(want)
		want = slices.Compact(want)
		slices.Sort(again)
		if !slices.Equal(again, want) {
			t.Fatalf("ExpandHostlist(CompressHostlist(ExpandHostlist(%q)) = %q) = %q, want %q", expr, c, again, want)
		}
		if c2 := CompressHostlist(again); c2 != c {
			t.Fatalf("CompressHostlist is not stable for %q: %q then %q", expr, c, c2)
		}
	})
}

// FuzzParseArray: an --array expression yields at most MaxArrayTasks
// distinct indexes, and those indexes written out as a list (when no longer
// than MaxArrayParts) parse back to the same ones.
func FuzzParseArray(f *testing.F) {
	for _, s := range []string{"0-99%8", "1,3,5-7", "0-15:4", "0-10000", "0-4294967295", "7", "1-0", "%", "0-3:0", "1,1,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		idx, err := ParseArray(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--array=") {
				t.Fatalf("ParseArray(%q) error %q does not name the option", s, err)
			}
			return
		}
		if len(idx) > MaxArrayTasks {
			t.Fatalf("ParseArray(%q) = %d tasks, more than %d", s, len(idx), MaxArrayTasks)
		}
		if len(idx) == 0 {
			t.Fatalf("ParseArray(%q) = no tasks and no error", s)
		}
		seen := map[uint32]bool{}
		parts := make([]string, len(idx))
		for i, x := range idx {
			if seen[x] {
				t.Fatalf("ParseArray(%q) repeats task %d", s, x)
			}
			seen[x] = true
			parts[i] = strconv.FormatUint(uint64(x), 10)
		}
		if len(parts) > MaxArrayParts {
			return // as a list it is over the parts limit
		}
		list := strings.Join(parts, ",")
		again, err := ParseArray(list)
		if err != nil || !slices.Equal(again, idx) {
			t.Fatalf("ParseArray(%q) = %v, %v; want %v as from %q", list, again, err, idx, s)
		}
	})
}

// FuzzParseSlurmTime: a parsed duration is Unlimited or 1 s to 100
// years, and formatting it as squeue does and parsing that gives it back.
func FuzzParseSlurmTime(f *testing.F) {
	for _, s := range []string{"90", "1:30", "2:03:04", "1-02", "1-02:03", "1-02:03:04", "UNLIMITED", "infinite", "0", "36500-00", "-1", "1-24", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		secs, err := ParseSlurmTime(s)
		if err != nil {
			var te *TimeFormatError
			if !errors.As(err, &te) || te.Input != s {
				t.Fatalf("ParseSlurmTime(%q) error %v, want a TimeFormatError naming the input", s, err)
			}
			return
		}
		if secs != Unlimited && (secs < 1 || secs > maxSlurmSeconds) {
			t.Fatalf("ParseSlurmTime(%q) = %d, want Unlimited or 1..%d", s, secs, maxSlurmSeconds)
		}
		formatted := FormatSlurmDuration(secs)
		again, err := ParseSlurmTime(formatted)
		if err != nil || again != secs {
			t.Fatalf("ParseSlurmTime(FormatSlurmDuration(%d) = %q) = %d, %v; want %d (from %q)", secs, formatted, again, err, secs, s)
		}
	})
}

// FuzzParseConstraint: a --constraint either parses, and then every node
// either meets it or not under every choice, with any choice meeting it
// implying the union does; or fails with an error at a position within
// the expression (one past its end at most).
func FuzzParseConstraint(f *testing.F) {
	for _, s := range []string{"a", "a&b|c", "(a|b)&c", "[a|b|c]", "x&[a|(b&c)]", "a*2", "[a*2&b*4]", "a&&b", "((a))", "[a|b", "a,b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConstraint(s)
		if err != nil {
			var ce *ConstraintError
			if !errors.As(err, &ce) || ce.Pos < 1 || ce.Pos > len(s)+1 {
				t.Fatalf("ParseConstraint(%q) error %v has no position within it", s, err)
			}
			return
		}
		if c.Choices() < 1 {
			t.Fatalf("ParseConstraint(%q) has %d choices", s, c.Choices())
		}
		for _, has := range []func(string) bool{
			func(string) bool { return true },
			func(string) bool { return false },
			func(f string) bool { return len(f)%2 == 0 },
		} {
			union := c.Matches(has, -1)
			for k := range c.Choices() {
				if c.Matches(has, k) && !union {
					t.Fatalf("ParseConstraint(%q): choice %d matches but the union does not", s, k)
				}
			}
		}
	})
}
