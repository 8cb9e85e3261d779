// Package topology loads a lab topology from YAML.
//
// Load reads a file; Parse does the work: it merges the shipped settings of
// configs/defaults.yaml with the topology's own, expands groups into nodes,
// allocates addresses and validates the whole file in one pass. The result is
// a pure value that nothing here ever applies to a kernel. On failure the
// error is an *Errors that lists every problem as FILE:LINE: FIELD: MESSAGE,
// sorted by line.
//
// Settings resolve in this order, later levels winning (mappings merge key by
// key, scalars replace): configs defaults, configs roles[ROLE], topology
// defaults, topology roles[ROLE], then the node or group entry itself.
package topology

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// Topology is a resolved lab: every default applied, every group expanded and
// every address allocated.
type Topology struct {
	Name     string
	File     string // the path given to Load, or the file given to Parse
	BGP      BGP
	DNS      DNS
	VIPPool  []netip.Prefix // one per family, IPv4 first: addresses for VIPs written without one
	VIPs     []VIP
	Segments []Segment // in declaration order
	Links    []Link    // point-to-point links in declaration order, each once
	Nodes    []Node    // in declaration order, groups expanded in place
}

// BGP is the lab-wide BGP setup: one AS, all iBGP.
type BGP struct {
	ASN uint32
	// RouteReflectors names the route reflector nodes, groups expanded. When
	// the topology does not list them, it is every node with role rr.
	RouteReflectors []string
}

// DNS is the lab's authoritative DNS tier: the zone its dns nodes serve.
// Each dns node is a name server of the zone, named NODE.ZONE in its NS
// records.
type DNS struct {
	Zone     string        // fully qualified, lower case, with the trailing dot: "example.org."
	TTL      time.Duration // of every answer: whole seconds, 1s to 1h; default 5s
	FailOpen bool          // when no VIP of a name can serve: answer them all (true) or none (false, NODATA)
}

// VIP is a virtual service that the LB4 tier announces and balances: one
// address, port and protocol, as IPVS has it. A VIP written with an IPv4
// and an IPv6 address, or written with none and given one of each family
// by a dual-stack VIP pool, is two VIPs here, with the same name, IPv4
// first.
type VIP struct {
	Name      string
	Address   netip.Addr
	Port      uint16
	Protocol  string   // tcp or udp
	Scheduler string   // mh, sh, wlc or rr
	Flags     []string // scheduler flags: port and fallback, for mh and sh
	// Names are the DNS names that answer with this VIP's address, fully
	// qualified, lower case, with the trailing dot: NAME.ZONE first (its
	// own name), then those of names: in the order written, duplicates dropped.
	Names []string
	// Allocated is set when the address came from the VIP pool.
	Allocated bool
}

// Segment is an L2 segment (a bridge) and the nodes attached to it.
type Segment struct {
	Name string
	// Prefixes holds one prefix per family the segment carries, IPv4
	// first: a segment is IPv4, IPv6 or dual-stack.
	Prefixes []netip.Prefix
	// MTU of the segment's interfaces; 0 leaves the kernel's default
	// (1500). Segments that carry tunnelled traffic (LB4 to LB7) need
	// room for the outer header: 20 bytes for IPIP, 40 for IPv6.
	MTU     int
	Members []string // node names in node order
}

// Link is a point-to-point veth pair between two nodes. A is the node that
// declared the link first and has the even address of each family.
type Link struct {
	A, B           string
	AAddrs, BAddrs []netip.Prefix // one per family of p2p-pool, IPv4 first
}

// Family is an IP address family.
type Family int

// The families, in the order lists hold them.
const (
	IPv4 Family = iota
	IPv6
)

// Families lists both families, IPv4 first.
var Families = []Family{IPv4, IPv6}

// FamilyOf returns the family of a (an IPv4-mapped IPv6 address is IPv6).
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	if f == IPv4 {
		return "IPv4"
	}
	return "IPv6"
}

