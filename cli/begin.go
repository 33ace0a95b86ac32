package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseBegin reads sbatch --begin the way Slurm does, for the forms people
// use: now+N[seconds|minutes|hours|days|weeks] (seconds when no unit),
// HH:MM[:SS] (today, or tomorrow when that is past), YYYY-MM-DD[THH:MM[:SS]],
// and midnight, noon, teatime (16:00), today, tomorrow.
func parseBegin(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(strings.ToLower(v))
	day := func(d time.Time) time.Time { return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, d.Location()) }
	next := func(h int) time.Time {
		t := day(now).Add(time.Duration(h) * time.Hour)
		if !t.After(now) {
			t = t.AddDate(0, 0, 1)
		}
		return t
	}
	switch v {
	case "now":
		return now, nil
	case "today":
		return day(now), nil
	case "tomorrow":
		return day(now).AddDate(0, 0, 1), nil
	case "midnight":
		return next(0), nil
	case "noon":
		return next(12), nil
	case "teatime":
		return next(16), nil
	}
	if rest, ok := strings.CutPrefix(v, "now+"); ok {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want now+N[units]", v)
		}
		unit := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "seconds": time.Second,
			"m": time.Minute, "min": time.Minute, "minutes": time.Minute, "h": time.Hour, "hour": time.Hour, "hours": time.Hour,
			"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour}
		u, ok := unit[rest[i:]]
		if !ok {
			return time.Time{}, fmt.Errorf("%q: unknown unit %q (seconds, minutes, hours, days, weeks)", v, rest[i:])
		}
		return now.Add(time.Duration(n) * u), nil
	}
	for _, layout := range []string{"2006-01-02t15:04:05", "2006-01-02t15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, now.Location()); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, v, now.Location()); err == nil {
			at := day(now).Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second)
			if !at.After(now) {
				at = at.AddDate(0, 0, 1)
			}
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (want now+N[units], HH:MM[:SS], YYYY-MM-DD[THH:MM[:SS]], midnight, noon, tomorrow)", v)
}
