//go:build e2e

// The e2e test records what concurrent clients see of submit,
// cancel and consistent reads on a real 3-server cluster while its leader
// is killed twice, then cut off the network (each server runs in its own
// network namespace, net_test.go), then a follower is, and checks the history with porcupine against a
// sequential model of a job: absent, then pending, then cancelled. A
// write that never got an answer counts as maybe applied; at the end
// every submit is accounted for: an acknowledged one exists exactly once
// with its id, an unacknowledged one at most once.

package linearizable

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"math"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apirpc"
	"github.com/loomhpc/loom/internal/harness"
	"github.com/loomhpc/loom/test/cluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	clients  = 6
	opsTotal = 1200             // operations the clients start, all together
	budget   = 10 * time.Second // how long one operation retries
)

// The faults the test injects, in order, while the clients run.
type fault string

const (
	killLeader  fault = "kill -9 the leader, then restart it"
	cutLeader   fault = "cut the leader off the network, then heal"
	cutFollower fault = "cut a follower off the network, then heal"
)

var faults = []fault{killLeader, killLeader, cutLeader, cutFollower}

// client makes calls that go round the servers on Unavailable, as the CLI
// does, until one answers or budget has passed.
type client struct {
	jobs []apirpc.JobServiceClient
}

// call runs f against each server in turn. It returns the last error when
// no server gave a definite answer, with ambiguous true when some attempt
// may have reached the leader (any failure but a refused connection).
func (c *client) call(first int, f func(ctx context.Context, j apirpc.JobServiceClient) error) (err error, ambiguous bool) {
	return c.callN(first, math.MaxInt, f)
}

// callN is call with at most attempts tries. The clients make some writes
// with a single try, so that some go unanswered while a leader is dead
// and the history holds writes of unknown outcome.
func (c *client) callN(first, attempts int, f func(ctx context.Context, j apirpc.JobServiceClient) error) (err error, ambiguous bool) {
	deadline := time.Now().Add(budget)
	for i := 0; i < attempts && time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = f(ctx, c.jobs[(first+i)%len(c.jobs)])
		cancel()
		code := status.Code(err)
		if code != codes.Unavailable && code != codes.DeadlineExceeded {
			return err, ambiguous
		}
		ambiguous = true
		time.Sleep(20 * time.Millisecond)
	}
	return err, ambiguous
}

type record struct {
	mu      sync.Mutex
	ops     []porcupine.Operation
	unacked []string
	acked   map[string]uint64 // token → id
	tokens  []string          // acked, in order, for picking
}

func (r *record) add(op porcupine.Operation) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *record) pick(rng *mrand.Rand) (string, uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.tokens) == 0 {
		return "", 0, false
	}
	tok := r.tokens[rng.IntN(len(r.tokens))]
	return tok, r.acked[tok], true
}

