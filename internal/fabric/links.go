package fabric

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/journal"
)

// End is one end of a link: an interface in a namespace.
type End struct {
	NS, Name string
}

// LinkEnds returns both ends of the veth that carries node's link named
// other (a segment: the node's leg of it, ending on a bridge port; or a
// peer node: the point-to-point link).
func (p *Plan) LinkEnds(node, other string) ([]End, error) {
	ns := NodeNetns(p.Lab, node)
	for _, v := range p.Veths {
		switch {
		case v.NS == ns && v.Name == other:
			return []End{{v.NS, v.Name}, {v.PeerNS, v.PeerName}}, nil
		case v.PeerNS == ns && v.PeerName == other && v.Master == "":
			return []End{{v.PeerNS, v.PeerName}, {v.NS, v.Name}}, nil
		}
	}
	return nil, fmt.Errorf("%s has no link named %s (give a segment it joins or a node it is linked to)", node, other)
}

// NodeEnds returns both ends of every veth of node.
func (p *Plan) NodeEnds(node string) []End {
	ns := NodeNetns(p.Lab, node)
	var out []End
	for _, v := range p.Veths {
		if v.NS == ns || v.PeerNS == ns {
			out = append(out, End{v.NS, v.Name}, End{v.PeerNS, v.PeerName})
		}
	}
	return out
}

// SetUp sets every end up or down.
func SetUp(ends []End, up bool) error {
	return eachLink(ends, func(h *netlink.Handle, l netlink.Link) error {
		if up {
			return h.LinkSetUp(l)
		}
		return h.LinkSetDown(l)
	})
}

// Impairment is what netem does to the packets an interface sends.
type Impairment struct {
	Delay, Jitter time.Duration
	Loss          float64 // percent
}

// IsZero reports whether the impairment does nothing.
func (im Impairment) IsZero() bool { return im == Impairment{} }

// ErrNoNetem says the kernel lacks the netem queueing discipline.
var ErrNoNetem = errors.New("the kernel has no netem queueing discipline (sch_netem): run the lab in the VM (--vm always) to impair links")

// Impair puts a netem queueing discipline on every end (so both directions
// suffer), or removes it when im is zero.
func Impair(ends []End, im Impairment) error {
	return eachLink(ends, func(h *netlink.Handle, l netlink.Link) error {
		attrs := netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
		if im.IsZero() {
			err := h.QdiscDel(netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{}))
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
				return nil // none there
			}
			return err
		}
		q := netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
			Latency: uint32(im.Delay.Microseconds()), Jitter: uint32(im.Jitter.Microseconds()), Loss: float32(im.Loss),
		})
		err := h.QdiscReplace(q)
		if errors.Is(err, unix.ENOENT) {
			return ErrNoNetem
		}
		return err
	})
}

func eachLink(ends []End, fn func(*netlink.Handle, netlink.Link) error) error {
	for _, e := range ends {
		ns, err := netns.GetFromPath(NetnsPath(e.NS))
		if err != nil {
			return fmt.Errorf("open netns %s: %w", e.NS, err)
		}
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		ns.Close()
		if err != nil {
			return fmt.Errorf("open netlink in %s: %w", e.NS, err)
		}
		l, err := h.LinkByName(e.Name)
		if err == nil {
			err = fn(h, l)
		}
		h.Close()
		if err != nil {
			return fmt.Errorf("%s/%s: %w", e.NS, e.Name, err)
		}
	}
	return nil
}

// NetnsPath is where a named namespace is mounted.
func NetnsPath(name string) string { return journal.NetnsDir + "/" + name }
