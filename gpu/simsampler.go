package gpu

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"sync"
	"time"
)

// SimSampler makes plausible readings for simulated GPUs: a GPU a job holds
// runs busy (about 90% utilization, three quarters of its memory, most of
// its power), a free one idles; a slow wave per GPU keeps the graphs alive.
// Every Sample is marked Simulated. Tests and the agent's fault drills can
// inject XID errors.
type SimSampler struct {
	mu     sync.Mutex
	gpus   []GPU
	holder HolderFunc
	now    func() time.Time
	xid    map[int]uint64 // last XID per GPU index
	sick   map[int]string // unhealthy GPUs and why
	subs   map[chan HealthEvent]struct{}
}

// NewSimSampler returns a sampler over t's GPUs; holder (may be nil) tells
// which GPUs jobs hold.
func NewSimSampler(t *Topology, holder HolderFunc) *SimSampler {
	s := &SimSampler{
		gpus:   append([]GPU(nil), t.GPUs...),
		holder: holder,
		now:    time.Now,
		xid:    map[int]uint64{},
		sick:   map[int]string{},
		subs:   map[chan HealthEvent]struct{}{},
	}
	for _, g := range s.gpus {
		if !g.Healthy && g.HealthReason != "" {
			s.sick[g.Index] = g.HealthReason
		}
	}
	return s
}

// SetClock replaces the clock (tests).
func (s *SimSampler) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Sample implements Sampler.
func (s *SimSampler) Sample(ctx context.Context) ([]Sample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Sample, len(s.gpus))
	for i, g := range s.gpus {
		m := modelByName(g.Name)
		total := g.MemoryMiB
		busy := false
		if s.holder != nil {
			_, _, busy = s.holder(g.UUID)
		}
		reason, sick := s.sick[g.Index]
		// wave is in [-1, 1], a period of a minute, shifted per GPU.
		wave := math.Sin(2*math.Pi*float64(now.UnixMilli()%60000)/60000 + phase(g.UUID))
		smp := Sample{
			Index: g.Index, UUID: g.UUID, Name: g.Name, PCIBusID: g.PCIBusID, Time: now,
			LastXID: s.xid[g.Index], Healthy: !sick, HealthReason: reason, Simulated: true,
		}
		if busy && !sick {
			smp.UtilizationPct = math.Round(90 + 6*wave)
			smp.MemoryUsedMiB = uint64(float64(total) * (0.75 + 0.05*wave))
			smp.PowerW = math.Round(m.powerW * (0.35 + 0.5*smp.UtilizationPct/100))
			smp.TemperatureC = math.Round(34 + 36*smp.UtilizationPct/100 + 2*wave)
			smp.SMClockMHz = m.smClock
		} else {
			smp.PowerW = math.Round(m.powerW * 0.1)
			smp.TemperatureC = math.Round(30 + wave)
			smp.SMClockMHz = 345
		}
		smp.MemoryFreeMiB = total - min(smp.MemoryUsedMiB, total)
		out[i] = smp
	}
	return out, nil
}

func phase(uuid string) float64 {
	h := fnv.New32a()
	h.Write([]byte(uuid))
	return float64(h.Sum32()%360) * math.Pi / 180
}

// Health implements Sampler.
func (s *SimSampler) Health(ctx context.Context) <-chan HealthEvent {
	ch := make(chan HealthEvent, 64)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.subs, ch)
		close(ch)
		s.mu.Unlock()
	}()
	return ch
}

// InjectXID makes GPU index report XID x, as if the driver had logged it.
// An XID that points at the hardware marks the GPU unhealthy and is sent
// to Health watchers; an application XID (13, 31, 43, 45, 68, 109) is only
// recorded.
func (s *SimSampler) InjectXID(index int, x uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.gpu(index)
	if err != nil {
		return err
	}
	s.xid[index] = x
	if XIDMarksUnhealthy(x) {
		s.sick[index] = XIDReason(x)
		s.notify(HealthEvent{Index: index, UUID: g.UUID, Healthy: false, Reason: XIDReason(x), XID: x, Time: s.now()})
	}
	return nil
}

// Heal marks GPU index healthy again (after an admin reset it) and tells
// Health watchers.
func (s *SimSampler) Heal(index int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.gpu(index)
	if err != nil {
		return err
	}
	if _, sick := s.sick[index]; !sick {
		return nil
	}
	delete(s.sick, index)
	s.notify(HealthEvent{Index: index, UUID: g.UUID, Healthy: true, Time: s.now()})
	return nil
}

func (s *SimSampler) gpu(index int) (GPU, error) {
	for _, g := range s.gpus {
		if g.Index == index {
			return g, nil
		}
	}
	return GPU{}, fmt.Errorf("gpu: no GPU with index %d", index)
}

// notify sends e to every watcher without blocking: a watcher that lets 64
// events pile up loses the newest, and still sees the state in Sample.
func (s *SimSampler) notify(e HealthEvent) {
	for ch := range s.subs {
		select {
		case ch <- e:
		default:
		}
	}
}
