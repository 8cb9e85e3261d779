package fabric

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/journal"
)

// Runtime changes (`lab add`, `lab remove`): the plans of the topology
// before and after are compared, Apply builds what Diff returns in the
// running lab, and Shrink tears down what Gone returns.

// Diff returns the objects of next that prev lacks: applied to a lab built
// from prev, it makes the lab of next. Objects are compared whole, so a
// changed one shows up too (Apply replaces addresses and routes).
func Diff(prev, next *Plan) *Plan {
	d := &Plan{Lab: next.Lab}
	d.Namespaces = added(prev.Namespaces, next.Namespaces)
	d.Bridges = added(prev.Bridges, next.Bridges)
	d.Veths = added(prev.Veths, next.Veths)
	d.Tunnels = added(prev.Tunnels, next.Tunnels)
	d.Addrs = added(prev.Addrs, next.Addrs)
	d.Sysctls = added(prev.Sysctls, next.Sysctls)
	for _, r := range next.Routes {
		if !slices.ContainsFunc(prev.Routes, func(o Route) bool { return o.NS == r.NS && o.To == r.To && slices.Equal(o.Via, r.Via) }) {
			d.Routes = append(d.Routes, r)
		}
	}
	return d
}

// Gone returns the namespaces of prev that next lacks, and the tunnels of
// prev that next lacks in namespaces that stay.
func Gone(prev, next *Plan) (namespaces []string, tunnels []Tunnel) {
	namespaces = added(next.Namespaces, prev.Namespaces)
	for _, t := range added(next.Tunnels, prev.Tunnels) {
		if !slices.Contains(namespaces, t.NS) {
			tunnels = append(tunnels, t)
		}
	}
	return namespaces, tunnels
}

// added lists the elements of next that prev lacks, in next's order.
func added[T comparable](prev, next []T) []T {
	var out []T
	for _, x := range next {
		if !slices.Contains(prev, x) {
			out = append(out, x)
		}
	}
	return out
}

// existing lists the namespaces the plan's objects live in that the plan
// does not create.
func (p *Plan) existing() []string {
	var out []string
	add := func(ns string) {
		if ns != "" && !slices.Contains(p.Namespaces, ns) && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	for _, b := range p.Bridges {
		add(b.NS)
	}
	for _, v := range p.Veths {
		add(v.NS)
		add(v.PeerNS)
	}
	for _, t := range p.Tunnels {
		add(t.NS)
	}
	for _, a := range p.Addrs {
		add(a.NS)
	}
	for _, r := range p.Routes {
		add(r.NS)
	}
	for _, s := range p.Sysctls {
		add(s.NS)
	}
	return out
}

// Shrink deletes the tunnels, then the namespaces (with whatever still runs
// in them; their veths go with them, bridge ports included). What is
// already gone is not an error, so Shrink can be run again.
func Shrink(namespaces []string, tunnels []Tunnel, log *slog.Logger) error {
	for _, t := range tunnels {
		if err := deleteLink(t.NS, t.Name); err != nil {
			return fmt.Errorf("delete tunnel %s in %s: %w", t.Name, t.NS, err)
		}
	}
	for _, name := range namespaces {
		// A thread may keep the namespace alive after its name is gone (a
		// removed LB4's BGP serve loop, pinned there for good): its
		// interfaces go first, so that it cannot keep answering for the
		// addresses a later node takes.
		if err := deleteLinks(name); err != nil {
			return fmt.Errorf("empty netns %s: %w", name, err)
		}
		if err := journal.RemoveNetns(name); err != nil {
			return fmt.Errorf("remove netns %s: %w", name, err)
		}
		log.Info("removed netns", "netns", name)
	}
	return nil
}

// inNetns runs fn with a netlink handle in the named namespace. A
// namespace already gone is not an error: fn does not run.
func inNetns(nsName string, fn func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromName(nsName)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsName, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", nsName, err)
	}
	defer h.Close()
	return fn(h)
}

// deleteLinks deletes every link of the namespace but lo (a veth takes its
// peer along).
func deleteLinks(nsName string) error {
	return inNetns(nsName, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("list links in %s: %w", nsName, err)
		}
		for _, l := range links {
			if l.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			// Fallback tunnels (tunl0, ip6tnl0) cannot be deleted; they are down.
			if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("delete %s in %s: %w", l.Attrs().Name, nsName, err)
			}
		}
		return nil
	})
}

func deleteLink(nsName, name string) error {
	return inNetns(nsName, func(h *netlink.Handle) error {
		l, err := h.LinkByName(name)
		if _, ok := err.(netlink.LinkNotFoundError); ok {
			return nil
		}
		if err != nil {
			return err
		}
		return h.LinkDel(l)
	})
}

// NewAddresses lists the addresses d puts on the interfaces (not lo) of
// the namespaces it creates: a new node's addresses, which may have been
// a removed node's.
func NewAddresses(d *Plan) []netip.Addr {
	var out []netip.Addr
	for _, a := range d.Addrs {
		if a.Dev != "lo" && slices.Contains(d.Namespaces, a.NS) {
			out = append(out, a.Prefix.Addr())
		}
	}
	return out
}

// ForgetNeighbors deletes the neighbour (ARP and NDP) entries for addrs in
// the namespaces of p. A node added at runtime takes the lowest free
// address, often one a removed node held: the others would keep sending to
// the removed node's MAC address until their entry failed, seconds to
// minutes later (a health check over a kept connection never lets it).
// What is already gone is not an error.
func ForgetNeighbors(p *Plan, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	for _, name := range p.Namespaces {
		if err := forgetNeighborsIn(name, addrs); err != nil {
			return err
		}
	}
	return nil
}

func forgetNeighborsIn(nsName string, addrs []netip.Addr) error {
	return inNetns(nsName, func(h *netlink.Handle) error {
		neighs, err := h.NeighList(0, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list neighbours in %s: %w", nsName, err)
		}
		for _, n := range neighs {
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok || !slices.Contains(addrs, a.Unmap()) {
				continue
			}
			if err := h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("forget neighbour %s in %s: %w", a, nsName, err)
			}
		}
		return nil
	})
}
