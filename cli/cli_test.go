package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	want := []string{"logs", "node", "operator", "report", "sacct", "salloc", "sbatch", "scancel", "scontrol", "sinfo", "squeue", "srun"}
	if got := Commands(); !slices.Equal(got, want) {
		t.Errorf("Commands() = %q, want %q", got, want)
	}
	for _, name := range want {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), name, []string{"--help"}, strings.NewReader(""), &out, &errb); code != 0 {
			t.Errorf("Run(%q, --help) = %d, want 0; stderr %q", name, code, errb.String())
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("Run(%q, --help) printed %q, want a usage text", name, out.String())
		}
	}
}

func TestRunUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), "sbcast", nil, strings.NewReader(""), &out, &errb); code != 1 {
		t.Errorf("Run(sbcast) = %d, want 1", code)
	}
	if !strings.Contains(errb.String(), `unknown command "sbcast"`) {
		t.Errorf("Run(sbcast) stderr = %q, want it to name the command", errb.String())
	}
}

func TestTimeout(t *testing.T) {
	f := &fakeServer{hang: true}
	addr := f.start(t)
	te := newTestEnv("squeue", addr, "LOOM_TIMEOUT=50ms")
	if code := te.run(t); code != 1 {
		t.Errorf("squeue against a hung server exited %d, want 1", code)
	}
	want := "squeue: error: server " + addr + " did not answer within 50ms (set LOOM_TIMEOUT to wait longer)\n"
	if got := te.err.String(); got != want {
		t.Errorf("squeue against a hung server: stderr = %q, want %q", got, want)
	}
}

func TestClientSettings(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"LOOM_TIMEOUT=soon"}, "squeue: error: LOOM_TIMEOUT=\"soon\" is not a positive duration such as 10s\n"},
		{[]string{"LOOM_ADDR= , "}, "squeue: error: LOOM_ADDR=\" , \" lists no server address\n"},
	}
	for _, tt := range tests {
		te := newTestEnv("squeue", "unused", tt.env...)
		if code := te.run(t); code != 1 {
			t.Errorf("squeue with %q exited %d, want 1", tt.env, code)
		}
		if got := te.err.String(); got != tt.want {
			t.Errorf("squeue with %q: stderr = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	var a, b bool
	var v, w string
	opts := []*option{
		{long: "alpha", short: 'a', arg: noArg, set: setBool(&a, true)},
		{long: "beta", short: 'b', arg: noArg, set: setBool(&b, true)},
		{long: "value", short: 'v', arg: requiredArg, set: setString(&v)},
		{long: "words", arg: optionalArg, set: setString(&w)},
	}
	tests := []struct {
		args    []string
		wantPos []string
		wantErr string
		a, b    bool
		v, w    string
	}{
		{args: []string{"-ab", "x"}, wantPos: []string{"x"}, a: true, b: true},
		{args: []string{"-av1"}, a: true, v: "1"},
		{args: []string{"-v", "-a"}, v: "-a"},
		{args: []string{"--val", "2", "y", "--words=z"}, wantPos: []string{"y"}, v: "2", w: "z"},
		{args: []string{"--words", "y"}, wantPos: []string{"y"}},
		{args: []string{"--", "-a"}, wantPos: []string{"-a"}},
		{args: []string{"-"}, wantPos: []string{"-"}},
		{args: []string{"--value"}, wantErr: "option '--value' requires an argument"},
		{args: []string{"-v"}, wantErr: "option requires an argument -- 'v'"},
		{args: []string{"--alpha=1"}, wantErr: "option '--alpha' doesn't allow an argument"},
		{args: []string{"-z"}, wantErr: "unrecognized option '-z'"},
	}
	for _, tt := range tests {
		a, b, v, w = false, false, "", ""
		pos, err := parseAndApply(opts, tt.args)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != tt.wantErr {
			t.Errorf("parseAndApply(%q) error = %q, want %q", tt.args, gotErr, tt.wantErr)
			continue
		}
		if err == nil && (!slices.Equal(pos, tt.wantPos) || a != tt.a || b != tt.b || v != tt.v || w != tt.w) {
			t.Errorf("parseAndApply(%q) = %q a=%v b=%v v=%q w=%q; want %q a=%v b=%v v=%q w=%q",
				tt.args, pos, a, b, v, w, tt.wantPos, tt.a, tt.b, tt.v, tt.w)
		}
	}
}
