package gpu

import (
	"context"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// discoverNVML reads the topology from the driver.
func discoverNVML(ctx context.Context, host string) (*Topology, error) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: nvml.Init: %v", ErrNVMLUnavailable, nvml.ErrorString(ret))
	}
	defer nvml.Shutdown()
	return nil, fmt.Errorf("%w: enumeration not implemented", ErrNVMLUnavailable)
}

// nvmlPresent reports whether the NVML library loads and initializes.
func nvmlPresent() bool {
	if nvml.Init() != nvml.SUCCESS {
		return false
	}
	nvml.Shutdown()
	return true
}
