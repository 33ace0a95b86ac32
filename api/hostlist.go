package api

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxHostlistHosts bounds what ExpandHostlist will produce, so that a typo
// such as node[1-100000000] is an error rather than an out-of-memory.
const MaxHostlistHosts = 1 << 20

// ErrHostlistTooLong is returned when a hostlist expands to more than
// MaxHostlistHosts names.
var ErrHostlistTooLong = errors.New("hostlist: expands to more than " + strconv.Itoa(MaxHostlistHosts) + " hosts")

// HostlistError is a malformed hostlist expression.
type HostlistError struct {
	Expr string // the whole expression
	Msg  string
}

func (e *HostlistError) Error() string {
	return fmt.Sprintf("hostlist %q: %s", e.Expr, e.Msg)
}

// hostName is a host name split into a prefix and a trailing decimal
// number, the unit Slurm's hostlist compresses.
type hostName struct {
	prefix string
	digits string // "" when the name does not end in a digit
	num    uint64
}

func splitHostName(name string) hostName {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	h := hostName{prefix: name[:i], digits: name[i:]}
	if h.digits == "" {
		return h
	}
	n, err := strconv.ParseUint(h.digits, 10, 64)
	if err != nil || len(h.digits) > 18 {
		// Too long to be a range index: treat the whole name as opaque.
		return hostName{prefix: name}
	}
	h.num = n
	return h
}

// padWidth is the zero-padding a host's number needs: its digit count when
// it has a leading zero, else 0 (no padding).
func (h hostName) padWidth() int {
	if len(h.digits) > 1 && h.digits[0] == '0' {
		return len(h.digits)
	}
	return 0
}

func formatHostNum(n uint64, width int) string {
	return fmt.Sprintf("%0*d", width, n)
}

// CompressHostlist returns Slurm's compact form of names: sorted, duplicates
// dropped, and names that share a prefix and end in consecutive numbers
// folded into brackets: ["node1","node2","node3","node5"] is "node[1-3,5]",
// zero padding is kept ("gpu[001-032]"), and different prefixes are joined
// with commas ("a[1-3],b5").
func CompressHostlist(names []string) string {
	hosts := make([]hostName, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		hosts = append(hosts, splitHostName(n))
	}
	sort.Slice(hosts, func(i, j int) bool {
		a, b := hosts[i], hosts[j]
		if a.prefix != b.prefix {
			return a.prefix < b.prefix
		}
		if (a.digits == "") != (b.digits == "") {
			return a.digits == ""
		}
		if a.num != b.num {
			return a.num < b.num
		}
		return a.digits < b.digits
	})

	var out []string
	for i := 0; i < len(hosts); {
		h := hosts[i]
		if h.digits == "" {
			out = append(out, h.prefix)
			i++
			continue
		}
		// One bracket for every numbered host with this prefix.
		var ranges []string
		count := 0
		j := i
		for j < len(hosts) && hosts[j].prefix == h.prefix && hosts[j].digits != "" {
			first := hosts[j]
			width := first.padWidth()
			last := first
			k := j + 1
			for k < len(hosts) && hosts[k].prefix == h.prefix && hosts[k].digits != "" &&
				hosts[k].num == last.num+1 && formatHostNum(hosts[k].num, width) == hosts[k].digits {
				last = hosts[k]
				k++
			}
			if last.num == first.num {
				ranges = append(ranges, first.digits)
			} else {
				ranges = append(ranges, first.digits+"-"+formatHostNum(last.num, width))
			}
			count += k - j
			j = k
		}
		if count == 1 {
			out = append(out, h.prefix+ranges[0])
		} else {
			out = append(out, h.prefix+"["+strings.Join(ranges, ",")+"]")
		}
		i = j
	}
	return strings.Join(out, ",")
}

