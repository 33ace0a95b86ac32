package cli

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// sinfoSortKey is one field of sinfo -S: a format letter, ascending
// unless prefixed by '-'. '#P' is the partitions' configured order.
type sinfoSortKey struct {
	letter  byte
	desc    bool
	ordinal bool // #P
}

// parseSinfoSort parses -S/--sort: comma-separated letters of sinfo's
// format (%P, %t, …) each optionally prefixed by '+' or '-', as Slurm
// reads it ("#P,-t" is its default).
func parseSinfoSort(s string) ([]sinfoSortKey, error) {
	var keys []sinfoSortKey
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		k := sinfoSortKey{}
		for len(f) > 1 && strings.ContainsRune("+-#", rune(f[0])) {
			switch f[0] {
			case '-':
				k.desc = true
			case '#':
				k.ordinal = true
			}
			f = f[1:]
		}
		if len(f) != 1 || sinfoFields[f[0]] == nil {
			return nil, fmt.Errorf("field %q is not a sinfo format letter (known: %%a %%b %%c %%C %%D %%E %%f %%G %%l %%m %%n %%N %%P %%R %%t %%T)", f)
		}
		k.letter = f[0]
		if k.ordinal && k.letter != 'P' {
			return nil, fmt.Errorf("'#' orders partitions only (#P)")
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// sortSinfoRows orders rows by keys; column gives the row cell a letter
// shows (-1: the view has no such column, which then does not order).
// Cells that are both numbers compare as numbers; #P keeps the order the
// rows came in for partitions, which is the configured one.
func sortSinfoRows(rows [][]string, keys []sinfoSortKey, column func(byte) int) {
	order := map[string]int{}
	if c := column('P'); c >= 0 {
		for _, r := range rows {
			if _, ok := order[r[c]]; !ok {
				order[r[c]] = len(order)
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b []string) int {
		for _, k := range keys {
			c := column(k.letter)
			if c < 0 {
				continue
			}
			var d int
			if k.ordinal {
				d = cmp.Compare(order[a[c]], order[b[c]])
			} else {
				d = compareCells(a[c], b[c])
			}
			if k.desc {
				d = -d
			}
			if d != 0 {
				return d
			}
		}
		return 0
	})
}

func compareCells(a, b string) int {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b)
}

// columnOf returns the column finder of a view whose columns show letters.
func columnOf(letters string) func(byte) int {
	return func(l byte) int {
		if l == 'T' {
			l = 't'
		}
		if l == 'n' {
			l = 'N'
		}
		return strings.IndexByte(letters, l)
	}
}
