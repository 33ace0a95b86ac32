package probe

import (
	"context"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/loomhpc/loom/gpu"
)

// The NVML sampler, driven through go-nvml's DGX H100 mock.
func TestNVMLSampler(t *testing.T) {
	s := dgxh100.New()
	top := &gpu.Topology{}
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
		top.GPUs = append(top.GPUs, gpu.GPU{Index: i, UUID: dev.UUID, Name: "NVIDIA H100 80GB HBM3"})
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
