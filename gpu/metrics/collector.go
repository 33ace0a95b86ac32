package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/loomhpc/loom/gpu"
	"github.com/prometheus/client_golang/prometheus"
)

// Labels of every GPU metric: the DCGM exporter's, plus the job and user
// holding the GPU (empty when it is free). The job is hpc_job, the label
// the DCGM exporter's HPC job mapping gives it: a label named job would be
// renamed exported_job by Prometheus, whose scrape job owns job.
var collectorLabels = []string{"gpu", "UUID", "device", "modelName", "Hostname", "hpc_job", "user"}

// The DCGM exporter's metrics (its default-counters.csv), same names, help
// and units, so NVIDIA's dashboards work unchanged.
var (
	descUtil  = prometheus.NewDesc("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", collectorLabels, nil)
	descUsed  = prometheus.NewDesc("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", collectorLabels, nil)
	descFree  = prometheus.NewDesc("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", collectorLabels, nil)
	descPower = prometheus.NewDesc("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", collectorLabels, nil)
	descTemp  = prometheus.NewDesc("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", collectorLabels, nil)
	descClock = prometheus.NewDesc("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", collectorLabels, nil)
	descXID   = prometheus.NewDesc("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", collectorLabels, nil)

	// Loom's own: health as the agent sees it, and whether the values are
	// simulated, so that no one mistakes a simulated node for a real one.
	descHealthy   = prometheus.NewDesc("loom_gpu_healthy", "1 if the GPU is healthy, 0 after an XID or NVML error.", collectorLabels, nil)
	descSimulated = prometheus.NewDesc("loom_gpu_simulated", "1 if the GPU and its metrics are simulated, not read from a device.", collectorLabels, nil)
)

// sampleTimeout bounds one scrape's reading of the GPUs.
const sampleTimeout = 5 * time.Second

type collector struct {
	s        gpu.Sampler
	hostname string
	holder   gpu.HolderFunc
	errs     prometheus.Counter
}

// NewCollector returns a Prometheus collector that reads s at every scrape
// and exports the DCGM exporter's GPU metrics with labels gpu, UUID, device,
// modelName, Hostname, and hpc_job and user: the job and user that holder
// says hold the GPU.
func NewCollector(s gpu.Sampler, hostname string, holder func(uuid string) (job, user string, ok bool)) prometheus.Collector {
	return &collector{
		s: s, hostname: hostname, holder: holder,
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loom_gpu_sample_errors_total", Help: "GPU samples that failed.",
			ConstLabels: prometheus.Labels{"Hostname": hostname},
		}),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUtil, descUsed, descFree, descPower, descTemp, descClock, descXID, descHealthy, descSimulated} {
		ch <- d
	}
	c.errs.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), sampleTimeout)
	defer cancel()
	samples, err := c.s.Sample(ctx)
	if err != nil {
		c.errs.Inc()
	}
	for _, s := range samples {
		job, user := "", ""
		if c.holder != nil {
			if j, u, ok := c.holder(s.UUID); ok {
				job, user = j, u
			}
		}
		lv := []string{strconv.Itoa(s.Index), s.UUID, "nvidia" + strconv.Itoa(s.Index), s.Name, c.hostname, job, user}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		gauge(descUtil, s.UtilizationPct)
		gauge(descUsed, float64(s.MemoryUsedMiB))
		gauge(descFree, float64(s.MemoryFreeMiB))
		gauge(descPower, s.PowerW)
		gauge(descTemp, s.TemperatureC)
		gauge(descClock, s.SMClockMHz)
		gauge(descXID, float64(s.LastXID))
		gauge(descHealthy, b2f(s.Healthy))
		gauge(descSimulated, b2f(s.Simulated))
	}
	c.errs.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
