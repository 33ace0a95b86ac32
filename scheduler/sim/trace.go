package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TraceJob is one job of a trace.
type TraceJob struct {
	Submit   time.Time
	Duration time.Duration
	GPUs     int
	User     string
	VC       string // virtual cluster (Philly's "cluster" column); "" for one cluster
	Account  string // charged for fair share; "" charges the user
	Name     string // the job's name
	Status   string // how it ended in the trace (COMPLETED, FAILED, ...)
}

// Columns names the trace's columns for each field. A trace gives either
// Duration or both Start and End (the duration is End − Start).
type Columns struct {
	Submit, Duration, GPUs, User, VC string
	Start, End                       string
	Account, Name, Status            string
	// Delimiter separates the fields; 0 means a comma (sacct --parsable2
	// uses '|').
	Delimiter rune
}

// PhillyColumns are the columns of the Helios project's philly.csv.
var PhillyColumns = Columns{Submit: "timestamp", Duration: "duration", GPUs: "num_gpus", VC: "cluster"}

// ParseColumns reads "--columns submit=a,duration=b,gpus=c[,user=d][,vc=e]"
// (start=COL,end=COL may stand for duration; account, name and status are
// optional too).
func ParseColumns(s string) (Columns, error) {
	var c Columns
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return c, fmt.Errorf("--columns: %q is not field=column", kv)
		}
		switch k {
		case "submit":
			c.Submit = v
		case "duration":
			c.Duration = v
		case "gpus":
			c.GPUs = v
		case "user":
			c.User = v
		case "vc":
			c.VC = v
		case "start":
			c.Start = v
		case "end":
			c.End = v
		case "account":
			c.Account = v
		case "name":
			c.Name = v
		case "status":
			c.Status = v
		default:
			return c, fmt.Errorf("--columns: unknown field %q (want submit, duration or start and end, gpus, user, vc, account, name, status)", k)
		}
	}
	if c.Submit == "" || c.GPUs == "" || (c.Duration == "") == (c.Start == "" || c.End == "") {
		return c, errors.New("--columns: submit, gpus, and duration or start and end (not both) are required")
	}
	if (c.Start == "") != (c.End == "") {
		return c, errors.New("--columns: start and end go together")
	}
	return c, nil
}

// neverRan are the start or end values of a job that did not run (or
// still runs) in an accounting export: such rows are skipped.
var neverRan = []string{"", "Unknown", "None"}

// parseGPUs reads a GPU count: a number, or a Slurm TRES list such as
// sacct's AllocTRES (billing=8,cpu=8,gres/gpu=4,mem=32G,node=1; no
// gres/gpu means 0).
func parseGPUs(s string) (int, error) {
	if g, err := strconv.ParseFloat(s, 64); err == nil {
		return int(g), nil
	}
	if !strings.Contains(s, "=") {
		return 0, fmt.Errorf("gpus %q is neither a number nor a TRES list", s)
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "gres/gpu" {
			g, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("gpus %q: gres/gpu=%q is not a number", s, v)
			}
			return g, nil
		}
	}
	return 0, nil
}

// timeLayouts are the timestamp forms a trace may use; plain numbers are
// seconds since the epoch.
var timeLayouts = []string{"2006-01-02 15:04:05", time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"}

// ParseTime reads a trace or flag time: seconds since the epoch, or a
// timestamp (taken as UTC).
func ParseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither seconds nor a timestamp like 2017-10-01 00:00:00", s)
}

// ReadTrace reads a CSV trace with a header row.
func ReadTrace(path string, cols Columns) ([]TraceJob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseTrace(f, path, cols)
}

func parseTrace(r io.Reader, name string, cols Columns) ([]TraceJob, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	if cols.Delimiter != 0 {
		cr.Comma = cols.Delimiter
	}
	// sacct --parsable2 writes a field's text as it is, quotes included.
	cr.LazyQuotes = cols.Delimiter != 0 && cols.Delimiter != ','
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	idx := map[string]int{}
	for i, h := range head {
		idx[strings.TrimSpace(h)] = i
	}
	col := func(field, c string) (int, error) {
		if c == "" {
			return -1, nil
		}
		i, ok := idx[c]
		if !ok {
			return 0, fmt.Errorf("%s: no column %q for %s (columns: %s)", name, c, field, strings.Join(head, ","))
		}
		return i, nil
	}
	const (
		iSubmit = iota
		iDuration
		iGPUs
		iUser
		iVC
		iStart
		iEnd
		iAccount
		iName
		iStatus
	)
	var is [10]int
	for k, fc := range [][2]string{{"submit", cols.Submit}, {"duration", cols.Duration}, {"gpus", cols.GPUs}, {"user", cols.User}, {"vc", cols.VC},
		{"start", cols.Start}, {"end", cols.End}, {"account", cols.Account}, {"name", cols.Name}, {"status", cols.Status}} {
		if is[k], err = col(fc[0], fc[1]); err != nil {
			return nil, err
		}
	}
	get := func(rec []string, k int) string {
		if is[k] < 0 || is[k] >= len(rec) {
			return ""
		}
		return rec[is[k]]
	}
	var jobs []TraceJob
	line := 1
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line++
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		t, err := ParseTime(get(rec, iSubmit))
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: submit: %w", name, line, err)
		}
		var d time.Duration
		if is[iDuration] >= 0 {
			secs, err := strconv.ParseFloat(get(rec, iDuration), 64)
			if err != nil {
				return nil, fmt.Errorf("%s: line %d: duration %q is not seconds", name, line, get(rec, iDuration))
			}
			d = time.Duration(secs * float64(time.Second))
		} else {
			s, e := get(rec, iStart), get(rec, iEnd)
			if slices.Contains(neverRan, s) || slices.Contains(neverRan, e) {
				continue
			}
			st, err := ParseTime(s)
			if err != nil {
				return nil, fmt.Errorf("%s: line %d: start: %w", name, line, err)
			}
			et, err := ParseTime(e)
			if err != nil {
				return nil, fmt.Errorf("%s: line %d: end: %w", name, line, err)
			}
			d = max(et.Sub(st), 0)
		}
		g, err := parseGPUs(get(rec, iGPUs))
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		jobs = append(jobs, TraceJob{Submit: t, Duration: d, GPUs: g, User: get(rec, iUser), VC: get(rec, iVC),
			Account: get(rec, iAccount), Name: get(rec, iName), Status: get(rec, iStatus)})
	}
	return jobs, nil
}

// ReadVCs reads philly_vc.csv: "vc,node num".
func ReadVCs(path string) (map[string]int, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]int{}
	var order []string
	for i, r := range recs {
		if i == 0 || len(r) < 2 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(r[1]))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: line %d: node count %q is not a number", path, i+1, r[1])
		}
		out[r[0]] = n
		order = append(order, r[0])
	}
	return out, order, nil
}
