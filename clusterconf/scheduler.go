package clusterconf

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

// Policies are the names [scheduler] policy takes.
var Policies = []string{"multifactor", "fifo", "las", "gittins"}

// schedulerKey sets one [scheduler] key.
type schedulerKey func(s *api.SchedulerSettings, v any) error

func las(s *api.SchedulerSettings) *api.LASSettings {
	if s.Las == nil {
		s.Las = &api.LASSettings{}
	}
	return s.Las
}

func timeKey(set func(s *api.SchedulerSettings, sec int64)) schedulerKey {
	return func(s *api.SchedulerSettings, v any) error {
		sec, err := asSlurmTime(v)
		set(s, sec)
		return err
	}
}

func weightKey(set func(s *api.SchedulerSettings, w float64)) schedulerKey {
	return func(s *api.SchedulerSettings, v any) error {
		w, err := asFloat(v)
		set(s, w)
		return err
	}
}

func boolKey(set func(s *api.SchedulerSettings, b bool)) schedulerKey {
	return func(s *api.SchedulerSettings, v any) error {
		b, err := asBool(v)
		set(s, b)
		return err
	}
}

// schedulerKeys are the [scheduler] table's keys; the las_* keys and
// policy are also loom server's --scheduler-* flags.
var schedulerKeys = map[string]schedulerKey{
	"policy": func(s *api.SchedulerSettings, v any) error {
		p, err := asString(v)
		if err == nil && !slices.Contains(Policies, p) {
			err = fmt.Errorf("%q is not a policy (want multifactor, fifo, las or gittins)", p)
		}
		s.Policy = p
		return err
	},
	"reserve_depth": func(s *api.SchedulerSettings, v any) error {
		n, err := asInt(v, -1, 10000)
		s.ReserveDepth = int32(n)
		return err
	},
	"backfill_window":  timeKey(func(s *api.SchedulerSettings, sec int64) { s.BackfillWindowS = sec }),
	"default_time":     timeKey(func(s *api.SchedulerSettings, sec int64) { s.DefaultTimeS = sec }),
	"max_time":         timeKey(func(s *api.SchedulerSettings, sec int64) { s.MaxTimeS = sec }),
	"strict_order":     boolKey(func(s *api.SchedulerSettings, b bool) { s.StrictOrder = b }),
	"weight_age":       weightKey(func(s *api.SchedulerSettings, w float64) { s.WeightAge = w }),
	"weight_fairshare": weightKey(func(s *api.SchedulerSettings, w float64) { s.WeightFairshare = w }),
	"weight_qos":       weightKey(func(s *api.SchedulerSettings, w float64) { s.WeightQos = w }),
	"weight_partition": weightKey(func(s *api.SchedulerSettings, w float64) { s.WeightPartition = w }),
	"weight_jobsize":   weightKey(func(s *api.SchedulerSettings, w float64) { s.WeightJobsize = w }),
	"max_placements_per_cycle": func(s *api.SchedulerSettings, v any) error {
		n, err := asUint32(v)
		s.MaxPlacementsPerCycle = n
		return err
	},
	"priority_max_age":         timeKey(func(s *api.SchedulerSettings, sec int64) { s.PriorityMaxAgeS = sec }),
	"priority_favor_small":     boolKey(func(s *api.SchedulerSettings, b bool) { s.PriorityFavorSmall = b }),
	"priority_size_by_service": boolKey(func(s *api.SchedulerSettings, b bool) { s.PrioritySizeByService = b }),
	"fairshare_half_life":      timeKey(func(s *api.SchedulerSettings, sec int64) { s.FairshareHalfLifeS = sec }),
	"account_shares": func(s *api.SchedulerSettings, v any) error {
		t, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("want a table of account = share ([scheduler.account_shares]), not %s", typeName(v))
		}
		s.AccountShares = map[string]float64{}
		for _, a := range sortedKeys(t) {
			f, err := asFloat(t[a])
			if err != nil {
				return fmt.Errorf("%s: %v", a, err)
			}
			s.AccountShares[a] = f
		}
		return nil
	},
	"las_thresholds": func(s *api.SchedulerSettings, v any) error {
		var out []float64
		var items []any
		switch x := v.(type) {
		case []any:
			items = x
		case string:
			for _, f := range strings.Split(x, ",") {
				items = append(items, strings.TrimSpace(f))
			}
		default:
			return fmt.Errorf("want a list of GPU-seconds, not %s", typeName(v))
		}
		for _, it := range items {
			f, err := asFloat(it)
			if err != nil || f <= 0 || (len(out) > 0 && f <= out[len(out)-1]) {
				return fmt.Errorf("%v: want positive GPU-seconds, each above the one before", it)
			}
			out = append(out, f)
		}
		las(s).Thresholds = out
		return nil
	},
	"las_within": func(s *api.SchedulerSettings, v any) error {
		w, err := asString(v)
		if err == nil && w != "fifo" && w != "limit" {
			err = fmt.Errorf("%q: want fifo or limit", w)
		}
		las(s).Within = w
		return err
	},
	"las_promote_factor": func(s *api.SchedulerSettings, v any) error {
		// 0 or below: never promote, as the flag has always allowed.
		if n, ok := v.(int64); ok && n < 0 {
			las(s).PromoteFactor = float64(n)
			return nil
		}
		if f, ok := v.(float64); ok && f < 0 {
			las(s).PromoteFactor = f
			return nil
		}
		if str, ok := v.(string); ok && strings.HasPrefix(strings.TrimSpace(str), "-") {
			f, err := asFloat(strings.TrimPrefix(strings.TrimSpace(str), "-"))
			las(s).PromoteFactor = -f
			return err
		}
		f, err := asFloat(v)
		las(s).PromoteFactor = f
		return err
	},
	"las_min_run": func(s *api.SchedulerSettings, v any) error {
		d, err := asDuration(v)
		las(s).MinRunMs = d.Milliseconds()
		if err == nil && d < 0 {
			las(s).MinRunMs = -1
		}
		return err
	},
	"las_patience": func(s *api.SchedulerSettings, v any) error {
		d, err := asDuration(v)
		if err == nil && d < 0 {
			err = fmt.Errorf("%v is negative", d)
		}
		las(s).PatienceMs = d.Milliseconds()
		return err
	},
	"las_preempt": func(s *api.SchedulerSettings, v any) error {
		b, err := asBool(v)
		las(s).NoPreempt = !b
		return err
	},
	"gittins_margin": func(s *api.SchedulerSettings, v any) error {
		f, err := asFloat(v)
		if err == nil && f < 1 {
			err = fmt.Errorf("%v: want a number of at least 1", f)
		}
		las(s).GittinsMargin = f
		return err
	},
	"history_window": func(s *api.SchedulerSettings, v any) error {
		n, err := asInt(v, 1, 1<<20)
		las(s).HistoryWindow = uint32(n)
		return err
	},
	"history_min_samples": func(s *api.SchedulerSettings, v any) error {
		n, err := asInt(v, 1, 1<<20)
		las(s).HistoryMinSamples = uint32(n)
		return err
	},
	"history_siblings": func(s *api.SchedulerSettings, v any) error {
		d, err := asDuration(v)
		las(s).SiblingWindowMs = d.Milliseconds()
		if err == nil && d < 0 {
			las(s).SiblingWindowMs = -1
		}
		return err
	},
}

