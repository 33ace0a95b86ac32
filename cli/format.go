package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// column is one column of a Slurm-style table, like a squeue/sinfo
// format field "%.9P": a width, truncating longer values, and right or
// left alignment.
type column struct {
	title string
	width int // > 0: fixed, values truncated; 0: unpadded; < 0: as wide as the widest value
	right bool
}

// writeTable prints rows under cols the way squeue and sinfo do: fields
// separated by one space, no trailing blanks.
func writeTable(w io.Writer, cols []column, rows [][]string, header bool) {
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = c.width
		if c.width < 0 {
			widths[i] = len(c.title)
			for _, r := range rows {
				widths[i] = max(widths[i], len(r[i]))
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cols {
			if i > 0 {
				b.WriteByte(' ')
			}
			v := cells[i]
			wd := widths[i]
			if wd > 0 && len(v) > wd {
				v = v[:wd]
			}
			switch {
			case wd <= 0:
				b.WriteString(v)
			case c.right:
				fmt.Fprintf(&b, "%*s", wd, v)
			default:
				fmt.Fprintf(&b, "%-*s", wd, v)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	if header {
		titles := make([]string, len(cols))
		for i, c := range cols {
			titles[i] = c.title
		}
		line(titles)
	}
	for _, r := range rows {
		line(r)
	}
}

// writeJSON prints m as protojson, indented, with a final newline.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// slurmTimestamp formats a Unix time in milliseconds as Slurm prints
// times ("2024-05-01T13:04:05", local time), or "Unknown" when unset.
func slurmTimestamp(ms int64, loc *time.Location) string {
	if ms <= 0 {
		return "Unknown"
	}
	return time.UnixMilli(ms).In(loc).Format("2006-01-02T15:04:05")
}

// clockDuration formats seconds as scontrol does: "00:05:00",
// "1-02:03:04", or "UNLIMITED" when negative.
func clockDuration(seconds int64) string {
	if seconds < 0 {
		return "UNLIMITED"
	}
	d, h, m, s := seconds/86400, seconds%86400/3600, seconds%3600/60, seconds%60
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