// ExpandHostlist returns the names a Slurm hostlist expression stands for,
// in the order written: "node[1-3,5]" is node1 node2 node3 node5,
// "gpu[001-003]" keeps the padding of the range's lower bound, several
// brackets multiply ("r[1-2]n[1-2]" is r1n1 r1n2 r2n1 r2n2), and
// comma-separated terms are concatenated ("a[1-2],b5"). Duplicates are kept.
// The empty string expands to no names.
func ExpandHostlist(expr string) ([]string, error) {
	var out []string
	for _, term := range splitTopLevel(expr) {
		term = strings.TrimSpace(term)
		if term == "" {
			if strings.TrimSpace(expr) == "" {
				return nil, nil
			}
			return nil, &HostlistError{Expr: expr, Msg: "empty host name"}
		}
		names, err := expandTerm(expr, term, MaxHostlistHosts-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

// splitTopLevel splits expr at commas outside brackets.
func splitTopLevel(expr string) []string {
	var terms []string
	depth, start := 0, 0
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				terms = append(terms, expr[start:i])
				start = i + 1
			}
		}
	}
	return append(terms, expr[start:])
}

// expandTerm expands one comma-free (at top level) term such as
// "rack[1-2]-gpu[01-04]".
func expandTerm(expr, term string, limit int) ([]string, error) {
	names := []string{""}
	rest := term
	for rest != "" {
		open := strings.IndexByte(rest, '[')
		if open < 0 {
			if strings.IndexByte(rest, ']') >= 0 {
				return nil, &HostlistError{Expr: expr, Msg: "unbalanced ']'"}
			}
			for i := range names {
				names[i] += rest
			}
			break
		}
		lit := rest[:open]
		if strings.IndexByte(lit, ']') >= 0 {
			return nil, &HostlistError{Expr: expr, Msg: "unbalanced ']'"}
		}
		closeAt := strings.IndexByte(rest[open:], ']')
		if closeAt < 0 {
			return nil, &HostlistError{Expr: expr, Msg: "missing ']'"}
		}
		inner := rest[open+1 : open+closeAt]
		if strings.IndexByte(inner, '[') >= 0 {
			return nil, &HostlistError{Expr: expr, Msg: "nested '['"}
		}
		nums, err := expandRanges(expr, inner, limit)
		if err != nil {
			return nil, err
		}
		if len(names)*len(nums) > limit {
			return nil, ErrHostlistTooLong
		}
		next := make([]string, 0, len(names)*len(nums))
		for _, n := range names {
			for _, num := range nums {
				next = append(next, n+lit+num)
			}
		}
		names = next
		rest = rest[open+closeAt+1:]
	}
	if len(names) > limit {
		return nil, ErrHostlistTooLong
	}
	return names, nil
}

// expandRanges expands the inside of a bracket, "1-3,5" or "001-032".
func expandRanges(expr, inner string, limit int) ([]string, error) {
	if strings.TrimSpace(inner) == "" {
		return nil, &HostlistError{Expr: expr, Msg: "empty brackets"}
	}
	var out []string
	for _, r := range strings.Split(inner, ",") {
		r = strings.TrimSpace(r)
		lo, hi, isRange := strings.Cut(r, "-")
		loN, err := parseHostNum(expr, lo)
		if err != nil {
			return nil, err
		}
		if !isRange {
			out = append(out, lo)
			continue
		}
		hiN, err := parseHostNum(expr, hi)
		if err != nil {
			return nil, err
		}
		if hiN < loN {
			return nil, &HostlistError{Expr: expr, Msg: fmt.Sprintf("range %q goes down", r)}
		}
		if hiN-loN >= uint64(limit-len(out)) {
			return nil, ErrHostlistTooLong
		}
		width := 0
		if len(lo) > 1 && lo[0] == '0' || len(lo) == len(hi) {
			width = len(lo)
		}
		for n := loN; n <= hiN; n++ {
			out = append(out, formatHostNum(n, width))
		}
	}
	return out, nil
}

func parseHostNum(expr, s string) (uint64, error) {
	if s == "" {
		return 0, &HostlistError{Expr: expr, Msg: "empty number in range"}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &HostlistError{Expr: expr, Msg: fmt.Sprintf("%q is not a number", s)}
		}
	}
	if len(s) > 18 {
		return 0, &HostlistError{Expr: expr, Msg: fmt.Sprintf("number %q is too long", s)}
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n, nil
}
