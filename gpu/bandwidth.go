package gpu

// Bandwidth estimates, in GB/s in one direction between two devices, per
// link class. They rank links for placement; they are not a benchmark.
// Sources, for each figure:
//
//   - NV#: 20 GB/s per bonded link, NCCL's model (src/graph/topo.h:
//     SM70_NVLINK_BW 20.0, SM80_NVLINK_BW 20.0, SM90_NVLINK_BW 20.6). The
//     datasheets' peak is 25 GB/s per link per direction (V100: 300 GB/s
//     over 6 links both ways; A100: 600 GB/s over 12; H100: 900 GB/s over 18).
//   - PIX, PXB: 12 GB/s, NCCL's PCI_BW 12.0 ("PCI Gen3 x16"); a Gen4 x16
//     link doubles it. NCCL does peer-to-peer over PCIe up to PXB by default.
//   - PHB: 10 GB/s, Loom's estimate: the root complex forwards the traffic,
//     and NCCL stages it through host memory beyond PXB.
//   - NODE: 8 GB/s, Loom's estimate: two host bridges of one socket.
//   - SYS: 6 GB/s, NCCL's QPI_BW 6.0 (its SKL_QPI_BW is 10.0 for Skylake
//     and later, AMD_BW 16.0 for EPYC); the conservative figure.
//   - X: 5000 GB/s, NCCL's LOC_BW, so that a device is always closest to
//     itself.
const (
	BandwidthPerNVLink = 20.0
	BandwidthPIX       = 12.0
	BandwidthPXB       = 12.0
	BandwidthPHB       = 10.0
	BandwidthNODE      = 8.0
	BandwidthSYS       = 6.0
	BandwidthSelf      = 5000.0
)

// BandwidthGBps returns the estimated bandwidth of l in GB/s in one
// direction (see the constants above for the figures' sources); 0 for an
// unknown link.
func (l Link) BandwidthGBps() float64 {
	switch l.Class {
	case LinkSelf:
		return BandwidthSelf
	case LinkNV:
		return BandwidthPerNVLink * float64(l.NVLinks)
	case LinkPIX:
		return BandwidthPIX
	case LinkPXB:
		return BandwidthPXB
	case LinkPHB:
		return BandwidthPHB
	case LinkNODE:
		return BandwidthNODE
	case LinkSYS:
		return BandwidthSYS
	}
	return 0
}
