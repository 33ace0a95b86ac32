package netcoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/loomhpc/loom/rankenv"
)

// Config describes one rank of a communicator. FromEnv fills it from the
// launcher's environment; tests and embedders may build it directly.
type Config struct {
	Rank       int
	WorldSize  int
	LocalRank  int
	MasterAddr string // host of rank 0's store
	MasterPort int    // port of rank 0's store

	// StoreListener, on rank 0 only, is an already-bound listener for the
	// store (tests use port 0). When nil rank 0 listens on MasterPort.
	StoreListener net.Listener

	// Secret is the job's shared secret (LOOM_JOB_SECRET, decoded), at
	// least 16 bytes. The store and every peer connection prove knowledge
	// of it before anything else, so a process that does not know it can
	// neither join the ring nor set store keys. Init refuses a Config
	// without one unless Insecure is set.
	Secret []byte
	// Insecure lets a Config without a Secret run unauthenticated: any
	// process that reaches the store's or a rank's port can then join.
	// For tests and launchers that predate LOOM_JOB_SECRET; FromEnv sets
	// it from NETCOLL_INSECURE=1 when LOOM_JOB_SECRET is unset.
	Insecure bool

	// Epoch fences generations of a job: every handshake carries it and a
	// connection with another epoch is refused. FromEnv reads
	// LOOM_GENERATION.
	Epoch uint64

	// Transport is "auto" (shared memory between ranks on one host, TCP
	// otherwise), "tcp", "shm" or "rdma". Env NETCOLL_TRANSPORT.
	Transport string
	// NSocks is the number of TCP streams per peer. Env NETCOLL_NSOCKS.
	NSocks int
	// ChunkBytes is the pipelining unit of the ring and chain algorithms.
	// Env NETCOLL_CHUNK (accepts K/M suffixes).
	ChunkBytes int
	// Algo forces an algorithm: "auto", "ring", "rd" (recursive doubling /
	// binomial tree / Bruck). Env NETCOLL_ALGO.
	Algo string
	// RingThreshold is the message size in bytes from which the ring (and
	// the chain broadcast) replace the latency-bound algorithms when Algo is
	// "auto". Zero picks the measured default: 2 MiB for two ranks, 256 KiB
	// otherwise. Env NETCOLL_RING_THRESHOLD.
	RingThreshold int
	// Timeout bounds how long one transfer may wait for a peer before the
	// peer is declared stalled. Env NETCOLL_TIMEOUT (a Go duration).
	Timeout time.Duration
	// ConnectTimeout bounds rendezvous and mesh set-up.
	ConnectTimeout time.Duration
	// ShmBytes is the size of each shared-memory ring buffer.
	// Env NETCOLL_SHM_BYTES.
	ShmBytes int
}

// Defaults, measured on the 2-core build machine (docs/netcoll.md).
const (
	defaultNSocks         = 2
	defaultChunk          = 512 << 10
	defaultRingThreshold  = 256 << 10 // N >= 3
	defaultRingThreshold2 = 2 << 20   // N == 2: both algorithms move the same bytes
	defaultTimeout        = 5 * time.Minute
	defaultConnectTimeout = 2 * time.Minute
	defaultShmBytes       = 4 << 20

	// maxNSocks bounds NETCOLL_NSOCKS, and the socket count a peer's
	// handshake may announce.
	maxNSocks = 64
)

// key returns the secret the handshakes use, or nil to skip them.
func (c *Config) key() []byte {
	if len(c.Secret) == 0 {
		return nil
	}
	return c.Secret
}

func (c *Config) setDefaults() {
	if c.Transport == "" {
		c.Transport = "auto"
	}
	if c.NSocks <= 0 {
		c.NSocks = defaultNSocks
	}
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = defaultChunk
	}
	c.ChunkBytes = (c.ChunkBytes + 7) &^ 7 // keep chunks element-aligned
	if c.Algo == "" {
		c.Algo = "auto"
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.ShmBytes <= 0 {
		c.ShmBytes = defaultShmBytes
	}
}

