package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/rpcclient"
)

const logsUsage = `Usage: loom logs [OPTIONS...] JOBID[.STEPID] [TASK]

Prints the output of a batch job's script (its batch step), of a job step
(JOBID.0, JOBID.1, ...; JOBID.batch is the script), or of a gang's ranks
(a job srun started, or sbatch --every-rank). With several tasks each
line is prefixed with "TASK: ", the task that wrote it, as srun --label
does.

Options:
`

type logsOpts struct {
	follow bool
	stderr bool
	label  bool
	help   bool
}

func runLogs(ctx context.Context, e *env, args []string) int {
	var o logsOpts
	opts := []*option{
		{long: "follow", short: 'f', arg: noArg, help: "keep printing output as the job writes it", set: setBool(&o.follow, true)},
		{long: "stderr", short: 'e', arg: noArg, help: "print standard error instead of standard output", set: setBool(&o.stderr, true)},
		{long: "label", short: 'l', arg: noArg, help: "prefix lines with the rank even for one rank", set: setBool(&o.label, true)},
		{long: "help", short: 'h', arg: noArg, help: "show this help", set: setBool(&o.help, true)},
	}
	pos, err := parseAndApply(opts, args)
	if err != nil {
		return e.fail(err)
	}
	if o.help {
		return printHelp(e, logsUsage, opts)
	}
	if len(pos) == 0 || len(pos) > 2 {
		return e.fail(&usageError{"want JOBID and optionally RANK"})
	}
	id, step, hasStep, err := api.ParseJobStep(pos[0])
	if err != nil {
		return e.fail(&usageError{fmt.Sprintf("invalid job id %q: %v", pos[0], err)})
	}
	req := &api.LogsRequest{JobId: id, Rank: -1, Follow: o.follow, Stderr: o.stderr}
	if hasStep {
		req.Step = &step
	}
	if len(pos) == 2 {
		r, err := strconv.ParseUint(pos[1], 10, 31)
		if err != nil {
			return e.fail(&usageError{fmt.Sprintf("invalid rank %q: want a number from 0", pos[1])})
		}
		req.Rank = int32(r)
	}
	return withClient(e, func(c *client) int {
		label := o.label
		if req.Rank < 0 && !label {
			// Label only when the output will interleave several ranks.
			j, err := c.getJob(ctx, req.JobId)
			if err != nil {
				return e.errorf("job %d: %s", req.JobId, messageAbout(err, fmt.Sprintf("job %d: ", req.JobId)))
			}
			switch st := j.Step(req.GetStep()); {
			case hasStep:
				label = len(st.GetAllocation().GetRanks()) > 1
			case j.Step(api.StepBatch) != nil:
				label = false // the batch script: one task
			default:
				label = len(j.GetAllocation().GetRanks()) > 1 || j.GetSpec().TotalTasks(1) > 1
			}
		}
		err := streamLogs(ctx, c, req, e.stdout, label)
		if err != nil && !(o.follow && ctx.Err() != nil) {
			return e.errorf("job %d: %s", req.JobId, messageAbout(err, fmt.Sprintf("job %d: ", req.JobId)))
		}
		return 0
	})
}

// streamLogs copies the log stream to w, labelling lines with their rank
// when label is set. Without --follow the stream may be idle for at most
// the client timeout; a followed stream lasts until the job ends or ctx is
// cancelled. A server that fails before sending anything is skipped for
// the next one.
func streamLogs(ctx context.Context, c *client, req *api.LogsRequest, w io.Writer, label bool) error {
	return c.do(ctx, false, func(ctx context.Context, cc *rpcclient.Conn) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var idle *time.Timer
		if !req.Follow {
			errIdle := fmt.Errorf("no output from the server for %v (set %s to wait longer)", c.timeout, EnvTimeout)
			idle = time.AfterFunc(c.timeout, func() { cancel(errIdle) })
			defer idle.Stop()
		}
		stream, err := c.jobs(cc).StreamLogs(ctx, req)
		if err != nil {
			return err
		}
		lw := &labelWriter{w: w, label: label, partial: map[uint32][]byte{}}
		started := false
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return lw.flush()
			}
			if err != nil {
				lw.flush()
				if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
					err = cause
				}
				if started {
					return &final{err}
				}
				return err
			}
			started = true
			if idle != nil {
				idle.Reset(c.timeout)
			}
			if err := lw.write(chunk); err != nil {
				return &final{err}
			}
		}
	})
}

// labelWriter writes log chunks, prefixing each whole line with "RANK: "
// when label is set; a rank's unfinished line waits for its end so that
// ranks never mix within a line.
type labelWriter struct {
	w       io.Writer
	label   bool
	partial map[uint32][]byte
}

func (lw *labelWriter) write(c *api.LogChunk) error {
	if !lw.label {
		_, err := lw.w.Write(c.GetData())
		return err
	}
	r := c.GetRank()
	buf := append(lw.partial[r], c.GetData()...)
	var out bytes.Buffer
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(&out, "%d: %s", r, buf[:i+1])
		buf = buf[i+1:]
	}
	if len(buf) > 0 {
		lw.partial[r] = append([]byte(nil), buf...)
	} else {
		delete(lw.partial, r)
	}
	_, err := lw.w.Write(out.Bytes())
	return err
}

// flush writes every unfinished line, ended with a newline, in rank order.
func (lw *labelWriter) flush() error {
	for _, r := range slices.Sorted(maps.Keys(lw.partial)) {
		if _, err := fmt.Fprintf(lw.w, "%d: %s\n", r, lw.partial[r]); err != nil {
			return err
		}
		delete(lw.partial, r)
	}
	return nil
}
