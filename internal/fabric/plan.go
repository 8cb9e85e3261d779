// Package fabric builds a lab's network out of kernel objects: one named
// network namespace per node, one bridge per L2 segment (all bridges live in
// a namespace of their own, so nothing is created in the host's namespace),
// veth pairs, addresses, loopback addresses, static routes and per-namespace
// sysctls, all through netlink.
//
// Building is split in two: NewPlan derives a Plan, a pure value, from a
// resolved topology (testable without root, printed by `lab up --dry-run`);
// Apply creates the plan's objects and records each namespace in a journal
// before creating it. Everything else lives inside those namespaces, so
// deleting the namespaces (journal.Undo) removes every link, address and
// route the lab made, and the host's own routes, links and sysctls are
// never touched.
package fabric

import (
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/topology"
)

// NetnsPrefix starts the name of every namespace a lab creates.
const NetnsPrefix = "lab-"

// NodeNetns is the name of a node's network namespace.
func NodeNetns(lab, node string) string { return NetnsPrefix + lab + "." + node }

// BridgeNetns is the name of the namespace holding a lab's bridges.
func BridgeNetns(lab string) string { return NetnsPrefix + lab }

// Plan lists the kernel objects of a lab, in creation order.
type Plan struct {
	Lab        string
	Namespaces []string // the bridge namespace first, then one per node
	Bridges    []Bridge
	Veths      []Veth
	Tunnels    []Tunnel
	Addrs      []Addr
	Routes     []Route
	Sysctls    []Sysctl
	// VIPs are there for the reader of the plan: the agents set up the
	// services, not Apply. Their addresses are in Addrs, on lo of every
	// LB4 and LB7.
	VIPs []topology.VIP
}

// Bridge is an L2 segment.
type Bridge struct {
	NS   string
	Name string
	MTU  int
}

// Veth is a veth pair created straight into two namespaces.
type Veth struct {
	NS, Name         string // the node's end
	PeerNS, PeerName string // the other node's end, or a bridge port
	Master           string // bridge the peer end joins, "" for point-to-point
	Alias            string // set on the peer end: which node and interface it serves
	MTU              int    // both ends; 0 for the kernel's default
}

// Tunnel is an IPIP tunnel, or an IPv6-in-IPv6 one when its addresses are
// IPv6, that accepts encapsulated packets from one remote only. An LB7
// gets one per LB4 and family; the catch-all tunl0 and ip6tnl0 stay down,
// so tunnelled packets from anyone else are dropped.
type Tunnel struct {
	NS, Name      string
	Local, Remote netip.Addr
}

// Is6 reports whether the tunnel carries IPv6 in IPv6.
func (t Tunnel) Is6() bool { return t.Local.Is6() }

// tunnelName names the tunnel from an LB4 (named lb4) of family f: the LB4's
// name for IPIP, "6" and the name for IPv6 (no node name starts with a
// digit), shortened with a hash of the name where that would be longer
// than an interface name may be.
func tunnelName(lb4 string, f topology.Family) string {
	if f == topology.IPv4 {
		return lb4
	}
	name := "6" + lb4
	if len(name) <= maxIfName {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(lb4))
	return fmt.Sprintf("6%s%04x", lb4[:maxIfName-5], h.Sum32()&0xffff)
}

// maxIfName is the longest interface name Linux accepts.
const maxIfName = 15

// Addr is an address on a device.
type Addr struct {
	NS, Dev string
	Prefix  netip.Prefix
}

// Route is a static route; several next hops make a multipath (ECMP) route.
type Route struct {
	NS  string
	To  netip.Prefix
	Via []netip.Addr
}

// Sysctl is a per-namespace sysctl such as net.ipv4.ip_forward.
type Sysctl struct {
	NS, Key, Value string
}

