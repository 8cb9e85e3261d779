// Package graph draws a lab: its nodes tier by tier, its segments and
// links, and, for a running lab, each node's state, the routers' ECMP next
// hops and the LB7s each LB4 finds healthy.
//
// Build makes the model from a topology (and a status, for a running lab);
// DOT and Mermaid write it as text; Layout places it, a row a tier, and
// Render draws that as SVG or PNG, in Go (no Graphviz). What a node's
// state is, and which edges a status adds, are pure functions of the
// status (nodeState, ecmpEdges, healthyEdges).
package graph

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
)

// Graph is a lab as the drawings show it.
type Graph struct {
	Name string `json:"name"`
	// Live is set when the graph was built with a running lab's status:
	// nodes have a State, and the ECMP and healthy edges are there.
	Live     bool      `json:"live"`
	Nodes    []Node    `json:"nodes"`    // in topology order
	Segments []Segment `json:"segments"` // in topology order
	// Edges are the segments' and links' edges, then the ECMP edges, then
	// the healthy edges (see EdgeKind).
	Edges []Edge `json:"edges"`
	VIPs  []VIP  `json:"vips"`

	// ShowAddresses writes each node's addresses and each segment's
	// prefixes in the drawings.
	ShowAddresses bool `json:"-"`
	// ShowVIPs adds a note that lists the VIPs, with an edge to each LB4
	// that announces them, and labels the ECMP edges of a router that
	// sends some VIPs only to an LB4.
	ShowVIPs bool `json:"-"`
}

// The ranks of the tiers, top to bottom: the rank of a node is that of its
// role (RankOf).
const (
	RankClients = iota // clients and dns nodes
	RankHosts          // hosts (internet)
	RankRouters        // routers and route reflectors
	RankLB4            // LB4s
	RankLB7            // LB7s
	RankServers        // backends
)

// RankOf returns the rank of the tier of a node with role r.
func RankOf(r topology.Role) int {
	switch r {
	case topology.RoleClient, topology.RoleDNS:
		return RankClients
	case topology.RoleRouter, topology.RoleRR:
		return RankRouters
	case topology.RoleLB4:
		return RankLB4
	case topology.RoleLB7:
		return RankLB7
	case topology.RoleServer:
		return RankServers
	}
	return RankHosts
}

// Node is a node of the lab.
type Node struct {
	Name       string        `json:"name"`
	Role       topology.Role `json:"role"`
	Rank       int           `json:"rank"` // of its tier, 0 at the top: see RankOf
	Interfaces []Interface   `json:"interfaces"`
	Loopback   int           `json:"loopback,omitempty"` // extra addresses on lo
	// State is the node's state in a live graph, "" otherwise; Why says
	// what it comes from (the agent's error, what the tier waits for).
	State State  `json:"state,omitempty"`
	Why   string `json:"why,omitempty"`
	// Summary is the agent's own one-line summary of its tier.
	Summary string `json:"summary,omitempty"`
	// Announces names the VIPs an LB4 announces: every VIP from a
	// topology alone; in a live graph, none while it is withdrawn or in
	// maintenance, and not those withdrawn on their own (lab maint --vip).
	Announces []string `json:"announces,omitempty"`
}

// Interface is one interface of a node.
type Interface struct {
	Name      string   `json:"name"`
	Segment   string   `json:"segment,omitempty"`
	Peer      string   `json:"peer,omitempty"`
	Addresses []string `json:"addresses,omitempty"` // one per family, IPv4 first, with prefix length
}

// Segment is an L2 segment.
type Segment struct {
	Name     string   `json:"name"`
	Prefixes []string `json:"prefixes"`
	MTU      int      `json:"mtu,omitempty"`
	Members  []string `json:"members"`
}

// VIP is one virtual service: one address, port and protocol.
type VIP struct {
	Name      string   `json:"name"`
	Address   string   `json:"address"` // ADDR:PORT
	Protocol  string   `json:"protocol"`
	Scheduler string   `json:"scheduler"`
	Names     []string `json:"names,omitempty"` // DNS names, fully qualified
}

// EdgeKind is what an edge stands for.
type EdgeKind string

