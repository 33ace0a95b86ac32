package server

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/state"
)

// jobMail is one message about one job, for the mail program.
type jobMail struct {
	jobID   uint64
	to      string
	event   string // Slurm's SLURM_JOB_MAIL_TYPE: Began, Ended, Failed, Requeued
	subject string
	env     []string
}

// mailEvents returns the mails --mail-type asks for when a job changes
// from prev (nil: new) to cur, as Slurm's MailProg gets them: BEGIN when
// it starts (again, after a requeue), END when it ends, FAIL when it ends
// other than COMPLETED or CANCELLED, REQUEUE when it goes back to the
// queue; ALL is all of these. A task of an array mails only with
// ARRAY_TASKS, except the array's first task, which stands for the array.
// TIME_LIMIT*, INVALID_DEPEND and STAGE_OUT are accepted and send nothing.
func mailEvents(prev, cur *api.Job) []jobMail {
	types := strings.Split(cur.GetSpec().GetMailType(), ",")
	if cur.GetSpec().GetMailType() == "" || slices.Contains(types, "NONE") {
		return nil
	}
	if cur.ArrayJobId != 0 && cur.ArrayJobId != cur.Id && !slices.Contains(types, "ARRAY_TASKS") {
		return nil
	}
	wants := func(t string) bool { return slices.Contains(types, t) || slices.Contains(types, "ALL") }
	var out []jobMail
	add := func(event, detail string) {
		out = append(out, newJobMail(cur, event, detail))
	}
	if prev != nil && cur.RestartCount > prev.RestartCount && wants("REQUEUE") {
		add("Requeued", "")
	}
	if cur.StartUnixMs != 0 && (prev == nil || prev.StartUnixMs != cur.StartUnixMs) && wants("BEGIN") {
		add("Began", "Queued time "+api.FormatSlurmDuration((cur.StartUnixMs-cur.SubmitUnixMs)/1000))
	}
	if cur.State.Terminal() && (prev == nil || !prev.State.Terminal()) {
		run := int64(0)
		if cur.StartUnixMs != 0 {
			run = (cur.EndUnixMs - cur.StartUnixMs) / 1000
		}
		detail := fmt.Sprintf("Run time %s, %s, ExitCode %d", api.FormatSlurmDuration(run), cur.State, cur.ExitCode)
		failed := cur.State != api.JobState_COMPLETED && cur.State != api.JobState_CANCELLED
		switch {
		case failed && wants("FAIL"):
			add("Failed", detail)
		case wants("END"):
			add("Ended", detail)
		}
	}
	return out
}

// newJobMail makes the mail of one event: Slurm's subject and the
// SLURM_JOB_* variables its MailProg sees.
func newJobMail(j *api.Job, event, detail string) jobMail {
	to := j.GetSpec().GetMailUser()
	if to == "" {
		to = j.User
	}
	subject := fmt.Sprintf("Loom Job_id=%d Name=%s %s", j.Id, j.GetSpec().GetName(), event)
	if detail != "" {
		subject += ", " + detail
	}
	return jobMail{jobID: j.Id, to: to, event: event, subject: subject, env: []string{
		"SLURM_JOB_ID=" + strconv.FormatUint(j.Id, 10),
		"SLURM_JOB_NAME=" + j.GetSpec().GetName(),
		"SLURM_JOB_USER=" + j.User,
		"SLURM_JOB_UID=" + strconv.FormatUint(uint64(j.Uid), 10),
		"SLURM_JOB_STATE=" + j.State.String(),
		"SLURM_JOB_MAIL_TYPE=" + event,
		"SLURM_JOB_EXIT_CODE=" + strconv.Itoa(int(j.ExitCode)),
		"SLURM_JOB_PARTITION=" + j.GetSpec().PartitionOf(),
	}}
}

// mailTimeout bounds one run of the mail program.
const mailTimeout = 30 * time.Second

// mailQueue bounds the mails waiting for the program; beyond it they are
// dropped and logged, so that a stuck program never holds the leader.
const mailQueue = 1024

// mailLoop runs on the leader while it leads: it follows the state and
// runs prog (Slurm's MailProg) as "prog -s SUBJECT ADDRESS", as the
// server's own user, for each event a job's --mail-type asks for after
// the state from: a leader change mails nothing twice, and may miss the
// events of the moment it happened.
func (s *Server) mailLoop(ctx context.Context, prog string, store *state.Store, from *state.View) {
	queue := make(chan jobMail, mailQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range queue {
			s.runMailProg(ctx, prog, m)
		}
	}()
	defer func() {
		close(queue)
		<-done
	}()
	last := from
	for {
		cur, changed := store.Changed()
		if cur.Index() != last.Index() {
			for j := range cur.Jobs() {
				if j.ModifyIndex <= last.Index() || j.GetSpec().GetMailType() == "" {
					continue
				}
				for _, m := range mailEvents(last.Job(j.Id), j) {
					select {
					case queue <- m:
					default:
						s.log.Warn("mail dropped: too many waiting for the mail program", "job_id", m.jobID, "event", m.event)
					}
				}
			}
			last = cur
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// runMailProg runs the mail program for m; its failure is logged.
func (s *Server) runMailProg(ctx context.Context, prog string, m jobMail) {
	ctx, cancel := context.WithTimeout(ctx, mailTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, "-s", m.subject, m.to)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, m.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.log.Warn("mail program failed", "job_id", m.jobID, "event", m.event, "prog", prog, "err", err, "output", strings.TrimSpace(string(out)))
		return
	}
	s.log.Debug("mail sent", "job_id", m.jobID, "event", m.event, "to", m.to)
}
