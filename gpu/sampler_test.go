package gpu

import (
	"context"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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

func gather(t *testing.T, c prometheus.Collector) map[string][]*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func TestCollectorDCGMNames(t *testing.T) {
	top, _ := Profile("dgx-a100", "gpu-node-7")
	held := map[string][2]string{top.GPUs[0].UUID: {"1234", "bob"}}
	s := NewSimSampler(top, holderOf(held))
	got := gather(t, NewCollector(s, "gpu-node-7", holderOf(held)))
	for _, name := range []string{
		"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE",
		"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_XID_ERRORS", "loom_gpu_healthy", "loom_gpu_simulated",
	} {
		if len(got[name]) != 8 {
			t.Errorf("%s has %d series, want 8", name, len(got[name]))
		}
	}
	for _, m := range got["DCGM_FI_DEV_GPU_UTIL"] {
		l := labels(m)
		if l["Hostname"] != "gpu-node-7" || l["modelName"] != "NVIDIA A100-SXM4-80GB" || l["device"] != "nvidia"+l["gpu"] || l["UUID"] == "" {
			t.Errorf("labels = %v", l)
		}
		v := m.GetGauge().GetValue()
		if l["gpu"] == "0" {
			if l["job"] != "1234" || l["user"] != "bob" || v < 80 {
				t.Errorf("GPU0 held by job 1234 of bob: labels %v, utilization %v", l, v)
			}
		} else if l["job"] != "" || l["user"] != "" || v != 0 {
			t.Errorf("free GPU%s: labels %v, utilization %v, want no job and 0", l["gpu"], l, v)
		}
	}
	for _, m := range got["loom_gpu_simulated"] {
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("loom_gpu_simulated = %v, want 1", m.GetGauge().GetValue())
		}
	}
}

// The NVML sampler, driven through go-nvml's DGX H100 mock.
func TestNVMLSampler(t *testing.T) {
	s := dgxh100.New()
	top := &Topology{}
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: uint32(10 * i)}, nvml.SUCCESS }
		dev.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: 80 << 30, Used: 30 << 30, Free: 50 << 30}, nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 512_345, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 61, nvml.SUCCESS }
		dev.GetClockInfoFunc = func(nvml.ClockType) (uint32, nvml.Return) { return 1980, nvml.SUCCESS }
		if i == 6 {
			dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_GPU_IS_LOST }
		}
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
		top.GPUs = append(top.GPUs, GPU{Index: i, UUID: dev.UUID, Name: "NVIDIA H100 80GB HBM3"})
	}
	xids := make(chan nvml.EventData, 1)
	xids <- nvml.EventData{Device: s.Devices[4], EventType: nvml.EventTypeXidCriticalError, EventData: 48}
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				select {
				case e := <-xids:
					return e, nvml.SUCCESS
				case <-time.After(time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	ns, err := newNVMLSampler(s, top)
	if err != nil {
		t.Fatalf("newNVMLSampler: %v", err)
	}
	defer ns.Close()
	ctx, cancel := context.WithCancel(context.Background())
	events := ns.Health(ctx)
	e := <-events
	if e.Index != 4 || e.XID != 48 || e.Healthy {
		t.Errorf("health event = %+v, want GPU4 XID 48 unhealthy", e)
	}
	cancel()
	for range events {
	}

	got, err := ns.Sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g := got[3]
	if g.UtilizationPct != 30 || g.MemoryUsedMiB != 30<<10 || g.MemoryFreeMiB != 50<<10 || g.PowerW != 512.345 || g.TemperatureC != 61 || g.SMClockMHz != 1980 || !g.Healthy || g.Simulated {
		t.Errorf("GPU3 sample = %+v", g)
	}
	if got[4].Healthy || got[4].LastXID != 48 {
		t.Errorf("GPU4 after XID 48: %+v, want unhealthy, LastXID 48", got[4])
	}
	if got[6].Healthy || got[6].HealthReason == "" {
		t.Errorf("GPU6 with a lost GPU: %+v, want unhealthy with a reason", got[6])
	}
}
