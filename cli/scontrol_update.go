package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rpcclient"
)

// isJobUpdate reports whether the arguments of scontrol update name a
// job (JobId=, Job=) rather than nodes.
func isJobUpdate(args []string) bool {
	for _, a := range args {
		k, _, _ := strings.Cut(a, "=")
		switch strings.ToLower(k) {
		case "jobid", "job":
			return true
		}
	}
	return false
}

// jobUpdate is one scontrol update job: the jobs and the change, with a
// time limit relative to each job's ("+30", "-1:00") kept apart.
type jobUpdate struct {
	ids      []uint64
	req      *api.UpdateJobRequest
	relLimit int64 // seconds to add (negative: remove); with relative
	relative bool
}

// parseJobUpdate parses Slurm's "scontrol update JobId=ID[,ID...]
// KEY=VALUE..." with keys as Slurm spells them, in any case: TimeLimit
// (Slurm's time formats, UNLIMITED, or +TIME/-TIME to add or remove
// time), Partition, QOS, NumNodes (N or N-M), Name (or JobName), Comment.
func parseJobUpdate(args []string) (*jobUpdate, error) {
	u := &jobUpdate{req: &api.UpdateJobRequest{}}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("invalid input %q: want KEY=VALUE (quote values with blanks)", a)
		}
		key := strings.ToLower(k)
		switch key {
		case "jobid", "job":
			ids, err := parseJobIDs([]string{v})
			if err != nil {
				return nil, fmt.Errorf("%s=%s: %w", k, v, err)
			}
			u.ids = append(u.ids, ids...)
		case "timelimit":
			sign := int64(0)
			switch {
			case strings.HasPrefix(v, "+"):
				sign, v = 1, v[1:]
			case strings.HasPrefix(v, "-"):
				sign, v = -1, v[1:]
			}
			sec, err := api.ParseSlurmTime(v)
			if err != nil {
				return nil, fmt.Errorf("TimeLimit=%s: %w", a[len(k)+1:], err)
			}
			if sign != 0 {
				if sec < 0 {
					return nil, fmt.Errorf("TimeLimit=%s: UNLIMITED cannot be added or removed", a[len(k)+1:])
				}
				u.relative, u.relLimit = true, sign*sec
				continue
			}
			u.req.TimeLimitS = proto.Int64(sec)
		case "partition":
			if v == "" {
				return nil, errors.New("empty Partition: name a partition")
			}
			u.req.Partition = proto.String(v)
		case "qos":
			u.req.Qos = proto.String(v)
		case "numnodes":
			lo, hi, err := parseNodeRange(v)
			if err != nil {
				return nil, fmt.Errorf("NumNodes=%s: %w", v, err)
			}
			u.req.NodesMin, u.req.NodesMax = proto.Uint32(lo), proto.Uint32(hi)
		case "name", "jobname":
			u.req.Name = proto.String(v)
		case "comment":
			u.req.Comment = proto.String(v)
		default:
			return nil, fmt.Errorf("unknown key %q: Loom updates a job's TimeLimit, Partition, QOS, NumNodes, Name and Comment", k)
		}
	}
	switch {
	case len(u.ids) == 0:
		return nil, errors.New("JobId=ID is required")
	case u.req.Empty() && !u.relative:
		return nil, errors.New("nothing to change: give TimeLimit=, Partition=, QOS=, NumNodes=, Name= or Comment=")
	}
	return u, nil
}

// updateJobs handles "scontrol update JobId=ID KEY=VALUE...": each job is
// changed on its own, and each refusal reported.
func updateJobs(ctx context.Context, e *env, c *client, args []string) int {
	u, err := parseJobUpdate(args)
	if err != nil {
		return e.fail(&usageError{"update: " + err.Error()})
	}
	exit := 0
	for _, id := range u.ids {
		req := proto.Clone(u.req).(*api.UpdateJobRequest)
		req.JobId = id
		if u.relative {
			j, err := c.getJob(ctx, id)
			if err != nil {
				e.errorf("job %d: %s", id, messageAbout(err))
				exit = 1
				continue
			}
			limit := j.GetSpec().GetTimeLimitS()
			if limit <= 0 {
				e.errorf("job %d: TimeLimit: the job has no time limit of its own to add to or remove from; give one", id)
				exit = 1
				continue
			}
			if limit+u.relLimit <= 0 {
				e.errorf("job %d: TimeLimit: removing %s from %s leaves no time", id, api.FormatSlurmDuration(-u.relLimit), api.FormatSlurmDuration(limit))
				exit = 1
				continue
			}
			req.TimeLimitS = proto.Int64(limit + u.relLimit)
		}
		err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			resp, err := c.jobs(cc).UpdateJob(ctx, req)
			if err == nil {
				c.wrote(resp.GetIndex())
			}
			return err
		})
		if err != nil {
			// The server's messages name the job already, mostly.
			name := "job " + strconv.FormatUint(id, 10)
			if msg := messageAbout(err, name+": "); strings.HasPrefix(msg, name+" ") {
				e.errorf("%s", msg)
			} else {
				e.errorf("%s: %s", name, msg)
			}
			exit = 1
		}
	}
	return exit
}