func TestSubmitCancelReadAreLinearizableAcrossLeaderKillsAndPartitions(t *testing.T) {
	dir := t.TempDir()
	sn := newServerNet(t, 3)
	servers := sn.startServers(t, dir)
	args, err := harness.Agent{Name: "node1", Dir: dir, Profile: "dgx-h100", IP: sn.bridgeIP, Ports: 31500, PKI: cluster.PKI(t, dir),
		Servers: cluster.Addrs(servers), ClientAddr: strings.Join(cluster.Clients(servers), ",")}.Args()
	if err != nil {
		t.Fatal(err)
	}
	cluster.Start(t, dir, "node1", args...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range servers {
				t.Log(s.Tail())
			}
		}
	})
	var ops []apirpc.OperatorClient
	var nodes []apirpc.NodeServiceClient
	c := &client{}
	for _, a := range cluster.Clients(servers) {
		cc, err := harness.Dial(a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		c.jobs = append(c.jobs, apirpc.NewJobServiceClient(cc))
		ops = append(ops, apirpc.NewOperatorClient(cc))
		nodes = append(nodes, apirpc.NewNodeServiceClient(cc))
	}
	cluster.WaitFor(t, "a leader and a registered node", 30*time.Second, func() bool {
		l, _ := harness.Leader(context.Background(), ops)
		if l < 0 {
			return false
		}
		r, err := nodes[l].ListNodes(cluster.Ctx(t), &api.ListNodesRequest{})
		return err == nil && len(r.Nodes) == 1
	})

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	rec := &record{acked: map[string]uint64{}}
	var started atomic.Int64
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			for started.Add(1) <= opsTotal {
				first := rng.IntN(len(c.jobs))
				tok, id, have := rec.pick(rng)
				switch p := rng.IntN(10); {
				case p < 4 || !have:
					submit(t, c, rec, w, first, tries(rng), now)
				case p < 7:
					cancelJob(t, c, rec, w, first, tries(rng), tok, id, now)
				default:
					read(t, c, rec, w, first, tok, id, now)
				}
			}
		}()
	}
	// newLeader waits for a server other than old to lead.
	newLeader := func(old int) int {
		nl := -1
		cluster.WaitFor(t, "a new leader", 20*time.Second, func() bool {
			for i, op := range ops {
				if i == old {
					continue
				}
				if st := serverStatus(op); st != nil && st.Server.GetLeader() {
					nl = i
					return true
				}
			}
			return false
		})
		return nl
	}
	// during lets more operations run, with a fault in place.
	during := func(what string) {
		from := started.Load()
		cluster.WaitFor(t, "operations to flow "+what, 60*time.Second, func() bool {
			return started.Load() >= min(from+opsTotal/20, opsTotal)
		})
	}
	for k, f := range faults {
		cluster.WaitFor(t, "operations to flow", 60*time.Second, func() bool {
			return started.Load() > int64((k+1)*opsTotal/(len(faults)+2))
		})
		l, err := harness.WaitLeader(context.Background(), ops, 20*time.Second)
		if err != nil {
			t.Fatalf("no leader before fault %d (%s): %v", k+1, f, err)
		}
		switch f {
		case killLeader:
			t.Logf("kill -9 leader %s after %d operations", servers[l].Name, started.Load())
			servers[l].Kill()
			newLeader(l)
			servers[l].Restart(t)
		case cutLeader:
			t.Logf("cut leader %s off after %d operations", servers[l].Name, started.Load())
			sn.cut(t, l)
			nl := newLeader(l)
			t.Logf("%s leads the majority", servers[nl].Name)
			refusesWhileCut(t, c, rec, l, now)
			during("with the old leader cut off")
			sn.heal(t, l)
		case cutFollower:
			f := (l + 1) % len(servers)
			t.Logf("cut follower %s off after %d operations", servers[f].Name, started.Load())
			sn.cut(t, f)
			during("with a follower cut off")
			sn.heal(t, f)
		}
	}
	wg.Wait()
	cluster.WaitSameState(t, "every server, healed or restarted, to reach the same state", 60*time.Second, ops)

	// Read the end state through the leader and add it to the history as
	// reads after everything else.
	var jobs []*api.Job
	cluster.WaitFor(t, "a consistent list of every job", 30*time.Second, func() bool {
		err, _ := c.call(0, func(ctx context.Context, j apirpc.JobServiceClient) error {
			r, err := j.ListJobs(ctx, &api.ListJobsRequest{All: true, Consistent: true})
			if err == nil {
				jobs = r.Jobs
			}
			return err
		})
		return err == nil
	})
	account(t, rec, jobs)
	end := now()
	byToken := map[string]*api.Job{}
	for _, j := range jobs {
		byToken[j.IdempotencyToken] = j
	}
	for tok := range rec.acked {
		rec.add(porcupine.Operation{ClientId: clients, Input: input{opRead, tok}, Call: end, Return: end + 1,
			Output: output{state: stateOf(byToken[tok])}})
	}

	counts := map[opKind]int{}
	results := map[string]int{}
	for _, op := range rec.ops {
		counts[op.Input.(input).kind]++
		if o := op.Output.(output); o.result != "" {
			results[o.result]++
		}
	}
	t.Logf("history: %d submits acknowledged, %d not; %d cancels %v; %d reads", counts[opSubmit], len(rec.unacked),
		counts[opCancel], results, counts[opRead])
	res, info := porcupine.CheckOperationsVerbose(model.ToModel(), rec.ops, time.Minute)
	if res != porcupine.Ok {
		picture := "none (no temporary file)"
		if f, err := os.CreateTemp("", "loom-linearizable-*.html"); err == nil {
			porcupine.Visualize(model.ToModel(), info, f)
			f.Close()
			picture = f.Name()
		}
		t.Fatalf("the history is not linearizable (%s); porcupine's picture of it: %s", res, picture)
	}
}

