package lab

import (
	"net/netip"

	"github.com/lab-lb/lab/internal/topology"
)

// Topology is a resolved topology file: its nodes with their roles and
// addresses (groups expanded, addresses allocated), its segments, links
// and VIPs. It is what a network test needs to know of a lab; the rest of
// the file (BGP timers, sysctls and other settings of each node, the
// address pools) drives the lab's own processes and is left out.
type Topology struct {
	// Name is the topology's name, the default name of its labs.
	Name string
	// File is the file it was read from.
	File string
	// Zone is the DNS zone of the VIPs' names, which the lab's dns nodes
	// serve, fully qualified ("example.org." unless the file says).
	Zone string
	// VIPs are the virtual services, in file order; a dual-stack VIP is
	// two VIPs of the same name, IPv4 first.
	VIPs []VIP
	// Segments are the L2 segments, in file order.
	Segments []Segment
	// Links are the point-to-point links, in file order, each once.
	Links []Link
	// Nodes are the nodes in file order, groups expanded in place.
	Nodes []Node
}

// VIP is a virtual service that the LB4s announce and balance: one
// address, port and protocol.
type VIP struct {
	// Name is the VIP's name in the topology; Address and Port are
	// where it listens.
	Name    string
	Address netip.Addr
	Port    uint16
	// Protocol is tcp or udp.
	Protocol string
	// Scheduler is the IPVS scheduler: mh (Maglev), sh, wlc or rr; Flags
	// its flags (port, fallback).
	Scheduler string
	Flags     []string
	// Names are the DNS names that answer with its address, fully
	// qualified.
	Names []string
	// Allocated is set when the address came from the VIP pool.
	Allocated bool
}

// AddrPort is the VIP's address and port, as a load targets it.
func (v VIP) AddrPort() netip.AddrPort { return netip.AddrPortFrom(v.Address, v.Port) }

// Segment is an L2 segment (a bridge) and the nodes attached to it.
type Segment struct {
	// Name is the segment's name, and of its nodes' interfaces on it.
	Name string
	// Prefixes holds one prefix per family the segment carries, IPv4
	// first.
	Prefixes []netip.Prefix
	// MTU of the segment's interfaces; 0 is the kernel's default.
	MTU int
	// Members are the nodes attached, in node order.
	Members []string
}

// Link is a point-to-point link between nodes A and B, with each end's
// addresses (one per family, IPv4 first).
type Link struct {
	// A and B are the nodes; AAddrs and BAddrs their addresses on the
	// link.
	A, B           string
	AAddrs, BAddrs []netip.Prefix
}

// Node is one node of the lab: a network namespace.
type Node struct {
	// Name is the node's name (a group's nodes are GROUP-1, GROUP-2...),
	// Role what it does.
	Name string
	Role Role
	// Group is the group entry of the file it comes from, "" for a node
	// written alone.
	Group string
	// Interfaces are its interfaces, with their addresses.
	Interfaces []Interface
	// Loopback holds the extra addresses on its lo (a client's source
	// addresses, an LB's VIPs are not among them).
	Loopback []netip.Addr
	// Routes are its static routes; several with the same To are one
	// multipath route.
	Routes []StaticRoute
}

// Interface is one interface of a node.
type Interface struct {
	// Name is the segment's name, or the peer node's for a link.
	Name string
	// Segment is the segment it joins ("" for a link), Peer the node it
	// links to ("" for a segment).
	Segment string
	Peer    string
	// Addresses holds one address per family, IPv4 first, with the
	// prefix length of the segment or link.
	Addresses []netip.Prefix
}

// StaticRoute is a static route of a node.
type StaticRoute struct {
	// To is the destination (0.0.0.0/0 or ::/0 for a default route), Via
	// the next hop.
	To  netip.Prefix
	Via netip.Addr
}

// LoadTopology reads, validates and resolves a topology file, without a
// lab and without privileges. The error lists every problem as
// FILE:LINE: field: message.
func LoadTopology(path string) (*Topology, error) {
	t, err := topology.Load(path)
	if err != nil {
		return nil, err
	}
	return topologyFrom(t), nil
}

// Topology loads the lab's current topology: the one it was brought up
// with, with the nodes Add and Remove changed.
func (l *Lab) Topology() (*Topology, error) {
	t, err := l.topology()
	if err != nil {
		return nil, err
	}
	return topologyFrom(t), nil
}

// Node returns the node called name.
func (t *Topology) Node(name string) (Node, bool) {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// NodesByRole returns the nodes of role r, in order.
func (t *Topology) NodesByRole(r Role) []Node {
	var out []Node
	for _, n := range t.Nodes {
		if n.Role == r {
			out = append(out, n)
		}
	}
	return out
}

// VIPsNamed returns the VIPs called name: one, two for a dual-stack VIP,
// none when there is no such VIP.
func (t *Topology) VIPsNamed(name string) []VIP {
	var out []VIP
	for _, v := range t.VIPs {
		if v.Name == name {
			out = append(out, v)
		}
	}
	return out
}

// topologyFrom is the public form of a resolved topology.
func topologyFrom(t *topology.Topology) *Topology {
	return &Topology{
		Name: t.Name, File: t.File, Zone: t.DNS.Zone,
		VIPs:     convert(t.VIPs, func(v topology.VIP) VIP { return VIP(v) }),
		Segments: convert(t.Segments, func(s topology.Segment) Segment { return Segment(s) }),
		Links:    convert(t.Links, func(l topology.Link) Link { return Link(l) }),
		Nodes: convert(t.Nodes, func(n topology.Node) Node {
			return Node{
				Name: n.Name, Role: Role(n.Role), Group: n.Group, Loopback: n.Loopback,
				Interfaces: convert(n.Interfaces, func(i topology.Interface) Interface { return Interface(i) }),
				Routes:     convert(n.Routes, func(r topology.Route) StaticRoute { return StaticRoute(r) }),
			}
		}),
	}
}
