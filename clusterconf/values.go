package clusterconf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

// The value readers below take what TOML decoding gives (int64, float64,
// string, bool, []any) and also the text of a flag, so that a
// --scheduler-* flag and the [scheduler] key of the same name read alike.

func asString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, not %s", typeName(v))
	}
	return s, nil
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		b, err := strconv.ParseBool(x)
		if err != nil {
			return false, fmt.Errorf("%q is not true or false", x)
		}
		return b, nil
	}
	return false, fmt.Errorf("want true or false, not %s", typeName(v))
}

// asOptionalBool is asBool for a key whose absence means something of
// its own (an optional proto field).
func asOptionalBool(v any) (*bool, error) {
	b, err := asBool(v)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

func asInt(v any, lo, hi int64) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64); err != nil {
			return 0, fmt.Errorf("%q is not a whole number", x)
		}
	default:
		return 0, fmt.Errorf("want a whole number, not %s", typeName(v))
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, lo, hi)
	}
	return n, nil
}

func asUint32(v any) (uint32, error) {
	n, err := asInt(v, 0, math.MaxUint32)
	return uint32(n), err
}

func asFloat(v any) (float64, error) {
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
	default:
		return 0, fmt.Errorf("want a number, not %s", typeName(v))
	}
	if f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%v: want a number of at least 0", f)
	}
	return f, nil
}

// asList reads a list of strings, or one string of comma-separated items.
func asList(v any) ([]string, error) {
	var out []string
	switch x := v.(type) {
	case string:
		for _, s := range strings.Split(x, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, found %s in it", typeName(e))
			}
			if s = strings.TrimSpace(s); s == "" {
				return nil, fmt.Errorf("empty name in the list")
			}
			out = append(out, s)
		}
	default:
		return nil, fmt.Errorf("want a list of strings or a comma-separated string, not %s", typeName(v))
	}
	return out, nil
}

// asSlurmTime reads a time as Slurm writes it ("1-00:00:00", "2:00:00",
// "30" minutes, UNLIMITED) or a whole number of minutes, in seconds; 0
// means none.
func asSlurmTime(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 || x > 100*365*24*60 {
			return 0, fmt.Errorf("%d minutes is out of range", x)
		}
		return x * 60, nil
	case string:
		s, err := api.ParseSlurmTime(x)
		if err != nil {
			return 0, err
		}
		return max(s, 0), nil
	}
	return 0, fmt.Errorf("want a time such as \"1-00:00:00\", \"2:00:00\" or \"30\" (minutes), not %s", typeName(v))
}

// asDuration reads a Go duration ("5m", "-1s"), as the --scheduler-las-*
// flags always have.
func asDuration(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("want a duration such as \"5m\", not %s", typeName(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"5m\" or \"90s\"", s)
	}
	return d, nil
}

// asSizeMB reads a memory size as Slurm writes it: a whole number with an
// optional unit K, M (the default), G or T, optionally followed by B, any
// case; it returns megabytes, rounded up.
func asSizeMB(v any) (uint64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("%d is negative", x)
		}
		return uint64(x), nil
	case string:
		mb, err := api.ParseMemMB(strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("%q is not a size such as \"4G\" or \"512M\" (units K, M, G, T)", x)
		}
		return mb, nil
	}
	return 0, fmt.Errorf("want a size such as \"4G\", not %s", typeName(v))
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("%T", v)
}
