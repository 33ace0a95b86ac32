package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/api/apiclient"
	"github.com/loomhpc/loom/rpcclient"
)

// Environment variables the commands read.
const (
	// EnvAddr lists the servers' gRPC addresses, comma-separated; they
	// are tried in order and the next is used when one is unavailable.
	EnvAddr = "LOOM_ADDR"
	// EnvTimeout bounds each call ("10s", "1m"); streams that follow
	// logs are not bounded.
	EnvTimeout = "LOOM_TIMEOUT"
	// EnvConsistent=1 makes every read go through the leader, as
	// --consistent does for one command.
	EnvConsistent = "LOOM_CONSISTENT"
)

// Defaults for EnvAddr and EnvTimeout.
const (
	DefaultAddr    = "127.0.0.1:7070"
	DefaultTimeout = 10 * time.Second
)

// client talks to the first Loom server of a list that answers.
type client struct {
	addrs   []string
	timeout time.Duration
	conns   map[string]*rpcclient.Conn
	// dialOptions returns the options for a connection to an address.
	dialOptions func(addr string) (rpcclient.Options, error)
	// consistent reads go through the leader (linearizable).
	consistent bool
	// lastIndex is the Raft index of this process's last write; reads ask
	// for state at least that new, so a command sees its own writes
	// whichever server answers.
	lastIndex uint64
}

// wrote records the index a write was committed at.
func (c *client) wrote(index uint64) { c.lastIndex = max(c.lastIndex, index) }

// newClient reads LOOM_ADDR, LOOM_TIMEOUT and the settings for reaching
// the servers (dial.go). Connections are made lazily.
func newClient(e *env) (*client, error) {
	c := &client{timeout: DefaultTimeout, conns: map[string]*rpcclient.Conn{}, dialOptions: e.dialOptions}
	set, setPath, err := readSettings(e)
	if err != nil {
		return nil, err
	}
	raw := e.getenv(EnvAddr)
	if strings.TrimSpace(raw) == "" {
		c.addrs = defaultAddrs(set)
	}
	for _, a := range strings.Split(raw, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.addrs = append(c.addrs, a)
		}
	}
	if len(c.addrs) == 0 {
		return nil, fmt.Errorf("%s=%q lists no server address", EnvAddr, raw)
	}
	if c.dialOptions == nil {
		var tr *transport
		c.dialOptions = func(addr string) (rpcclient.Options, error) {
			if tr == nil && !isUnixAddr(addr) {
				if tr, err = newTransport(e, set, setPath); err != nil {
					return rpcclient.Options{}, err
				}
			}
			return tr.dialOptions(addr)
		}
	}
	c.consistent = e.getenv(EnvConsistent) == "1"
	if t := e.getenv(EnvTimeout); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q is not a positive duration such as 10s", EnvTimeout, t)
		}
		c.timeout = d
	}
	return c, nil
}

// Close closes every connection made.
func (c *client) Close() {
	for _, cc := range c.conns {
		cc.Close()
	}
}