// The kinds of edges.
const (
	// EdgeSegment joins a node and a segment it is on. From is the upper
	// of the two: a node of the segment's top tier, or the segment.
	EdgeSegment EdgeKind = "segment"
	// EdgeLink is a point-to-point link, from the upper node.
	EdgeLink EdgeKind = "link"
	// EdgeECMP goes from a router to an LB4 that is a next hop of its
	// routes to VIPs (live graphs).
	EdgeECMP EdgeKind = "ecmp"
	// EdgeHealthy goes from an LB4 to an LB7 its health checks find
	// healthy: one it sends flows to (live graphs).
	EdgeHealthy EdgeKind = "healthy"
)

// Edge is a line of the drawing.
type Edge struct {
	From string   `json:"from"`
	To   string   `json:"to"`
	Kind EdgeKind `json:"kind"`
	// VIPs names the VIPs an ECMP edge carries (with /v4 or /v6 when a
	// VIP's other family goes elsewhere).
	VIPs []string `json:"vips,omitempty"`
}

// Build makes the graph of topology t. With st, the status of the lab
// running t, nodes get their State, and the routers' ECMP next hops and
// the LB4s' healthy LB7s become edges; st may be nil (a topology file, no
// lab). Nodes of st that t lacks are left out.
func Build(t *topology.Topology, st *control.Status) *Graph {
	g := &Graph{Name: t.Name, Live: st != nil, Nodes: []Node{}, Segments: []Segment{}, Edges: []Edge{}, VIPs: []VIP{}}
	for _, v := range t.VIPs {
		g.VIPs = append(g.VIPs, VIP{Name: v.Name, Address: netip.AddrPortFrom(v.Address, v.Port).String(),
			Protocol: v.Protocol, Scheduler: v.Scheduler, Names: v.Names})
	}
	for _, tn := range t.Nodes {
		n := Node{Name: tn.Name, Role: tn.Role, Rank: RankOf(tn.Role), Loopback: len(tn.Loopback)}
		for _, i := range tn.Interfaces {
			gi := Interface{Name: i.Name, Segment: i.Segment, Peer: i.Peer}
			for _, a := range i.Addresses {
				gi.Addresses = append(gi.Addresses, a.String())
			}
			n.Interfaces = append(n.Interfaces, gi)
		}
		if tn.Role == topology.RoleLB4 {
			n.Announces = vipNames(t)
		}
		if st == nil {
			g.Nodes = append(g.Nodes, n)
			continue
		}
		if ns, ok := nodeStatus(st, tn.Name); ok {
			n.State, n.Why = nodeState(tn.Role, ns.Agent)
			n.Summary = ns.Agent.Summary
			if tn.Role == topology.RoleLB4 {
				n.Announces = announces(t, ns.Agent)
			}
		} else {
			n.State, n.Why = StateUnknown, "not in the lab's status"
		}
		g.Nodes = append(g.Nodes, n)
	}
	rank := map[string]int{}
	for _, n := range g.Nodes {
		rank[n.Name] = n.Rank
	}
	for _, s := range t.Segments {
		gs := Segment{Name: s.Name, MTU: s.MTU, Members: slices.Clone(s.Members)}
		for _, p := range s.Prefixes {
			gs.Prefixes = append(gs.Prefixes, p.String())
		}
		g.Segments = append(g.Segments, gs)
		g.Edges = append(g.Edges, segmentEdges(s.Name, s.Members, rank)...)
	}
	for _, l := range t.Links {
		from, to := l.A, l.B
		if rank[to] < rank[from] {
			from, to = to, from
		}
		g.Edges = append(g.Edges, Edge{From: from, To: to, Kind: EdgeLink})
	}
	if st != nil {
		g.Edges = append(g.Edges, ecmpEdges(t, st)...)
		g.Edges = append(g.Edges, healthyEdges(t, st)...)
	}
	return g
}

// segmentEdges joins a segment and its members, top to bottom: from the
// members of the segment's top tier to the segment, and from the segment
// to the others.
func segmentEdges(seg string, members []string, rank map[string]int) []Edge {
	top := -1
	for _, m := range members {
		if top < 0 || rank[m] < top {
			top = rank[m]
		}
	}
	var out []Edge
	for _, m := range members {
		if rank[m] == top {
			out = append(out, Edge{From: m, To: seg, Kind: EdgeSegment})
		} else {
			out = append(out, Edge{From: seg, To: m, Kind: EdgeSegment})
		}
	}
	return out
}

