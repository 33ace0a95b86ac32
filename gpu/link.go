package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/loomhpc/loom/api"
)

// LinkClass is how two devices on a node reach each other, in the classes
// of `nvidia-smi topo -m`. Larger is closer: SYS < NODE < PHB < PXB < PIX
// < NV < Self, the same order as api.LinkType.
type LinkClass uint8

// Link classes, from farthest to closest.
const (
	LinkUnknown LinkClass = iota
	LinkSYS               // PCIe and the SMP interconnect between NUMA nodes (QPI/UPI, Infinity Fabric); SOC in old drivers
	LinkNODE              // PCIe and the interconnect between host bridges within one NUMA node
	LinkPHB               // PCIe and one PCIe host bridge (typically the CPU)
	LinkPXB               // several PCIe bridges, no host bridge
	LinkPIX               // at most one PCIe bridge
	LinkNV                // a bonded set of NVLinks
	LinkSelf              // X: the device itself
)

var classNames = [...]string{
	LinkUnknown: "?",
	LinkSYS:     "SYS",
	LinkNODE:    "NODE",
	LinkPHB:     "PHB",
	LinkPXB:     "PXB",
	LinkPIX:     "PIX",
	LinkNV:      "NV",
	LinkSelf:    "X",
}

// String returns the class as nvidia-smi abbreviates it, without the NVLink
// count ("NV", not "NV18").
func (c LinkClass) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("LinkClass(%d)", c)
}

// Link is the connection between two devices: its class and, for LinkNV,
// the number of bonded NVLinks.
type Link struct {
	Class   LinkClass
	NVLinks int
}

// String returns the link as a cell of `nvidia-smi topo -m`: "X", "NV18",
// "PIX", ….
func (l Link) String() string {
	if l.Class == LinkNV {
		return "NV" + strconv.Itoa(l.NVLinks)
	}
	return l.Class.String()
}

// Closer reports whether l is a closer (faster) connection than m: a higher
// class, or more bonded NVLinks.
func (l Link) Closer(m Link) bool {
	if l.Class != m.Class {
		return l.Class > m.Class
	}
	return l.Class == LinkNV && l.NVLinks > m.NVLinks
}

// ErrBadLink is wrapped by ParseLink's errors.
var ErrBadLink = errors.New("gpu: unknown link class")

// ParseLink parses one cell of `nvidia-smi topo -m`. It accepts "SOC", the
// name drivers before 384 used for SYS, and the "NV#" form with any count
// from 1 up.
func ParseLink(s string) (Link, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "X":
		return Link{Class: LinkSelf}, nil
	case "SYS", "SOC":
		return Link{Class: LinkSYS}, nil
	case "NODE":
		return Link{Class: LinkNODE}, nil
	case "PHB":
		return Link{Class: LinkPHB}, nil
	case "PXB":
		return Link{Class: LinkPXB}, nil
	case "PIX":
		return Link{Class: LinkPIX}, nil
	}
	if n, ok := strings.CutPrefix(s, "NV"); ok {
		k, err := strconv.Atoi(n)
		if err == nil && k > 0 && k < 1000 && n[0] != '+' {
			return Link{Class: LinkNV, NVLinks: k}, nil
		}
	}
	return Link{}, fmt.Errorf("%w %q (want X, NV#, PIX, PXB, PHB, NODE, SYS or SOC)", ErrBadLink, s)
}

// APILink converts l to the wire type.
func (l Link) APILink() *api.Link {
	al := &api.Link{Type: apiLinkTypes[l.Class]}
	if l.Class == LinkNV {
		al.Nvlinks = uint32(l.NVLinks)
	}
	return al
}

var apiLinkTypes = [...]api.LinkType{
	LinkUnknown: api.LinkType_LINK_UNKNOWN,
	LinkSYS:     api.LinkType_LINK_SYS,
	LinkNODE:    api.LinkType_LINK_NODE,
	LinkPHB:     api.LinkType_LINK_PHB,
	LinkPXB:     api.LinkType_LINK_PXB,
	LinkPIX:     api.LinkType_LINK_PIX,
	LinkNV:      api.LinkType_LINK_NV,
	LinkSelf:    api.LinkType_LINK_SELF,
}

// LinkFromAPI converts a wire link back; an unknown type gives LinkUnknown.
func LinkFromAPI(al *api.Link) Link {
	for c, t := range apiLinkTypes {
		if t == al.GetType() {
			l := Link{Class: LinkClass(c)}
			if l.Class == LinkNV {
				l.NVLinks = int(al.GetNvlinks())
			}
			return l
		}
	}
	return Link{}
}
