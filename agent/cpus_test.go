package agent

import (
	"slices"
	"testing"
)

func TestCPUBinder(t *testing.T) {
	b, err := newCPUBinder([]int{0, 1, 2, 3}, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	a := b.take(2)
	c := b.take(3)
	if !slices.Equal(a, []int{0, 1}) || !slices.Equal(c, []int{2, 3, 4}) {
		t.Fatalf("take(2), take(3) = %v, %v; want [0 1], [2 3 4]", a, c)
	}
	// Host CPU 3 is reserved: cores fold onto 0, 1, 2.
	if got := b.hostCPUs(c); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("hostCPUs(%v) = %v, want [0 1 2]", c, got)
	}
	if got := b.take(4); got != nil {
		t.Errorf("take(4) with 3 free = %v, want nil", got)
	}
	b.mark(a, false)
	if got := b.take(2); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("take(2) after freeing [0 1] = %v", got)
	}
	if _, err := newCPUBinder([]int{0, 1}, 4, 2); err == nil {
		t.Error("reserving every host CPU succeeded, want an error")
	}
}

func TestCPUBindEnv(t *testing.T) {
	env := cpuBindEnv([]int{0, 1, 4})
	for _, want := range []string{"SLURM_CPU_BIND=quiet,mask_cpu:0x13", "SLURM_CPU_BIND_LIST=0x13", "LOOM_CPU_BIND_LIST=0-1,4"} {
		if !slices.Contains(env, want) {
			t.Errorf("cpuBindEnv = %v, lacks %q", env, want)
		}
	}
}