// ofFamily returns the prefix of family f in ps.
func ofFamily(ps []netip.Prefix, f Family) (netip.Prefix, bool) {
	for _, p := range ps {
		if FamilyOf(p.Addr()) == f {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Schedulers are the IPVS schedulers a VIP may use: Maglev and source
// hashing (consistent), weighted least-connection and round robin.
var Schedulers = []string{"mh", "sh", "wlc", "rr"}

// Role is what a node does in the lab.
type Role string

// The roles a node can have.
const (
	RoleClient Role = "client"
	RoleHost   Role = "host"
	RoleRouter Role = "router"
	RoleRR     Role = "rr"
	RoleLB4    Role = "lb4"
	RoleLB7    Role = "lb7"
	RoleServer Role = "server"
	// RoleDNS is an authoritative DNS server for the lab's zone: it
	// answers for the VIPs' names with the addresses of those that pass
	// its end-to-end checks (Settings.Health).
	RoleDNS Role = "dns"
)

// roles lists the known roles in the order messages name them.
func roles() []Role {
	return []Role{RoleClient, RoleHost, RoleRouter, RoleRR, RoleLB4, RoleLB7, RoleServer, RoleDNS}
}

// Node is one network namespace of the lab.
type Node struct {
	Name       string
	Role       Role
	Group      string      // the group entry it comes from, "" for a single node
	Interfaces []Interface // in links order, then links declared by peers
	// Loopback holds the extra addresses on lo, ranges expanded. The members
	// of a group share its backing array: do not modify its elements.
	Loopback []netip.Addr
	Routes   []Route
	Settings Settings
}

// Interface is one interface of a node.
type Interface struct {
	// Name is the interface name inside the node: the segment name, or the
	// peer node's name for a point-to-point link.
	Name    string
	Segment string // "" for a point-to-point link
	Peer    string // "" for a segment
	// Addresses holds one address per family of the segment (or of
	// p2p-pool), IPv4 first, with the prefix length of the segment, or /31
	// (/127).
	Addresses []netip.Prefix
}

// Address returns the interface's address of family f.
func (i *Interface) Address(f Family) (netip.Prefix, bool) {
	return ofFamily(i.Addresses, f)
}

// Route is a static route. Several routes of a node with the same To form
// one multipath (ECMP) route.
type Route struct {
	To  netip.Prefix // "default" is 0.0.0.0/0 or ::/0, by the family of Via
	Via netip.Addr
}

// Settings are the tunables of a node after every level is merged.
type Settings struct {
	Sysctls map[string]string
	BGP     BGPTimers
	Health  Health
	HAProxy HAProxy
	BFD     BFD
}

// BFD is how routers and LB4s watch each other between BGP keepalives: a
// BFD session per address pair, which declares the peer down after
// Multiplier intervals of silence. A router stops using a failed LB4 at
// once, long before the BGP hold time.
type BFD struct {
	Enabled    bool
	Interval   time.Duration // desired transmit and required receive interval
	Multiplier int           // packets (or echoes) missed before the session goes down
	// Echo is the interval of a router's echo function, 0 for none: ICMP
	// echo requests that the LB4's kernel answers, which detect a silent
	// LB4 while the control packets go slowly (see internal/bfd).
	Echo time.Duration
}

// BGPTimers are the BGP session timers.
type BGPTimers struct {
	HoldTime     time.Duration
	Keepalive    time.Duration
	ConnectRetry time.Duration
}

// Health is how an LB4 checks its LB7s, and how a dns node checks each VIP
// end to end before it answers with its address.
type Health struct {
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
	// RemoveFailed deletes a failed LB7 from the IPVS services instead of
	// giving it weight 0. Deletion reshuffles the Maglev table and stalls
	// the LB7's flows still held by an LB4: it is there to show why the
	// default (weight 0 with the fallback flag) is better.
	RemoveFailed bool
}

// HAProxy holds the LB7 HAProxy tunables.
type HAProxy struct {
	Maxconn        int
	TimeoutConnect time.Duration
	TimeoutClient  time.Duration
	TimeoutServer  time.Duration
	CheckInterval  time.Duration // backend server checks
	AgentInterval  time.Duration
	Rise           int
	Fall           int
	AgentPort      int
	SendProxy      bool
}

// Node returns the node with the given name.
func (t *Topology) Node(name string) (*Node, bool) {
	for i := range t.Nodes {
		if t.Nodes[i].Name == name {
			return &t.Nodes[i], true
		}
	}
	return nil, false
}

// AddressFacing returns the address of family f of node to on a segment or
// point-to-point link it shares with node from: where from reaches to
// directly. The first shared segment in to's interface order with an
// address of that family wins.
func (t *Topology) AddressFacing(from, to string, f Family) (netip.Addr, bool) {
	a, okA := t.Node(from)
	b, okB := t.Node(to)
	if !okA || !okB {
		return netip.Addr{}, false
	}
	for i := range b.Interfaces {
		ib := &b.Interfaces[i]
		for _, ia := range a.Interfaces {
			shared := (ib.Segment != "" && ib.Segment == ia.Segment) || (ib.Peer == from && ia.Peer == to)
			if p, ok := ib.Address(f); shared && ok {
				return p.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// VIPAddresses lists the VIP addresses once each (an address may serve
// several ports), in declaration order.
func (t *Topology) VIPAddresses() []netip.Addr {
	var out []netip.Addr
	for _, v := range t.VIPs {
		if !slices.Contains(out, v.Address) {
			out = append(out, v.Address)
		}
	}
	return out
}

// VIPLabel names v in reports, apart from the other VIPs: its name, with
// "/v4" or "/v6" when the name has an address of each family.
func (t *Topology) VIPLabel(v VIP) string {
	for _, o := range t.VIPs {
		if o.Name == v.Name && FamilyOf(o.Address) != FamilyOf(v.Address) {
			return v.Name + map[Family]string{IPv4: "/v4", IPv6: "/v6"}[FamilyOf(v.Address)]
		}
	}
	return v.Name
}

// VIPsNamed returns the indexes in t.VIPs of the VIPs s names: by name
// (every family), by label (see VIPLabel), by address:port, or by address
// (every port).
func (t *Topology) VIPsNamed(s string) []int {
	var out []int
	ap, apErr := netip.ParseAddrPort(s)
	a, aErr := netip.ParseAddr(s)
	for i, v := range t.VIPs {
		switch {
		case v.Name == s, t.VIPLabel(v) == s,
			apErr == nil && v.Address == ap.Addr().Unmap() && v.Port == ap.Port(),
			aErr == nil && v.Address == a.Unmap():
			out = append(out, i)
		}
	}
	return out
}

// ServiceName is a DNS name and the VIPs that answer it.
type ServiceName struct {
	Name string // FQDN with the trailing dot
	VIPs []VIP  // in VIP order
}

// ServiceNames returns every name the VIPs are served under, sorted by name.
// The name servers of the zone are the dns nodes (NodesByRole(RoleDNS)),
// each named NODE.ZONE.
func (t *Topology) ServiceNames() []ServiceName {
	out := []ServiceName{}
	at := map[string]int{}
	for _, v := range t.VIPs {
		for _, n := range v.Names {
			i, ok := at[n]
			if !ok {
				i, at[n] = len(out), len(out)
				out = append(out, ServiceName{Name: n})
			}
			out[i].VIPs = append(out[i].VIPs, v)
		}
	}
	slices.SortFunc(out, func(a, b ServiceName) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// NodesByRole returns the nodes with role r, in node order.
func (t *Topology) NodesByRole(r Role) []*Node {
	var nodes []*Node
	for i := range t.Nodes {
		if t.Nodes[i].Role == r {
			nodes = append(nodes, &t.Nodes[i])
		}
	}
	return nodes
}

// Load reads and resolves the topology file at path, or reads a resolved
// topology written by Save (a .json file).
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load topology: %w", err)
	}
	if isResolved(path) {
		return loadResolved(path, data)
	}
	return Parse(path, data)
}

// Parse resolves a topology from data; file is used in messages and in
// Topology.File only. The error, if any, is an *Errors.
func Parse(file string, data []byte) (*Topology, error) {
	c := newCollector(file)
	cfg := parseConfigs(c)
	t := resolve(c, file, data, cfg)
	if t == nil && len(c.list) == 0 {
		c.add(file, 0, 0, "", "no topology found") // Not expected; never return nothing.
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return t, nil
}
