package netcoll

import (
	"context"
	"fmt"
)

// Send sends buf to peer, which must call Recv with a buffer of the same
// length. It returns once buf may be reused.
func Send[T Elem](ctx context.Context, c *Comm, buf []T, peer int) error {
	const name = "send"
	if peer < 0 || peer >= c.size || peer == c.rank {
		return fmt.Errorf("netcoll: %s: peer %d: want another rank in [0, %d)", name, peer, c.size)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.exchange(c.links[peer], asBytes(buf), nil, nil, dl, nil, nil)
	return c.end(ctx, name)
}

// Recv receives len(buf) elements sent by peer with Send.
func Recv[T Elem](ctx context.Context, c *Comm, buf []T, peer int) error {
	const name = "recv"
	if peer < 0 || peer >= c.size || peer == c.rank {
		return fmt.Errorf("netcoll: %s: peer %d: want another rank in [0, %d)", name, peer, c.size)
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	c.exchange(nil, nil, c.links[peer], asBytes(buf), dl, nil, nil)
	return c.end(ctx, name)
}

// RawRing streams send to the right neighbour (rank+1) while receiving
// len(recv) bytes from the left one, over the same links, chunking and
// workers as the collectives, with no reduction. It is the baseline the
// benchmark compares the collectives' bus bandwidth with.
func (c *Comm) RawRing(ctx context.Context, send, recv []byte) error {
	const name = "rawring"
	if len(send) != len(recv) {
		return fmt.Errorf("netcoll: %s: send has %d bytes, recv %d: want equal lengths", name, len(send), len(recv))
	}
	dl, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	if c.size > 1 {
		c.exchange(c.peerLink(c.rank+1), send, c.peerLink(c.rank-1), recv, dl, nil, nil)
	}
	return c.end(ctx, name)
}