// NewPlan derives the kernel objects of topology t run as lab.
func NewPlan(t *topology.Topology, lab string) *Plan {
	p := &Plan{Lab: lab, VIPs: t.VIPs}
	brNS := BridgeNetns(lab)
	p.Namespaces = append(p.Namespaces, brNS)
	mtu := map[string]int{}
	for _, s := range t.Segments {
		p.Bridges = append(p.Bridges, Bridge{NS: brNS, Name: s.Name, MTU: s.MTU})
		mtu[s.Name] = s.MTU
	}
	for _, n := range t.Nodes {
		ns := NodeNetns(lab, n.Name)
		p.Namespaces = append(p.Namespaces, ns)
		for _, a := range n.Loopback {
			p.Addrs = append(p.Addrs, Addr{NS: ns, Dev: "lo", Prefix: netip.PrefixFrom(a, a.BitLen())})
		}
		// LB4s and LB7s hold the VIPs locally; the LB7s' ARP settings keep
		// them from answering for them on the wire.
		if n.Role == topology.RoleLB4 || n.Role == topology.RoleLB7 {
			for _, v := range t.VIPAddresses() {
				p.Addrs = append(p.Addrs, Addr{NS: ns, Dev: "lo", Prefix: netip.PrefixFrom(v, v.BitLen())})
			}
		}
		if n.Role == topology.RoleLB7 {
			for _, f := range topology.Families {
				for _, lb4 := range t.NodesByRole(topology.RoleLB4) {
					remote, ok1 := t.AddressFacing(n.Name, lb4.Name, f)
					local, ok2 := t.AddressFacing(lb4.Name, n.Name, f)
					if ok1 && ok2 {
						p.Tunnels = append(p.Tunnels, Tunnel{NS: ns, Name: tunnelName(lb4.Name, f), Local: local, Remote: remote})
					}
				}
			}
		}
		for _, ifc := range n.Interfaces {
			if ifc.Segment != "" {
				p.Veths = append(p.Veths, Veth{
					NS: ns, Name: ifc.Name,
					PeerNS: brNS, PeerName: portName(n.Name, ifc.Name),
					Master: ifc.Segment,
					Alias:  n.Name + ":" + ifc.Name,
					MTU:    mtu[ifc.Segment],
				})
			}
			for _, a := range ifc.Addresses {
				p.Addrs = append(p.Addrs, Addr{NS: ns, Dev: ifc.Name, Prefix: a})
			}
		}
		// Routes of a node to the same destination are one multipath route.
		first := len(p.Routes)
	routes:
		for _, r := range n.Routes {
			for i := first; i < len(p.Routes); i++ {
				if p.Routes[i].To == r.To {
					p.Routes[i].Via = append(p.Routes[i].Via, r.Via)
					continue routes
				}
			}
			p.Routes = append(p.Routes, Route{NS: ns, To: r.To, Via: []netip.Addr{r.Via}})
		}
		for _, k := range slices.Sorted(maps.Keys(n.Settings.Sysctls)) {
			p.Sysctls = append(p.Sysctls, Sysctl{NS: ns, Key: k, Value: n.Settings.Sysctls[k]})
		}
	}
	for _, l := range t.Links {
		// The interface in each node is named after the node at the other
		// end, as the topology resolves it.
		p.Veths = append(p.Veths, Veth{
			NS: NodeNetns(lab, l.A), Name: l.B,
			PeerNS: NodeNetns(lab, l.B), PeerName: l.A,
		})
	}
	return p
}

// String prints the plan one object a line, as `lab up --dry-run` shows it.
func (p *Plan) String() string {
	var b strings.Builder
	for _, ns := range p.Namespaces {
		fmt.Fprintf(&b, "netns   %s\n", ns)
	}
	for _, br := range p.Bridges {
		fmt.Fprintf(&b, "bridge  %s in %s\n", br.Name, br.NS)
	}
	for _, v := range p.Veths {
		fmt.Fprintf(&b, "veth    %s/%s <-> %s/%s", v.NS, v.Name, v.PeerNS, v.PeerName)
		if v.Master != "" {
			fmt.Fprintf(&b, " (bridge %s)", v.Master)
		}
		if v.MTU != 0 {
			fmt.Fprintf(&b, " mtu %d", v.MTU)
		}
		b.WriteByte('\n')
	}
	for _, tu := range p.Tunnels {
		kind := "ipip   "
		if tu.Is6() {
			kind = "ip6ip6 "
		}
		fmt.Fprintf(&b, "%s %s/%s local %s remote %s\n", kind, tu.NS, tu.Name, tu.Local, tu.Remote)
	}
	for _, a := range p.Addrs {
		fmt.Fprintf(&b, "addr    %s/%s %s\n", a.NS, a.Dev, a.Prefix)
	}
	for _, r := range p.Routes {
		fmt.Fprintf(&b, "route   %s %s via", r.NS, r.To)
		for _, v := range r.Via {
			fmt.Fprintf(&b, " %s", v)
		}
		b.WriteByte('\n')
	}
	for _, s := range p.Sysctls {
		fmt.Fprintf(&b, "sysctl  %s %s=%s\n", s.NS, s.Key, s.Value)
	}
	for _, v := range p.VIPs {
		fmt.Fprintf(&b, "vip     %s %s/%s %s", v.Name, netip.AddrPortFrom(v.Address, v.Port), v.Protocol, v.Scheduler)
		if v.Allocated {
			b.WriteString(" (from vip-pool)")
		}
		if len(v.Names) > 0 {
			fmt.Fprintf(&b, " names %s", strings.Join(v.Names, " "))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// portName names a node's port on a bridge after the node and interface,
// hashed to fit the 15 characters of an interface name: the name stays the
// same when other nodes come and go (lab add, lab remove). The alias holds
// the readable form.
func portName(node, ifc string) string {
	h := fnv.New32a()
	h.Write([]byte(node + ":" + ifc))
	return fmt.Sprintf("p%08x", h.Sum32())
}
