package agent

import (
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// newStaticResolver makes a client try each configured server in turn
// (pick_first), so the agent follows whichever server is up.
func newStaticResolver(servers []string) resolver.Builder {
	r := manual.NewBuilderWithScheme("loom-servers")
	addrs := make([]resolver.Address, len(servers))
	for i, s := range servers {
		addrs[i] = resolver.Address{Addr: s}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	return r
}

// backoff is capped exponential backoff with jitter.
type backoff struct {
	base, cap, cur time.Duration
}

func newBackoff(base, cap time.Duration) *backoff { return &backoff{base: base, cap: cap} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.base
	} else {
		b.cur = min(2*b.cur, b.cap)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}
