package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/loomhpc/loom/api"
	"github.com/loomhpc/loom/auth"
)

// nobody returns the unprivileged account the tests act as; they need
// root to act as another user.
func nobody(t *testing.T) auth.User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent's file access as a job's user")
	}
	u, err := auth.LookupUser(65534)
	if err != nil {
		t.Skipf("no user nobody (65534): %v", err)
	}
	return u
}

// openDir makes a directory that other users can reach (t.TempDir's
// parent is root's alone) with mode perm.
func openDir(t *testing.T, perm os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "loom-asuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, perm); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A job's output is read as its user: a file only root may read, named
// directly or through a symlink swapped in for the output, reveals
// nothing.
func TestOutputIsReadAsTheJobsUser(t *testing.T) {
	u := nobody(t)
	dir := openDir(t, 0o777)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openOutputAs(u, secret); !errors.Is(err, os.ErrPermission) {
		t.Errorf("openOutputAs(nobody, a root-only file) err = %v, want permission denied", err)
	}
	if _, err := openOutputAs(u, "/etc/shadow"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("openOutputAs(nobody, /etc/shadow) err = %v, want permission denied", err)
	}
	link := filepath.Join(dir, "slurm-1.out")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	root := auth.User{Name: "root", UID: 0, GID: 0}
	for _, who := range []auth.User{u, root} {
		if _, err := openOutputAs(who, link); !errors.Is(err, syscall.ELOOP) {
			t.Errorf("openOutputAs(%s, a symlink to a secret) err = %v, want ELOOP (not followed)", who.Name, err)
		}
	}
	mine := filepath.Join(dir, "mine.out")
	if err := os.WriteFile(mine, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(mine, int(u.UID), int(u.GID))
	f, err := openOutputAs(u, mine)
	if err != nil {
		t.Fatalf("openOutputAs(nobody, nobody's file): %v", err)
	}
	f.Close()
	// The thread that did it is the agent's again.
	if _, err := os.ReadFile(secret); err != nil {
		t.Errorf("after acting as nobody the agent cannot read its own files: %v", err)
	}
}

// A job naming a working directory or output file its user cannot use is
// refused, and the message names the option.
func TestJobPathsAreCheckedAsTheUser(t *testing.T) {
	u := nobody(t)
	open := openDir(t, 0o777)
	closed := openDir(t, 0o700)
	for _, tt := range []struct {
		dir, out, errOut, want string
	}{
		{open, filepath.Join(open, "o"), "", ""},
		{closed, filepath.Join(open, "o"), "", "--chdir=" + closed},
		{open, "/etc/shadow", "", "--output=/etc/shadow"},
		{open, filepath.Join(open, "o"), "/etc/cron.d/x", "--error=/etc/cron.d/x"},
	} {
		err := checkJobPaths(u, tt.dir, tt.out, tt.errOut)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkJobPaths(%s, %s, %s) = %v, want nil", tt.dir, tt.out, tt.errOut, err)
		case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
			t.Errorf("checkJobPaths(%s, %s, %s) = %v, want an error starting %q", tt.dir, tt.out, tt.errOut, err, tt.want)
		}
	}
	if _, err := os.Stat("/etc/cron.d/x"); err == nil {
		t.Error("checking --error=/etc/cron.d/x created the file")
	}
}

// The batch script goes into a directory of the agent's and is given to
// the user through its descriptor.
func TestScriptIsTheUsersInADirectoryOfTheAgents(t *testing.T) {
	u := nobody(t)
	a := &Agent{cfg: Config{DataDir: t.TempDir()}}
	os.MkdirAll(filepath.Join(a.cfg.DataDir, "jobs"), 0o711)
	j := &api.Job{Id: 7, Uid: u.UID, Spec: &api.JobSpec{Script: "#!/bin/sh\necho hi\n"}, Allocation: &api.Allocation{Generation: 1}}
	// A directory an older agent gave to the user is taken back.
	old := filepath.Join(a.cfg.DataDir, "jobs", "7.1")
	os.Mkdir(old, 0o700)
	os.Chown(old, int(u.UID), int(u.GID))
	path, err := a.writeScript(j, 0, u)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != u.UID || fi.Mode().Perm() != 0o500 {
		t.Errorf("script owned by %d mode %v, want %d 0500", st.Uid, fi.Mode().Perm(), u.UID)
	}
	di, _ := os.Stat(filepath.Dir(path))
	if st := di.Sys().(*syscall.Stat_t); st.Uid != 0 || di.Mode().Perm() != 0o711 {
		t.Errorf("script dir owned by %d mode %v, want root 0711", st.Uid, di.Mode().Perm())
	}
	if _, err := a.writeScript(j, 1, u); err != nil {
		t.Errorf("a second rank writing the script: %v", err)
	}
}