// SchedulerKeys returns the [scheduler] table's keys, sorted.
func SchedulerKeys() []string {
	return slices.Sorted(maps.Keys(schedulerKeys))
}

// SetScheduler sets the [scheduler] key to v (a TOML value, or the text
// of the --scheduler-* flag of that name): what a flag given on the
// command line does over the file.
func SetScheduler(s *api.SchedulerSettings, key string, v any) error {
	set, ok := schedulerKeys[key]
	if !ok {
		return fmt.Errorf("unknown [scheduler] key %q", key)
	}
	return set(s, v)
}

func (p *parser) scheduler(s *api.SchedulerSettings, v any) error {
	t, ok := v.(map[string]any)
	if !ok {
		return p.errAt("", "", "scheduler", "want a [scheduler] table")
	}
	for _, k := range sortedKeys(t) {
		set, ok := schedulerKeys[k]
		if !ok {
			return p.errAt("scheduler", "[scheduler]", k, "unknown key (want one of %s)", strings.Join(SchedulerKeys(), ", "))
		}
		if err := set(s, t[k]); err != nil {
			table := "scheduler"
			if k == "account_shares" {
				if _, isTable := t[k].(map[string]any); isTable {
					table = "scheduler.account_shares"
					if sub, _, ok := strings.Cut(err.Error(), ":"); ok {
						return &Error{File: p.file, Line: p.lines.line(table, sub), Key: "[scheduler.account_shares] " + sub, Msg: strings.TrimSpace(strings.TrimPrefix(err.Error(), sub+":"))}
					}
				}
			}
			return p.errAt(table, "[scheduler]", k, "%v", err)
		}
	}
	return nil
}

// seconds turns stored seconds into a duration.
func seconds(s int64) time.Duration {
	if s > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}
