//go:build !linux

package netcoll

import "context"

// upgradeLinks is a no-op where shared memory is not implemented: every
// link stays on TCP.
func (c *Comm) upgradeLinks(ctx context.Context, infos []peerInfo) error { return nil }
