package cli

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
)

// squeueFieldNames maps squeue --Format names (case-insensitive, as
// Slurm 22.05 spells them) to the %-letter fields of --format.
var squeueFieldNames = map[string]byte{
	"account":       'a',
	"arrayjobid":    'F',
	"arraytaskid":   'K',
	"comment":       'k',
	"dependency":    'E',
	"endtime":       'e',
	"jobarrayid":    'i',
	"jobid":         'i',
	"name":          'j',
	"nice":          'y',
	"nodelist":      'N',
	"numcpus":       'C',
	"numnodes":      'D',
	"partition":     'P',
	"priority":      'p',
	"prioritylong":  'Q',
	"qos":           'q',
	"reason":        'r',
	"reasonlist":    'R',
	"schednodes":    'Y',
	"starttime":     'S',
	"state":         'T',
	"statecompact":  't',
	"submittime":    'V',
	"timelimit":     'l',
	"timeused":      'M',
	"tres-per-node": 'b',
	"userid":        'U',
	"username":      'u',
	"workdir":       'Z',
}

// squeueLongWidth is the width of a --Format field without a size, as in
// Slurm.
const squeueLongWidth = 20

// parseSqueueLongFormat parses Slurm's squeue --Format: comma-separated
// "NAME[:[.][SIZE][SUFFIX]]", each field SIZE (default 20) wide, left
// aligned unless '.' asks for right alignment, followed by SUFFIX.
func parseSqueueLongFormat(f string) ([]formatPiece[squeueField], error) {
	var pieces []formatPiece[squeueField]
	for _, item := range strings.Split(f, ",") {
		name, spec, hasSpec := strings.Cut(item, ":")
		letter, ok := squeueFieldNames[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("unknown field %q", name)
		}
		p := formatPiece[squeueField]{field: squeueFields[letter], width: squeueLongWidth}
		var suffix string
		if hasSpec {
			if p.right = strings.HasPrefix(spec, "."); p.right {
				spec = spec[1:]
			}
			digits := len(spec) - len(strings.TrimLeft(spec, "0123456789"))
			if digits > 0 {
				n, err := strconv.Atoi(spec[:digits])
				if err != nil || n > 1000 {
					return nil, fmt.Errorf("field %s: size %q is over 1000", name, spec[:digits])
				}
				p.width = n
			} else if p.right {
				return nil, fmt.Errorf("field %s: '.' needs a size, as in %s:.10", name, name)
			}
			suffix = spec[digits:]
		}
		pieces = append(pieces, p)
		if suffix != "" {
			pieces = append(pieces, formatPiece[squeueField]{lit: suffix})
		}
	}
	return pieces, nil
}

// sortKey is one field of squeue --sort.
type sortKey struct {
	letter byte
	desc   bool
}

// parseSqueueSort parses Slurm's squeue --sort: comma-separated fields,
// each a --format letter or a --Format name, "+" (ascending, the default)
// or "-" (descending) before it.
func parseSqueueSort(s string) ([]sortKey, error) {
	if s == "" {
		return nil, nil
	}
	var keys []sortKey
	for _, item := range strings.Split(s, ",") {
		k := sortKey{}
		switch {
		case strings.HasPrefix(item, "-"):
			k.desc, item = true, item[1:]
		case strings.HasPrefix(item, "+"):
			item = item[1:]
		}
		switch l, named := squeueFieldNames[strings.ToLower(item)]; {
		case named:
			k.letter = l
		case len(item) == 1 && squeueFields[item[0]] != nil:
			k.letter = item[0]
		case item == "":
			return nil, errors.New("empty field")
		default:
			return nil, fmt.Errorf("unknown field %q", item)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// squeueSortValue gives the fields that do not sort as their text a
// number to sort by.
var squeueSortValue = map[byte]func(j *api.Job, now time.Time) int64{
	'i': func(j *api.Job, _ time.Time) int64 { return int64(j.GetId()) },
	'F': func(j *api.Job, _ time.Time) int64 { return int64(arrayJobID(j)) },
	'K': func(j *api.Job, _ time.Time) int64 { return int64(j.GetArrayTaskId()) },
	'U': func(j *api.Job, _ time.Time) int64 { return int64(j.GetUid()) },
	'p': func(j *api.Job, _ time.Time) int64 { return int64(j.GetPriority()) },
	'Q': func(j *api.Job, _ time.Time) int64 { return int64(j.GetPriority()) },
	'y': func(j *api.Job, _ time.Time) int64 { return int64(j.GetSpec().GetNice()) },
	'D': func(j *api.Job, _ time.Time) int64 { return int64(jobNodes(j)) },
	'C': func(j *api.Job, _ time.Time) int64 { return int64(jobCPUs(j)) },
	'M': func(j *api.Job, now time.Time) int64 { return int64(jobElapsed(j, now)) },
	'l': func(j *api.Job, _ time.Time) int64 { return j.GetSpec().GetTimeLimitS() },
	't': func(j *api.Job, _ time.Time) int64 { return int64(j.GetState()) },
	'T': func(j *api.Job, _ time.Time) int64 { return int64(j.GetState()) },
	'S': func(j *api.Job, _ time.Time) int64 {
		if j.GetState() == api.JobState_PENDING {
			return j.GetExpectedStartUnixMs()
		}
		return j.GetStartUnixMs()
	},
	'V': func(j *api.Job, _ time.Time) int64 { return j.GetSubmitUnixMs() },
	'e': func(j *api.Job, _ time.Time) int64 { return j.GetEndUnixMs() },
}

// sortBy orders jobs by keys, keeping the order they have for jobs that
// compare equal.
func sortBy(jobs []*api.Job, keys []sortKey, now time.Time, loc *time.Location) {
	slices.SortStableFunc(jobs, func(x, y *api.Job) int {
		for _, k := range keys {
			var c int
			if num := squeueSortValue[k.letter]; num != nil {
				c = cmp.Compare(num(x, now), num(y, now))
			} else {
				f := squeueFields[k.letter]
				c = strings.Compare(f.value(x, now, loc), f.value(y, now, loc))
			}
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// arrayJobID is Slurm's %F: the array's job id, or the job's own id for a
// job outside an array.
func arrayJobID(j *api.Job) uint64 {
	if id := j.GetArrayJobId(); id != 0 {
		return id
	}
	return j.GetId()
}