// tries is how many attempts a write makes: one for a fifth of them.
func tries(rng *mrand.Rand) int {
	if rng.IntN(5) == 0 {
		return 1
	}
	return math.MaxInt
}

func submit(t *testing.T, c *client, rec *record, w, first, attempts int, now func() int64) {
	b := make([]byte, 12)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	req := &api.SubmitRequest{IdempotencyToken: tok, Spec: &api.JobSpec{Name: "lin", Hold: true, GpusPerNode: 1,
		Script: "#!/bin/sh\ntrue\n", WorkingDir: os.TempDir()}}
	call := now()
	var id uint64
	err, _ := c.callN(first, attempts, func(ctx context.Context, j apirpc.JobServiceClient) error {
		r, err := j.Submit(ctx, req)
		if err == nil {
			id = r.JobId
		}
		return err
	})
	ret := now()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if err != nil {
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("submit: %v", err)
		}
		rec.unacked = append(rec.unacked, tok)
		return
	}
	rec.ops = append(rec.ops, porcupine.Operation{ClientId: w, Input: input{opSubmit, tok}, Call: call, Return: ret, Output: output{}})
	rec.acked[tok] = id
	rec.tokens = append(rec.tokens, tok)
}

func cancelJob(t *testing.T, c *client, rec *record, w, first, attempts int, tok string, id uint64, now func() int64) {
	call := now()
	var resp *api.CancelResponse
	err, ambiguous := c.callN(first, attempts, func(ctx context.Context, j apirpc.JobServiceClient) error {
		var err error
		resp, err = j.Cancel(ctx, &api.CancelRequest{JobIds: []uint64{id}})
		return err
	})
	ret := now()
	var result string
	switch code := status.Code(err); {
	case err == nil && len(resp.Cancelled) == 1 && resp.Cancelled[0] == id:
		result = "cancelled"
	case code == codes.FailedPrecondition && ambiguous:
		result = "done"
	case code == codes.FailedPrecondition:
		result = "finished"
	case code == codes.Unavailable || code == codes.DeadlineExceeded:
		result, ret = "unknown", math.MaxInt64
	default:
		t.Errorf("cancel job %d: %v, %v", id, resp, err)
		return
	}
	rec.add(porcupine.Operation{ClientId: w, Input: input{opCancel, tok}, Call: call, Return: ret, Output: output{result: result}})
}

func read(t *testing.T, c *client, rec *record, w, first int, tok string, id uint64, now func() int64) {
	call := now()
	var job *api.Job
	err, _ := c.call(first, func(ctx context.Context, j apirpc.JobServiceClient) error {
		r, err := j.GetJob(ctx, &api.GetJobRequest{JobId: id, Consistent: true})
		if err == nil {
			job = r.Job
		}
		return err
	})
	ret := now()
	switch code := status.Code(err); {
	case err == nil, code == codes.NotFound:
		rec.add(porcupine.Operation{ClientId: w, Input: input{opRead, tok}, Call: call, Return: ret, Output: output{state: stateOf(job)}})
	case code == codes.Unavailable || code == codes.DeadlineExceeded:
		// A read that got no answer changed nothing: leave it out.
	default:
		t.Errorf("read job %d: %v", id, err)
	}
}

// stateOf maps a job as a server shows it to the model's states.
func stateOf(j *api.Job) jobState {
	switch {
	case j == nil:
		return absent
	case j.State == api.JobState_PENDING:
		return pending
	case j.State == api.JobState_CANCELLED:
		return cancelled
	}
	return jobState(100 + int(j.State)) // matches no model state: fails the check
}

