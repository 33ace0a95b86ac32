package rankenv

import (
	"errors"
	"testing"
)

func lookupIn(env map[string]string) LookupFunc {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestRead(t *testing.T) {
	full := func() map[string]string {
		return map[string]string{
			Rank: "3", WorldSize: "8", LocalRank: "1",
			MasterAddr: "node01", MasterPort: "29500", LoomGeneration: "4",
		}
	}
	got, err := Read(lookupIn(full()))
	want := Env{Rank: 3, WorldSize: 8, LocalRank: 1, MasterAddr: "node01", MasterPort: 29500, Generation: 4}
	if err != nil || got != want {
		t.Fatalf("Read(full) = %+v, %v, want %+v", got, err, want)
	}

	for _, c := range []struct {
		name    string
		change  map[string]string // "" deletes
		wantVar string
		wantMsg string
	}{
		{"rank missing", map[string]string{Rank: ""}, Rank, "RANK is not set"},
		{"rank not a number", map[string]string{Rank: "x"}, Rank, "RANK=x: not a non-negative integer"},
		{"rank negative", map[string]string{Rank: "-1"}, Rank, "RANK=-1: not a non-negative integer"},
		{"rank outside world", map[string]string{Rank: "8"}, Rank, "RANK=8: rank must be in [0, 8)"},
		{"world missing", map[string]string{WorldSize: ""}, WorldSize, "WORLD_SIZE is not set"},
		{"world zero", map[string]string{WorldSize: "0", Rank: "0"}, WorldSize, "WORLD_SIZE=0: world size must be at least 1"},
		{"local rank junk", map[string]string{LocalRank: "one"}, LocalRank, "LOCAL_RANK=one: not a non-negative integer"},
		{"addr missing", map[string]string{MasterAddr: ""}, MasterAddr, "MASTER_ADDR is not set"},
		{"port missing", map[string]string{MasterPort: ""}, MasterPort, "MASTER_PORT is not set"},
		{"port too big", map[string]string{MasterPort: "70000"}, MasterPort, "MASTER_PORT=70000: want a TCP port"},
		{"generation junk", map[string]string{LoomGeneration: "4 "}, LoomGeneration, `LOOM_GENERATION="4 ": not a generation number`},
		{"first fault wins", map[string]string{Rank: "x", WorldSize: "y"}, Rank, "RANK=x: not a non-negative integer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := full()
			for k, v := range c.change {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			_, err := Read(lookupIn(env))
			var ve *VarError
			if !errors.As(err, &ve) || ve.Name != c.wantVar || err.Error() != c.wantMsg {
				t.Errorf("Read() error = %v, want %q about %s", err, c.wantMsg, c.wantVar)
			}
		})
	}
}

func TestReadOptional(t *testing.T) {
	got, err := Read(lookupIn(map[string]string{Rank: "0", WorldSize: "1", MasterAddr: "h", MasterPort: "1", LocalRank: ""}))
	want := Env{WorldSize: 1, MasterAddr: "h", MasterPort: 1}
	if err != nil || got != want {
		t.Errorf("Read(no LOCAL_RANK, no LOOM_GENERATION) = %+v, %v, want %+v", got, err, want)
	}
}

func TestNotSetIs(t *testing.T) {
	_, err := Read(lookupIn(nil))
	if !errors.Is(err, ErrNotSet) {
		t.Errorf("Read(empty) = %v, want an error wrapping ErrNotSet", err)
	}
}

func TestJobSecret(t *testing.T) {
	good := "00112233445566778899aabbccddeeff"
	key, err := JobSecret(lookupIn(map[string]string{LoomJobSecret: good}))
	if err != nil || len(key) != 16 || key[15] != 0xff {
		t.Errorf("JobSecret(%q) = %x, %v, want 16 bytes", good, key, err)
	}
	for _, c := range []struct {
		value   string
		wantMsg string
	}{
		{"", "LOOM_JOB_SECRET is not set"},
		{"zz112233445566778899aabbccddeeff", "LOOM_JOB_SECRET: not a hex string"},
		{"0011223344", "LOOM_JOB_SECRET: 5 bytes, want at least 16 (32 hex digits)"},
	} {
		_, err := JobSecret(lookupIn(map[string]string{LoomJobSecret: c.value}))
		var ve *VarError
		if !errors.As(err, &ve) || err.Error() != c.wantMsg {
			t.Errorf("JobSecret(%q) error = %v, want %q", c.value, err, c.wantMsg)
		}
	}
	if _, err := JobSecret(lookupIn(nil)); !errors.Is(err, ErrNotSet) {
		t.Errorf("JobSecret(unset) = %v, want ErrNotSet", err)
	}
}

func TestNewJobSecret(t *testing.T) {
	a, b := NewJobSecret(), NewJobSecret()
	if a == b {
		t.Errorf("NewJobSecret() twice = %q, want two different secrets", a)
	}
	key, err := JobSecret(lookupIn(map[string]string{LoomJobSecret: a}))
	if err != nil || len(key) != 32 {
		t.Errorf("JobSecret(NewJobSecret()) = %d bytes, %v, want 32", len(key), err)
	}
}
