package gpu

import (
	"context"
	"strconv"
	"time"
)

// Sample is one reading of one GPU, in the units the DCGM exporter uses.
type Sample struct {
	Index    int
	UUID     string
	Name     string // model
	PCIBusID string
	Time     time.Time

	UtilizationPct float64 // DCGM_FI_DEV_GPU_UTIL, 0-100
	MemoryUsedMiB  uint64  // DCGM_FI_DEV_FB_USED
	MemoryFreeMiB  uint64  // DCGM_FI_DEV_FB_FREE
	PowerW         float64 // DCGM_FI_DEV_POWER_USAGE
	TemperatureC   float64 // DCGM_FI_DEV_GPU_TEMP
	SMClockMHz     float64 // DCGM_FI_DEV_SM_CLOCK
	// LastXID is the last XID error seen on the GPU, 0 if none
	// (DCGM_FI_DEV_XID_ERRORS has the same meaning).
	LastXID uint64

	Healthy      bool
	HealthReason string // why not healthy
	Simulated    bool   // the values are made up, not read from a GPU
}

// HealthEvent says a GPU's health changed: an XID error or an NVML error
// made it unhealthy (or, for simulated GPUs, a test healed it).
type HealthEvent struct {
	Index   int
	UUID    string
	Healthy bool
	Reason  string // "XID 79: GPU has fallen off the bus", "NVML: GPU is lost"
	XID     uint64 // 0 when not an XID event
	Time    time.Time
}

// HolderFunc says which job, of which user, holds the GPU with this UUID;
// ok is false when the GPU is free.
type HolderFunc func(uuid string) (job, user string, ok bool)

// Sampler reads GPU utilization and health. NewNVMLSampler reads the driver;
// NewSimSampler makes plausible values for simulated GPUs.
type Sampler interface {
	// Sample returns one reading per GPU, in index order. A GPU that cannot
	// be read comes back unhealthy with the error as its reason; the error
	// return is for the sampler as a whole.
	Sample(ctx context.Context) ([]Sample, error)
	// Health returns a channel of health changes, closed when ctx is done.
	// Each call starts its own watch.
	Health(ctx context.Context) <-chan HealthEvent
}

// applicationXIDs are XIDs caused by the program on the GPU, not the GPU
// itself (illegal memory access, MMU fault, reset channel, …): the GPU
// stays healthy. It is the list NVIDIA's Kubernetes device plugin skips
// (DP_DISABLE_HEALTHCHECKS defaults: 13, 31, 43, 45, 68, 109).
var applicationXIDs = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

// XIDMarksUnhealthy reports whether XID x means the GPU needs attention;
// an XID the program on the GPU caused leaves it healthy.
func XIDMarksUnhealthy(x uint64) bool { return !applicationXIDs[x] }

// xidReasons names the XIDs an admin meets most (NVIDIA's XID catalog).
var xidReasons = map[uint64]string{
	13:  "graphics engine exception",
	31:  "GPU memory page fault",
	43:  "GPU stopped processing",
	45:  "preemptive cleanup",
	48:  "double bit ECC error",
	61:  "internal micro-controller breakpoint/warning",
	62:  "internal micro-controller halt",
	63:  "ECC page retirement or row remapping recording event",
	64:  "ECC page retirement or row remapper recording failure",
	74:  "NVLink error",
	79:  "GPU has fallen off the bus",
	92:  "high single-bit ECC error rate",
	94:  "contained ECC error",
	95:  "uncontained ECC error",
	119: "GSP RPC timeout",
	120: "GSP error",
}

// XIDReason returns "XID n: what it means" for XID n.
func XIDReason(x uint64) string {
	if r, ok := xidReasons[x]; ok {
		return "XID " + strconv.FormatUint(x, 10) + ": " + r
	}
	return "XID " + strconv.FormatUint(x, 10)
}