// account checks every submit against the end state: an acknowledged one
// is there exactly once with the id it was given; one without an answer
// is there at most once, and still pending (nobody knew its id to cancel
// it); nothing is there that no client submitted.
func account(t *testing.T, rec *record, jobs []*api.Job) {
	t.Helper()
	byToken := map[string][]*api.Job{}
	ids := map[uint64]bool{}
	for _, j := range jobs {
		byToken[j.IdempotencyToken] = append(byToken[j.IdempotencyToken], j)
		if ids[j.Id] {
			t.Errorf("job id %d appears twice", j.Id)
		}
		ids[j.Id] = true
	}
	seen := map[string]bool{}
	for tok, id := range rec.acked {
		seen[tok] = true
		got := byToken[tok]
		if len(got) != 1 || got[0].Id != id {
			t.Errorf("acknowledged submit %s (job %d): %d jobs in the end state, want exactly job %d", tok, id, len(got), id)
		}
	}
	applied := 0
	for _, tok := range rec.unacked {
		seen[tok] = true
		switch got := byToken[tok]; {
		case len(got) > 1:
			t.Errorf("unacknowledged submit %s: %d jobs, want at most one", tok, len(got))
		case len(got) == 1 && got[0].State != api.JobState_PENDING:
			t.Errorf("unacknowledged submit %s: job %d is %s, but no client knew its id to change it", tok, got[0].Id, got[0].State)
		case len(got) == 1:
			applied++
		}
	}
	for tok, js := range byToken {
		if !seen[tok] {
			t.Errorf("job %d has token %q, which no client submitted", js[0].Id, tok)
		}
	}
	t.Logf("end state: %d jobs; %d acknowledged submits, %d unacknowledged of which %d were applied",
		len(jobs), len(rec.acked), len(rec.unacked), applied)
}

// serverStatus asks one server for its status, or returns nil.
func serverStatus(op apirpc.OperatorClient) *api.ServerStatusResponse {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := op.ServerStatus(ctx, &api.ServerStatusRequest{})
	if err != nil {
		return nil
	}
	return st
}

// refusesWhileCut checks that server cut, cut off from the others, no
// longer acknowledges: a submit sent to it alone gets no answer (it goes
// in the history as a submit of unknown outcome, which the accounting at
// the end covers) and a consistent read of a job it holds fails.
func refusesWhileCut(t *testing.T, c *client, rec *record, cut int, now func() int64) {
	t.Helper()
	b := make([]byte, 12)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	call := now()
	r, err := c.jobs[cut].Submit(ctx, &api.SubmitRequest{IdempotencyToken: tok, Spec: &api.JobSpec{Name: "lin-cut", Hold: true, GpusPerNode: 1,
		Script: "#!/bin/sh\ntrue\n", WorkingDir: os.TempDir()}})
	cancel()
	ret := now()
	rec.mu.Lock()
	if err == nil {
		rec.ops = append(rec.ops, porcupine.Operation{ClientId: clients + 1, Input: input{opSubmit, tok}, Call: call, Return: ret, Output: output{}})
		rec.acked[tok] = r.JobId
		rec.tokens = append(rec.tokens, tok)
		t.Errorf("the cut-off server acknowledged a submit (job %d)", r.JobId)
	} else {
		rec.unacked = append(rec.unacked, tok)
	}
	rec.mu.Unlock()
	t.Logf("a submit to the cut-off server: %v", status.Code(err))

	tok, id, ok := rec.pick(mrand.New(mrand.NewPCG(1, 2)))
	if !ok {
		return
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	call = now()
	g, err := c.jobs[cut].GetJob(ctx, &api.GetJobRequest{JobId: id, Consistent: true})
	cancel()
	if err == nil {
		rec.add(porcupine.Operation{ClientId: clients + 1, Input: input{opRead, tok}, Call: call, Return: now(), Output: output{state: stateOf(g.Job)}})
		t.Errorf("the cut-off server answered a consistent read of job %d: %s", id, g.Job.State)
	}
	t.Logf("a consistent read from the cut-off server: %v", status.Code(err))
}
