package gpu

import (
	"context"
	"testing"
	"time"
)

func holderOf(held map[string][2]string) HolderFunc {
	return func(uuid string) (string, string, bool) {
		h, ok := held[uuid]
		return h[0], h[1], ok
	}
}

func TestSimSamplerFollowsHolder(t *testing.T) {
	top, _ := Profile("dgx-h100", "n1")
	held := map[string][2]string{top.GPUs[2].UUID: {"42", "alice"}}
	s := NewSimSampler(top, holderOf(held))
	s.SetClock(func() time.Time { return time.Unix(1_700_000_000, 0) })
	got, err := s.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("Sample() returned %d samples, want 8", len(got))
	}
	for _, smp := range got {
		busy := smp.Index == 2
		if !smp.Simulated || !smp.Healthy {
			t.Errorf("GPU%d Simulated=%v Healthy=%v, want both true", smp.Index, smp.Simulated, smp.Healthy)
		}
		if busy != (smp.UtilizationPct >= 80) || (!busy && smp.UtilizationPct != 0) {
			t.Errorf("GPU%d held=%v utilization = %v", smp.Index, busy, smp.UtilizationPct)
		}
		if smp.MemoryUsedMiB+smp.MemoryFreeMiB != 81559 {
			t.Errorf("GPU%d used+free = %d, want 81559", smp.Index, smp.MemoryUsedMiB+smp.MemoryFreeMiB)
		}
		if smp.PowerW <= 0 || smp.PowerW > 700 || smp.TemperatureC < 25 || smp.TemperatureC > 90 || smp.SMClockMHz <= 0 || smp.SMClockMHz > 1980 {
			t.Errorf("GPU%d sample %+v out of H100 ranges", smp.Index, smp)
		}
	}
	if got[2].PowerW <= got[0].PowerW || got[2].TemperatureC <= got[0].TemperatureC {
		t.Errorf("held GPU2 (%vW, %vC) not hotter than idle GPU0 (%vW, %vC)", got[2].PowerW, got[2].TemperatureC, got[0].PowerW, got[0].TemperatureC)
	}
}

func TestSimSamplerXID(t *testing.T) {
	top, _ := Profile("pcie-4", "n1")
	s := NewSimSampler(top, nil)
	ctx, cancel := context.WithCancel(context.Background())
	events := s.Health(ctx)

	if err := s.InjectXID(1, 13); err != nil { // application error: recorded only
		t.Fatal(err)
	}
	if err := s.InjectXID(3, 79); err != nil {
		t.Fatal(err)
	}
	e := <-events
	if e.Index != 3 || e.Healthy || e.XID != 79 || e.Reason != "XID 79: GPU has fallen off the bus" || e.UUID != top.GPUs[3].UUID {
		t.Errorf("health event = %+v, want GPU3 unhealthy with XID 79", e)
	}
	got, _ := s.Sample(context.Background())
	if !got[1].Healthy || got[1].LastXID != 13 {
		t.Errorf("GPU1 after XID 13: Healthy=%v LastXID=%d, want healthy, 13", got[1].Healthy, got[1].LastXID)
	}
	if got[3].Healthy || got[3].LastXID != 79 || got[3].HealthReason == "" {
		t.Errorf("GPU3 after XID 79: %+v, want unhealthy with a reason", got[3])
	}
	if err := s.Heal(3); err != nil {
		t.Fatal(err)
	}
	if e := <-events; e.Index != 3 || !e.Healthy {
		t.Errorf("after Heal: event %+v, want GPU3 healthy", e)
	}
	if err := s.InjectXID(9, 79); err == nil {
		t.Errorf("InjectXID(9, 79) on a 4-GPU node = nil, want an error")
	}
	cancel()
	for range events { // closed once ctx is done
	}
}
