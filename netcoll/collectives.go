package netcoll

import (
	"context"
	"fmt"
)

// The collectives. Each is a function, not a method, because Go methods
// cannot take type parameters. Buffers passed to one call must not be
// touched by other goroutines until it returns. "In place" means passing
// the same slice (or, for AllGather and ReduceScatter, the rank's own
// segment of the larger buffer) as send and recv.
//
// A collective that fails leaves the communicator failed: it and every
// later call return an *Error naming the failed peer. A context that is
// already done when a call starts returns its error and leaves the
// communicator usable; one that ends during the call aborts it.

// AllReduce reduces send across all ranks with op and leaves the result in
// recv on every rank. send and recv have the same length and may be the
// same slice.
func AllReduce[T Elem](ctx context.Context, c *Comm, send, recv []T, op Op) error {
	const name = "allreduce"
	if len(send) != len(recv) {
		return fmt.Errorf("netcoll: %s: send has %d elements, recv %d: want equal lengths", name, len(send), len(recv))
	}
	if op < Sum || op > Avg {
		return fmt.Errorf("netcoll: %s: unknown op %d", name, op)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.allReduce(dtypeOf[T](), op, asBytes(send), asBytes(recv), dl)
	return c.end(ctx, name)
}

// ReduceScatter reduces send (Size() segments of len(recv) elements) across
// ranks and leaves segment Rank() of the result in recv.
func ReduceScatter[T Elem](ctx context.Context, c *Comm, send, recv []T, op Op) error {
	const name = "reducescatter"
	if len(send) != len(recv)*c.size {
		return fmt.Errorf("netcoll: %s: send has %d elements, want %d (recv %d × %d ranks)", name, len(send), len(recv)*c.size, len(recv), c.size)
	}
	if op < Sum || op > Avg {
		return fmt.Errorf("netcoll: %s: unknown op %d", name, op)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.reduceScatter(dtypeOf[T](), op, asBytes(send), asBytes(recv), dl)
	return c.end(ctx, name)
}

// AllGather gathers every rank's send into recv, rank r's at
// recv[r*len(send):]. send may be that segment of recv (in place).
func AllGather[T Elem](ctx context.Context, c *Comm, send, recv []T) error {
	const name = "allgather"
	if len(recv) != len(send)*c.size {
		return fmt.Errorf("netcoll: %s: recv has %d elements, want %d (send %d × %d ranks)", name, len(recv), len(send)*c.size, len(send), c.size)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.allGather(asBytes(send), asBytes(recv), dl)
	return c.end(ctx, name)
}

// Broadcast copies root's buf into buf on every rank.
func Broadcast[T Elem](ctx context.Context, c *Comm, buf []T, root int) error {
	const name = "broadcast"
	if root < 0 || root >= c.size {
		return fmt.Errorf("netcoll: %s: root %d out of range [0, %d)", name, root, c.size)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.broadcast(asBytes(buf), root, dl)
	return c.end(ctx, name)
}

// Reduce reduces send across ranks with op into root's recv. recv is only
// written on root and may be nil elsewhere.
func Reduce[T Elem](ctx context.Context, c *Comm, send, recv []T, op Op, root int) error {
	const name = "reduce"
	if root < 0 || root >= c.size {
		return fmt.Errorf("netcoll: %s: root %d out of range [0, %d)", name, root, c.size)
	}
	if c.rank == root && len(recv) != len(send) {
		return fmt.Errorf("netcoll: %s: send has %d elements, recv %d: want equal lengths at the root", name, len(send), len(recv))
	}
	if op < Sum || op > Avg {
		return fmt.Errorf("netcoll: %s: unknown op %d", name, op)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.reduce(dtypeOf[T](), op, asBytes(send), asBytes(recv), root, dl)
	return c.end(ctx, name)
}

// Barrier returns once every rank has entered it.
func (c *Comm) Barrier(ctx context.Context) error {
	const name = "barrier"
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.barrier(dl)
	return c.end(ctx, name)
}
