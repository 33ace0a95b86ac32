package metrics

import (
	"testing"

	"github.com/loomhpc/loom/gpu"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func holderOf(held map[string][2]string) gpu.HolderFunc {
	return func(uuid string) (string, string, bool) {
		h, ok := held[uuid]
		return h[0], h[1], ok
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
	top, _ := gpu.Profile("dgx-a100", "gpu-node-7")
	held := map[string][2]string{top.GPUs[0].UUID: {"1234", "bob"}}
	s := gpu.NewSimSampler(top, holderOf(held))
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
			if l["hpc_job"] != "1234" || l["user"] != "bob" || v < 80 {
				t.Errorf("GPU0 held by job 1234 of bob: labels %v, utilization %v", l, v)
			}
		} else if l["hpc_job"] != "" || l["user"] != "" || v != 0 {
			t.Errorf("free GPU%s: labels %v, utilization %v, want no job and 0", l["gpu"], l, v)
		}
	}
	for _, m := range got["loom_gpu_simulated"] {
		if m.GetGauge().GetValue() != 1 {
			t.Errorf("loom_gpu_simulated = %v, want 1", m.GetGauge().GetValue())
		}
	}
}