func (c *client) conn(addr string) (*rpcclient.Conn, error) {
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	opts, err := c.dialOptions(addr)
	if err != nil {
		return nil, err
	}
	opts.MaxSendBytes, opts.MaxRecvBytes = api.MaxRequestBytes, api.MaxResponseBytes
	cc, err := rpcclient.New(addr, opts)
	if err != nil {
		return nil, fmt.Errorf("server address %q: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// final marks an error that must not make do try the next server, such as
// a stream that failed after it had delivered output.
type final struct{ err error }

func (f *final) Error() string { return f.err.Error() }
func (f *final) Unwrap() error { return f.err }

// do runs call against each server in turn until one answers with
// anything but rpcclient.Unavailable. Each attempt has its own timeout unless
// bounded is false (streams that follow output). When every server is
// unavailable (a leader election, a restarting server) a bounded call goes
// round the list again with backoff until LOOM_TIMEOUT has passed, so a
// failover does not reach the user as an error. The call must be safe to
// repeat on another server (Submit reuses its idempotency token).
func (c *client) do(ctx context.Context, bounded bool, call func(ctx context.Context, cc *rpcclient.Conn) error) error {
	deadline := time.Now().Add(c.timeout)
	pause := 50 * time.Millisecond
	for {
		last, err := c.round(ctx, bounded, call)
		if last == nil {
			return err
		}
		// Retry only while some server answers: that is a cluster choosing
		// a leader. When none can be reached at all, say so at once.
		if !bounded || last.transport() || time.Now().Add(pause).After(deadline) {
			if last.transport() {
				return fmt.Errorf("cannot reach a Loom server (%s=%s): %w", EnvAddr, strings.Join(c.addrs, ","), last)
			}
			// The server answered but could not serve (no leader, an agent
			// that is down): its own message says more than "unreachable".
			return last
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// round tries each server once. It returns the outcome, or the
// Unavailable answer to report when every server was unavailable; that
// answer is one a server gave (no leader yet) in preference to a refused
// connection.
func (c *client) round(ctx context.Context, bounded bool, call func(ctx context.Context, cc *rpcclient.Conn) error) (*unavailableError, error) {
	var last *unavailableError
	for _, addr := range c.addrs {
		cc, err := c.conn(addr)
		if err != nil {
			return nil, err
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if bounded {
			actx, cancel = context.WithTimeout(ctx, c.timeout)
		}
		err = call(actx, cc)
		cancel()
		if err == nil {
			return nil, nil
		}
		var f *final
		if errors.As(err, &f) {
			return nil, f.err
		}
		switch rpcclient.CodeOf(err) {
		case rpcclient.Unavailable:
			u := &unavailableError{addr: addr, msg: rpcclient.MessageOf(err)}
			if last == nil || last.transport() {
				last = u
			}
			continue
		case rpcclient.DeadlineExceeded:
			if ctx.Err() == nil && bounded {
				return nil, fmt.Errorf("server %s did not answer within %v (set %s to wait longer)", addr, c.timeout, EnvTimeout)
			}
		}
		return nil, err
	}
	return last, nil
}

// unavailableError is a rpcclient.Unavailable answer from one server.
type unavailableError struct {
	addr string
	msg  string
}

// transport reports whether the error came from the connection rather than
// from a server that answered: rpcclient (as gRPC) names those
// "connection error".
func (u *unavailableError) transport() bool {
	return strings.HasPrefix(u.msg, "connection error")
}

func (u *unavailableError) Error() string {
	if !u.transport() {
		return u.addr + ": " + u.msg
	}
	// "connection error: desc = \"transport: Error while dialing: dial tcp
	// 127.0.0.1:1: connect: connection refused\"" says "connection
	// refused" after much noise.
	msg := strings.TrimSuffix(u.msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return u.addr + ": " + msg
}

func (c *client) jobs(cc *rpcclient.Conn) apiclient.JobServiceClient {
	return apiclient.NewJobServiceClient(cc)
}
func (c *client) nodes(cc *rpcclient.Conn) apiclient.NodeServiceClient {
	return apiclient.NewNodeServiceClient(cc)
}

// listPageJobs is how many jobs the commands ask for in one ListJobs
// call: a few MB of listing, so that 100,000 queued jobs take 20 calls
// rather than one message over the size limit.
const listPageJobs = 5000

// listJobs calls JobService.ListJobs page by page and returns every page's
// jobs in one response. Later pages are read at least as new as the first,
// and a job is in at most one page (they are cut by id).
func (c *client) listJobs(ctx context.Context, req *api.ListJobsRequest) (*api.ListJobsResponse, error) {
	if req.Limit == 0 {
		req.Limit = listPageJobs
	}
	req.MinIndex, req.Consistent = c.lastIndex, req.Consistent || c.consistent
	all := &api.ListJobsResponse{}
	for {
		var resp *api.ListJobsResponse
		err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
			var err error
			resp, err = c.jobs(cc).ListJobs(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		all.Jobs = append(all.Jobs, resp.Jobs...)
		all.Index = max(all.Index, resp.Index)
		if resp.NextAfterId == 0 || resp.NextAfterId <= req.AfterId {
			return all, nil
		}
		req.AfterId, req.MinIndex = resp.NextAfterId, max(req.MinIndex, resp.Index)
	}
}

// getJob calls JobService.GetJob.
func (c *client) getJob(ctx context.Context, id uint64) (*api.Job, error) {
	var resp *api.GetJobResponse
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.jobs(cc).GetJob(ctx, &api.GetJobRequest{JobId: id, MinIndex: c.lastIndex, Consistent: c.consistent})
		return err
	})
	return resp.GetJob(), err
}

// listNodes calls NodeService.ListNodes.
func (c *client) listNodes(ctx context.Context) (*api.ListNodesResponse, error) {
	var resp *api.ListNodesResponse
	err := c.do(ctx, true, func(ctx context.Context, cc *rpcclient.Conn) error {
		var err error
		resp, err = c.nodes(cc).ListNodes(ctx, &api.ListNodesRequest{MinIndex: c.lastIndex, Consistent: c.consistent})
		return err
	})
	return resp, err
}

// errorMessage is what a user sees for err: the server's message without
// gRPC's "rpc error: code = ... desc =" wrapping.
func errorMessage(err error) string {
	msg := err.Error()
	if s, ok := err.(*rpcclient.Error); ok {
		msg = s.Message
	}
	// A wrapped status error: keep our context, drop gRPC's prefix.
	if i := strings.Index(msg, "rpc error: code = "); i >= 0 {
		if j := strings.Index(msg[i:], " desc = "); j >= 0 {
			msg = msg[:i] + msg[i+j+len(" desc = "):]
		}
	}
	return msg
}

// messageAbout is err's message with the prefix removed that the caller
// is about to print anyway ("job 12: "), so it is not said twice.
func messageAbout(err error, prefixes ...string) string {
	msg := errorMessage(err)
	for _, p := range prefixes {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// withClient makes a client from e, runs f, and closes it; a bad
// LOOM_ADDR or LOOM_TIMEOUT is reported as an error.
func withClient(e *env, f func(c *client) int) int {
	c, err := newClient(e)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	return f(c)
}

// consistentRead is the --consistent option: every read this command makes
// goes through the leader.
func consistentRead(e *env) func(string) error {
	return func(string) error {
		e.environ = append(e.environ, EnvConsistent+"=1")
		return nil
	}
}
