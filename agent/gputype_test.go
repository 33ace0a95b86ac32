package agent

import (
	"strings"
	"testing"

	"github.com/loomhpc/loom/api"
)

func TestNameGPUModels(t *testing.T) {
	flat := func() *api.Topology {
		return &api.Topology{Gpus: []*api.GPU{{Index: 0, Model: "NVIDIA L4", Simulated: true}, {Index: 1, Model: "NVIDIA L4", Simulated: true}}}
	}
	top := flat()
	if err := nameGPUModels(top, "a100"); err != nil {
		t.Fatalf("nameGPUModels(flat, a100) = %v", err)
	}
	n := &api.Node{Topology: top}
	if !n.HasGPUType("a100") || !n.HasGPUType("A100") || n.HasGPUType("l4") {
		t.Errorf("flat GPUs named a100: HasGPUType(a100) false; models %q, %q", top.Gpus[0].Model, top.Gpus[1].Model)
	}
	named := &api.Topology{Gpus: []*api.GPU{{Index: 0, Model: "NVIDIA H100 80GB HBM3"}}}
	if err := nameGPUModels(named, "a100"); err == nil || !strings.Contains(err.Error(), "GPU 0 is a real NVIDIA H100 80GB HBM3 (type h100) that NVML found") {
		t.Errorf("nameGPUModels(real h100s, a100) = %v, want a refusal naming the model", err)
	}
	if err := nameGPUModels(flat(), "a100:2"); err == nil {
		t.Errorf("nameGPUModels(flat, a100:2) = nil, want a refusal")
	}
	if err := nameGPUModels(named, ""); err != nil || named.Gpus[0].Model != "NVIDIA H100 80GB HBM3" {
		t.Errorf("no --gpu-type changed the model to %q (%v)", named.Gpus[0].Model, err)
	}
}