// vipNames lists the names of t's VIPs once each, in order.
func vipNames(t *topology.Topology) []string {
	var out []string
	for _, v := range t.VIPs {
		if !slices.Contains(out, v.Name) {
			out = append(out, v.Name)
		}
	}
	return out
}

// nodeStatus returns the status of the node named name in st.
func nodeStatus(st *control.Status, name string) (control.NodeStatus, bool) {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return control.NodeStatus{}, false
}

// tierStatus decodes an agent's tier status into a T; ok is false when
// there is none (an agent that does not answer) or it does not decode.
func tierStatus[T any](a control.AgentStatus) (v T, ok bool) {
	if len(a.Tier) == 0 || string(a.Tier) == "null" {
		return v, false
	}
	return v, json.Unmarshal(a.Tier, &v) == nil
}

// announces names the VIPs an LB4 with agent status a announces: none
// when it is not in service, or when its status says nothing.
func announces(t *topology.Topology, a control.AgentStatus) []string {
	st, ok := tierStatus[node.LB4Status](a)
	if !ok || a.State != "running" || st.Disabled || !st.Announced {
		return nil
	}
	var out []string
	for _, v := range vipNames(t) {
		if !slices.Contains(st.DisabledVIPs, v) {
			out = append(out, v)
		}
	}
	return out
}

// ecmpEdges are the edges from each router to the LB4s its FIB routes
// VIPs through, in node order, labelled with those VIPs.
func ecmpEdges(t *topology.Topology, st *control.Status) []Edge {
	owner := addressOwners(t)
	var out []Edge
	for _, r := range t.NodesByRole(topology.RoleRouter) {
		ns, ok := nodeStatus(st, r.Name)
		if !ok {
			continue
		}
		rs, ok := tierStatus[node.RouterStatus](ns.Agent)
		if !ok {
			continue
		}
		vips := map[string][]string{} // LB4 -> VIP labels
		for p, nhs := range rs.Routes {
			prefix, err := netip.ParsePrefix(p)
			if err != nil {
				continue
			}
			for _, nh := range nhs {
				lb4, ok := owner[nh.Unmap()]
				if !ok {
					continue
				}
				for _, v := range t.VIPs {
					if v.Address == prefix.Addr() && !slices.Contains(vips[lb4], t.VIPLabel(v)) {
						vips[lb4] = append(vips[lb4], t.VIPLabel(v))
					}
				}
			}
		}
		for _, lb4 := range t.NodesByRole(topology.RoleLB4) {
			if labels, ok := vips[lb4.Name]; ok {
				out = append(out, Edge{From: r.Name, To: lb4.Name, Kind: EdgeECMP, VIPs: vipOrder(t, labels)})
			}
		}
	}
	return out
}

// vipOrder sorts VIP labels in VIP order and writes a VIP routed in both
// families by its name alone.
func vipOrder(t *topology.Topology, labels []string) []string {
	var out []string
	for _, v := range t.VIPs {
		l := t.VIPLabel(v)
		if !slices.Contains(labels, l) {
			continue
		}
		if l != v.Name {
			other := v.Name + "/v6"
			if strings.HasSuffix(l, "/v6") {
				other = v.Name + "/v4"
			}
			if slices.Contains(labels, other) {
				l = v.Name
			}
		}
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// addressOwners maps the LB4s' addresses to their names.
func addressOwners(t *topology.Topology) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, n := range t.NodesByRole(topology.RoleLB4) {
		for _, i := range n.Interfaces {
			for _, a := range i.Addresses {
				out[a.Addr()] = n.Name
			}
		}
	}
	return out
}

// healthyEdges are the edges from each running LB4 to the LB7s its health
// checks find healthy, in node order.
func healthyEdges(t *topology.Topology, st *control.Status) []Edge {
	var out []Edge
	for _, lb4 := range t.NodesByRole(topology.RoleLB4) {
		ns, ok := nodeStatus(st, lb4.Name)
		if !ok || ns.Agent.State != "running" {
			continue
		}
		ls, ok := tierStatus[node.LB4Status](ns.Agent)
		if !ok {
			continue
		}
		for _, lb7 := range t.NodesByRole(topology.RoleLB7) {
			for _, h := range ls.Health {
				if h.Name == lb7.Name && h.Healthy {
					out = append(out, Edge{From: lb4.Name, To: lb7.Name, Kind: EdgeHealthy})
				}
			}
		}
	}
	return out
}