func (c *Config) validate() error {
	switch {
	case c.WorldSize < 1:
		return fmt.Errorf("netcoll: %s=%d: world size must be at least 1", rankenv.WorldSize, c.WorldSize)
	case c.Rank < 0 || c.Rank >= c.WorldSize:
		return fmt.Errorf("netcoll: %s=%d: rank must be in [0, %d)", rankenv.Rank, c.Rank, c.WorldSize)
	case c.MasterAddr == "" && !(c.Rank == 0 && c.StoreListener != nil):
		return fmt.Errorf("netcoll: %s is empty: set it to rank 0's host", rankenv.MasterAddr)
	case c.MasterPort <= 0 && c.StoreListener == nil:
		return fmt.Errorf("netcoll: %s=%d: want a TCP port", rankenv.MasterPort, c.MasterPort)
	}
	switch {
	case len(c.Secret) == 0 && !c.Insecure:
		return fmt.Errorf("netcoll: %s is not set: every rank needs the job's secret (NETCOLL_INSECURE=1 runs without authentication)", rankenv.LoomJobSecret)
	case len(c.Secret) > 0 && len(c.Secret) < rankenv.MinJobSecretBytes:
		return fmt.Errorf("netcoll: %s: %d bytes, want at least %d", rankenv.LoomJobSecret, len(c.Secret), rankenv.MinJobSecretBytes)
	case c.NSocks > maxNSocks:
		return fmt.Errorf("netcoll: NETCOLL_NSOCKS=%d: want at most %d", c.NSocks, maxNSocks)
	}
	switch c.Transport {
	case "auto", "tcp", "shm", "rdma":
	default:
		return fmt.Errorf("netcoll: NETCOLL_TRANSPORT=%q: want auto, tcp, shm or rdma", c.Transport)
	}
	switch c.Algo {
	case "auto", "ring", "rd":
	default:
		return fmt.Errorf("netcoll: NETCOLL_ALGO=%q: want auto, ring or rd", c.Algo)
	}
	return nil
}

// FromEnv initialises a communicator from the launcher's environment
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, LOOM_GENERATION,
// LOOM_JOB_SECRET and the NETCOLL_* knobs).
func FromEnv(ctx context.Context) (*Comm, error) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	return Init(ctx, cfg)
}

// ConfigFromEnv reads a Config from the environment without connecting.
func ConfigFromEnv() (Config, error) {
	re, err := rankenv.FromOS()
	if err != nil {
		return Config{}, fmt.Errorf("netcoll: %w", err)
	}
	cfg := Config{
		Rank:       re.Rank,
		WorldSize:  re.WorldSize,
		LocalRank:  re.LocalRank,
		MasterAddr: re.MasterAddr,
		MasterPort: re.MasterPort,
		Epoch:      re.Generation,
	}
	switch secret, serr := rankenv.JobSecret(os.LookupEnv); {
	case serr == nil:
		cfg.Secret = secret
	case errors.Is(serr, rankenv.ErrNotSet):
		cfg.Insecure = os.Getenv("NETCOLL_INSECURE") == "1" // validate refuses otherwise
	default:
		return Config{}, fmt.Errorf("netcoll: %w", serr)
	}
	size := func(name string, dst *int) {
		v := os.Getenv(name)
		if v == "" || err != nil {
			return
		}
		n, e := parseSize(v)
		if e != nil {
			err = fmt.Errorf("netcoll: %s=%q: %v", name, v, e)
		}
		*dst = n
	}
	size("NETCOLL_NSOCKS", &cfg.NSocks)
	size("NETCOLL_CHUNK", &cfg.ChunkBytes)
	size("NETCOLL_RING_THRESHOLD", &cfg.RingThreshold)
	size("NETCOLL_SHM_BYTES", &cfg.ShmBytes)
	cfg.Algo = os.Getenv("NETCOLL_ALGO")
	cfg.Transport = os.Getenv("NETCOLL_TRANSPORT")
	if v := os.Getenv("NETCOLL_TIMEOUT"); v != "" && err == nil {
		d, e := time.ParseDuration(v)
		if e != nil {
			err = fmt.Errorf("netcoll: NETCOLL_TIMEOUT=%q: %v", v, e)
		}
		cfg.Timeout = d
	}
	if err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	return cfg, cfg.validate()
}

// parseSize parses a byte count with an optional K, M or G suffix (powers
// of 1024), as nccl-tests' -b and -e do.
func parseSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("not a size: want a non-negative number with an optional K/M/G suffix")
	}
	return v * mult, nil
}

// ParseSize parses a byte count such as "1K", "256M" or "4096".
func ParseSize(s string) (int, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("netcoll: size %q: %v", s, err)
	}
	return n, nil
}
