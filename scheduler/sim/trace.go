package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
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
}

// Columns names the trace's columns for each field.
type Columns struct {
	Submit, Duration, GPUs, User, VC string
}

// PhillyColumns are the columns of the Helios project's philly.csv.
var PhillyColumns = Columns{Submit: "timestamp", Duration: "duration", GPUs: "num_gpus", VC: "cluster"}

// ParseColumns reads "--columns submit=a,duration=b,gpus=c[,user=d][,vc=e]".
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
		default:
			return c, fmt.Errorf("--columns: unknown field %q (want submit, duration, gpus, user, vc)", k)
		}
	}
	if c.Submit == "" || c.Duration == "" || c.GPUs == "" {
		return c, errors.New("--columns: submit, duration and gpus are required")
	}
	return c, nil
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
	var is [5]int
	for k, fc := range [][2]string{{"submit", cols.Submit}, {"duration", cols.Duration}, {"gpus", cols.GPUs}, {"user", cols.User}, {"vc", cols.VC}} {
		if is[k], err = col(fc[0], fc[1]); err != nil {
			return nil, err
		}
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
		t, err := ParseTime(rec[is[0]])
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: submit: %w", name, line, err)
		}
		d, err := strconv.ParseFloat(rec[is[1]], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: duration %q is not seconds", name, line, rec[is[1]])
		}
		g, err := strconv.ParseFloat(rec[is[2]], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: gpus %q is not a number", name, line, rec[is[2]])
		}
		j := TraceJob{Submit: t, Duration: time.Duration(d * float64(time.Second)), GPUs: int(g)}
		if is[3] >= 0 {
			j.User = rec[is[3]]
		}
		if is[4] >= 0 {
			j.VC = rec[is[4]]
		}
		jobs = append(jobs, j)
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
