//go:build !(rdma && linux && cgo)

package netcoll

import (
	"context"
	"errors"
)

// rdmaLinks fails: this binary was built without the rdma tag.
func (c *Comm) rdmaLinks(ctx context.Context) error {
	return errors.New("netcoll: transport rdma is not built in: rebuild with -tags rdma (needs cgo and libibverbs)")
}
