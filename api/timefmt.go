package api

import (
	"fmt"
	"strconv"
	"strings"
)

// Unlimited is the time limit that means "no limit", as JobSpec.time_limit_s
// stores it.
const Unlimited int64 = -1

// maxSlurmSeconds bounds parsed durations (about 100 years) so that sums
// cannot overflow.
const maxSlurmSeconds = 100 * 365 * 24 * 3600

// TimeFormatError is a malformed Slurm duration.
type TimeFormatError struct {
	Input string
	Msg   string
}

func (e *TimeFormatError) Error() string {
	return fmt.Sprintf("time %q: %s (want M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED)", e.Input, e.Msg)
}

// ParseSlurmTime parses a duration the way sbatch --time does and returns
// it in seconds. The accepted forms are "M", "M:S", "H:M:S", "D-H",
// "D-H:M" and "D-H:M:S". "UNLIMITED", "INFINITE" (any case) and "0" mean no
// limit and return Unlimited (-1), as in Slurm, where a zero time limit
// requests none. The first field may be as large as wanted ("90" is 90
// minutes); later fields must be below 60 (24 for hours after a day count).
func ParseSlurmTime(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	switch strings.ToUpper(s) {
	case "":
		return 0, &TimeFormatError{Input: in, Msg: "empty"}
	case "UNLIMITED", "INFINITE":
		return Unlimited, nil
	}
	var days int64
	hasDays := false
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := timeField(in, "days", d, -1)
		if err != nil {
			return 0, err
		}
		days, hasDays, s = n, true, rest
	}
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return 0, &TimeFormatError{Input: in, Msg: "too many ':' fields"}
	}
	var h, m, sec int64
	var err error
	if hasDays {
		// D-H, D-H:M, D-H:M:S
		if h, err = timeField(in, "hours", parts[0], 24); err != nil {
			return 0, err
		}
		if len(parts) > 1 {
			if m, err = timeField(in, "minutes", parts[1], 60); err != nil {
				return 0, err
			}
		}
		if len(parts) > 2 {
			if sec, err = timeField(in, "seconds", parts[2], 60); err != nil {
				return 0, err
			}
		}
	} else {
		switch len(parts) {
		case 1: // M
			m, err = timeField(in, "minutes", parts[0], -1)
		case 2: // M:S
			if m, err = timeField(in, "minutes", parts[0], -1); err == nil {
				sec, err = timeField(in, "seconds", parts[1], 60)
			}
		case 3: // H:M:S
			if h, err = timeField(in, "hours", parts[0], -1); err == nil {
				if m, err = timeField(in, "minutes", parts[1], 60); err == nil {
					sec, err = timeField(in, "seconds", parts[2], 60)
				}
			}
		}
		if err != nil {
			return 0, err
		}
	}
	if days > maxSlurmSeconds/86400 || h > maxSlurmSeconds/3600 || m > maxSlurmSeconds/60 || sec > maxSlurmSeconds {
		return 0, &TimeFormatError{Input: in, Msg: "longer than 100 years"}
	}
	total := days*86400 + h*3600 + m*60 + sec
	if total > maxSlurmSeconds {
		return 0, &TimeFormatError{Input: in, Msg: "longer than 100 years"}
	}
	if total == 0 {
		return Unlimited, nil
	}
	return total, nil
}

// timeField parses one decimal field; limit < 0 means no upper bound.
func timeField(in, name, s string, limit int64) (int64, error) {
	if s == "" {
		return 0, &TimeFormatError{Input: in, Msg: name + " missing"}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &TimeFormatError{Input: in, Msg: fmt.Sprintf("%s %q is not a number", name, s)}
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxSlurmSeconds {
		return 0, &TimeFormatError{Input: in, Msg: fmt.Sprintf("%s %q is too large", name, s)}
	}
	if limit >= 0 && n >= limit {
		return 0, &TimeFormatError{Input: in, Msg: fmt.Sprintf("%s %d out of range 0-%d", name, n, limit-1)}
	}
	return n, nil
}

// FormatSlurmDuration formats seconds as squeue's TIME column does:
// "0:05" and "12:34" below an hour, "2:03:04" below a day, "1-02:03:04"
// from a day on. A negative value (Unlimited) is "UNLIMITED".
func FormatSlurmDuration(seconds int64) string {
	if seconds < 0 {
		return "UNLIMITED"
	}
	d := seconds / 86400
	h := seconds % 86400 / 3600
	m := seconds % 3600 / 60
	s := seconds % 60
	switch {
	case d > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	case h > 0:
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	default:
		return fmt.Sprintf("%d:%02d", m, s)
	}
}
