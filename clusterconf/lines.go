package clusterconf

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
)

var (
	headerRE = regexp.MustCompile(`^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?`)
	keyRE    = regexp.MustCompile(`^\s*"?([A-Za-z0-9_-]+)"?\s*[=.]`)
)

// lineIndex finds where keys are written, for error messages: a key is
// named by its table ("" at the top, "scheduler", "qos#1" for the second
// [[qos]] table) and its name.
type lineIndex struct {
	keys   map[string]int // "table\x00key" -> line
	tables map[string]int // table -> line of its header
}

func indexLines(text string) *lineIndex {
	ix := &lineIndex{keys: map[string]int{}, tables: map[string]int{}}
	counts := map[string]int{}
	table := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := headerRE.FindStringSubmatch(line); m != nil {
			table = m[2]
			if m[1] == "[[" {
				table = m[2] + "#" + strconv.Itoa(counts[m[2]])
				counts[m[2]]++
			}
			ix.tables[table] = n
			continue
		}
		if m := keyRE.FindStringSubmatch(line); m != nil {
			k := table + "\x00" + m[1]
			if _, seen := ix.keys[k]; !seen {
				ix.keys[k] = n
			}
		}
	}
	return ix
}

// line returns the line of key in table, else of the table's header, else 0.
func (ix *lineIndex) line(table, key string) int {
	if n, ok := ix.keys[table+"\x00"+key]; ok {
		return n
	}
	if n, ok := ix.tables[table]; ok {
		return n
	}
	// A sub-table written inline or as [a.b]: look for its own header.
	if n, ok := ix.tables[table+"."+key]; ok {
		return n
	}
	return 0
}
