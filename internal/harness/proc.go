package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// Proc is one process of a test or benchmark cluster, normally loom
// itself. It runs in its own process group, so that Kill also ends what
// it started, with its stdout and stderr appended to Log, which survives
// restarts.
type Proc struct {
	Name   string   // for messages
	Binary string   // the executable
	Args   []string // its arguments
	Log    string   // file its output is appended to
	Netns  string   // when set, it runs inside this network namespace

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has been reaped
}

// Start starts the process, making the directory of its log if need be.
// After Kill (or after it exited by itself),
// Start runs it again with the same arguments.
func (p *Proc) Start() error {
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return fmt.Errorf("harness: %s: %w", p.Name, err)
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("harness: %s: %w", p.Name, err)
	}
	defer f.Close()
	cmd := exec.Command(p.Binary, p.Args...)
	if p.Netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", p.Netns, p.Binary}, p.Args...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("harness: start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

// Kill sends SIGKILL to the process and everything in its process group
// (a crash, with no chance to clean up) and waits until it is gone, so its
// listening ports are free again when Kill returns. It does nothing to a
// process that was never started.
func (p *Proc) Kill() {
	cmd, done := p.current()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// KillProcessOnly sends SIGKILL to the process alone, leaving any children
// it started (ranks of the exec driver) running, and waits until it is
// gone.
func (p *Proc) KillProcessOnly() {
	cmd, done := p.current()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Signal sends sig to the process alone (SIGHUP to reload a server's
// configuration, say); an error when it is not running.
func (p *Proc) Signal(sig syscall.Signal) error {
	cmd, _ := p.current()
	if cmd == nil || p.Exited() {
		return fmt.Errorf("harness: %s is not running", p.Name)
	}
	return cmd.Process.Signal(sig)
}

// Exited reports whether the process was started and has ended since
// (killed, or exited by itself).
func (p *Proc) Exited() bool {
	_, done := p.current()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (p *Proc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Tail returns the end of the process's log, for failure messages.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- %s log ---\n%s", p.Name, b)
}
