package probe

import (
	"context"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/loomhpc/loom/gpu"
)

// NVMLSampler reads utilization, memory, power, temperature, SM clock and
// XID events from the driver. It holds NVML open until Close.
type NVMLSampler struct {
	lib  nvml.Interface
	gpus []gpu.GPU
	devs []nvml.Device
	now  func() time.Time

	mu   sync.Mutex
	xid  map[int]uint64
	sick map[int]string
}

// NewNVMLSampler opens NVML and finds t's GPUs by UUID. It fails with
// ErrNVMLUnavailable where there is no driver.
func NewNVMLSampler(t *gpu.Topology) (*NVMLSampler, error) {
	return newNVMLSampler(newNVML(), t)
}

func newNVMLSampler(lib nvml.Interface, t *gpu.Topology) (*NVMLSampler, error) {
	if err := nvmlInit(lib); err != nil {
		return nil, err
	}
	s := &NVMLSampler{lib: lib, now: time.Now, xid: map[int]uint64{}, sick: map[int]string{}}
	for _, g := range t.GPUs {
		d, ret := lib.DeviceGetHandleByUUID(g.UUID)
		if ret != nvml.SUCCESS {
			lib.Shutdown()
			return nil, &nvmlError{"DeviceGetHandleByUUID(" + g.UUID + ")", ret}
		}
		s.gpus = append(s.gpus, g)
		s.devs = append(s.devs, d)
	}
	return s, nil
}

// Close releases NVML.
func (s *NVMLSampler) Close() error {
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return &nvmlError{"Shutdown", ret}
	}
	return nil
}

// Sample implements Sampler. A GPU whose reading fails with "GPU is lost"
// or "GPU requires reset" is marked unhealthy; a field the GPU does not
// support is left at zero.
func (s *NVMLSampler) Sample(ctx context.Context) ([]gpu.Sample, error) {
	out := make([]gpu.Sample, len(s.gpus))
	for i, g := range s.gpus {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := s.devs[i]
		smp := gpu.Sample{Index: g.Index, UUID: g.UUID, Name: g.Name, PCIBusID: g.PCIBusID, Time: s.now(), Healthy: true}
		var failed nvml.Return = nvml.SUCCESS
		check := func(ret nvml.Return) bool {
			if ret == nvml.ERROR_GPU_IS_LOST || ret == nvml.ERROR_RESET_REQUIRED {
				failed = ret
			}
			return ret == nvml.SUCCESS
		}
		if u, ret := d.GetUtilizationRates(); check(ret) {
			smp.UtilizationPct = float64(u.Gpu)
		}
		if m, ret := d.GetMemoryInfo(); check(ret) {
			smp.MemoryUsedMiB, smp.MemoryFreeMiB = m.Used>>20, m.Free>>20
		}
		if p, ret := d.GetPowerUsage(); check(ret) {
			smp.PowerW = float64(p) / 1000
		}
		if c, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); check(ret) {
			smp.TemperatureC = float64(c)
		}
		if c, ret := d.GetClockInfo(nvml.CLOCK_SM); check(ret) {
			smp.SMClockMHz = float64(c)
		}
		s.mu.Lock()
		if failed != nvml.SUCCESS {
			s.sick[g.Index] = "NVML: " + errString(failed)
		}
		smp.LastXID = s.xid[g.Index]
		if r, ok := s.sick[g.Index]; ok {
			smp.Healthy, smp.HealthReason = false, r
		}
		s.mu.Unlock()
		out[i] = smp
	}
	return out, nil
}

// Health implements Sampler: it registers for XID critical-error events on
// every GPU and waits for them (polling NVML's event set once a second, so
// that ctx is honoured) until ctx is done. Where the GPUs do not support
// the events the channel only closes with ctx.
func (s *NVMLSampler) Health(ctx context.Context) <-chan gpu.HealthEvent {
	ch := make(chan gpu.HealthEvent, 64)
	set, ret := s.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		go func() { <-ctx.Done(); close(ch) }()
		return ch
	}
	for _, d := range s.devs {
		d.RegisterEvents(nvml.EventTypeXidCriticalError, set) // unsupported GPUs just send nothing
	}
	go func() {
		defer close(ch)
		defer set.Free()
		for ctx.Err() == nil {
			data, ret := set.Wait(1000)
			if ret != nvml.SUCCESS || data.EventType != nvml.EventTypeXidCriticalError {
				continue // ERROR_TIMEOUT: nothing happened
			}
			e := s.recordXID(data)
			if e == nil {
				continue
			}
			select {
			case ch <- *e:
			case <-ctx.Done():
			}
		}
	}()
	return ch
}

// recordXID records an XID event and returns the health event it makes, or
// nil for an application XID.
func (s *NVMLSampler) recordXID(data nvml.EventData) *gpu.HealthEvent {
	uuid, ret := data.Device.GetUUID()
	if ret != nvml.SUCCESS {
		return nil
	}
	for _, g := range s.gpus {
		if g.UUID != uuid {
			continue
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.xid[g.Index] = data.EventData
		if !gpu.XIDMarksUnhealthy(data.EventData) {
			return nil
		}
		s.sick[g.Index] = gpu.XIDReason(data.EventData)
		return &gpu.HealthEvent{Index: g.Index, UUID: uuid, Reason: gpu.XIDReason(data.EventData), XID: data.EventData, Time: s.now()}
	}
	return nil
}
