package lab

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/cpustat"
	"github.com/lab-lb/lab/internal/topology"
)

// Mode is how a lab runs: natively or in a VM.
type Mode string

// The run modes.
const (
	ModeNative Mode = "native" // network namespaces on the host kernel
	ModeVM     Mode = "vm"     // network namespaces inside a user-mode Linux kernel
)

// Role is what a node does in the lab, as its topology file says.
type Role string

// The roles a node can have.
const (
	RoleClient Role = "client" // runs loads and requests (lab load, lab curl)
	RoleHost   Role = "host"   // any other end host
	RoleRouter Role = "router" // BGP and ECMP towards the LB4s
	RoleRR     Role = "rr"     // a BGP route reflector
	RoleLB4    Role = "lb4"    // IPVS, tunnels to the LB7s, announces the VIPs
	RoleLB7    Role = "lb7"    // HAProxy, answers clients directly
	RoleServer Role = "server" // a backend
	RoleDNS    Role = "dns"    // the lab zone's name server, answering with the VIPs that serve
)

// Family is an IP address family: a VIP, a node address or a source
// address is IPv4 or IPv6.
type Family int

// The address families.
const (
	IPv4 Family = iota
	IPv6
)

// FamilyOf returns the family of a (an IPv4-mapped IPv6 address is IPv6).
func FamilyOf(a netip.Addr) Family { return Family(topology.FamilyOf(a)) }

// String returns "IPv4" or "IPv6".
func (f Family) String() string { return topology.Family(f).String() }

// Status is the state of a running lab, as `lab status -o json` prints it.
type Status struct {
	// Name is the lab's name; Mode how it runs; Topology the file it was
	// brought up from; Kernel the release of the kernel it runs on.
	Name     string `json:"name"`
	Mode     Mode   `json:"mode"`
	Topology string `json:"topology"`
	Kernel   string `json:"kernel"`
	// Started is when the lab's supervisor started.
	Started time.Time `json:"started"`
	// Phase is building, ready or stopping.
	Phase string `json:"phase"`
	// SupervisorPID is the supervisor's process id in the lab's kernel
	// (the VM's, in VM mode).
	SupervisorPID int `json:"supervisor_pid"`
	// Nodes are the lab's nodes in topology order.
	Nodes []NodeStatus `json:"nodes"`
	// VIPs are the lab's virtual services, in topology order, with the
	// addresses allocated from the VIP pool.
	VIPs []VIPStatus `json:"vips,omitempty"`
	// UpTime is how long `up` took.
	UpTime time.Duration `json:"up_time_ns"`
	// DownLinks are the links Lab.SetLink set down and nothing set up
	// again, in order.
	DownLinks []LinkStatus `json:"down_links,omitempty"`
}

// LinkStatus names a link as Lab.SetLink does: a node's leg of a segment
// (Link is the segment), or the link between two nodes (Link is the other
// node; Node is then the first of the two by name).
type LinkStatus struct {
	Node string `json:"node"`
	Link string `json:"link"`
}

// Node returns the status of the node called name.
func (s *Status) Node(name string) (NodeStatus, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeStatus{}, false
}

// VIPStatus is one VIP: one address, port and protocol.
type VIPStatus struct {
	// Name is the VIP's name in the topology (a dual-stack VIP is two
	// VIPStatus of the same name).
	Name string `json:"name"`
	// Address is ADDR:PORT.
	Address string `json:"address"`
	// Protocol is tcp or udp.
	Protocol string `json:"protocol"`
	// Scheduler is the IPVS scheduler: mh (Maglev), sh, wlc or rr.
	Scheduler string `json:"scheduler"`
	// Names are the DNS names that answer with it, fully qualified.
	Names []string `json:"names,omitempty"`
	// Allocated is set when the address came from the VIP pool.
	Allocated bool `json:"allocated,omitempty"`
}

// NodeStatus is one node of a running lab.
type NodeStatus struct {
	// Name is the node's name; Role its role (a Role, as a string).
	Name string `json:"name"`
	Role string `json:"role"`
	// Netns is the node's network namespace.
	Netns string `json:"netns"`
	// Interfaces are the node's interfaces with their addresses.
	Interfaces []InterfaceStatus `json:"interfaces"`
	// Loopback counts the extra addresses on the node's lo.
	Loopback int `json:"loopback_addresses"`
	// Agent is what the node's agent says of itself.
	Agent AgentStatus `json:"agent"`
}

// InterfaceStatus is one interface of a node.
type InterfaceStatus struct {
	// Name is the interface's name in the node: the segment's, or the
	// peer node's for a point-to-point link.
	Name string `json:"name"`
	// Addresses holds one address per family, IPv4 first, with its prefix
	// length ("192.0.2.1/27").
	Addresses []string `json:"addresses,omitempty"`
	// Segment is the segment it joins, or Peer the node it links to.
	Segment string `json:"segment,omitempty"`
	Peer    string `json:"peer,omitempty"`
}

// AgentStatus is what a node's agent says of itself.
type AgentStatus struct {
	// State is running; killed or frozen (Lab.Kill, Lab.Freeze); slow (no
	// answer in time: a busy VM), unreachable or exited.
	State string `json:"state"`
	// PID is the agent's process id in the lab's kernel; Started when it
	// started.
	PID     int       `json:"pid,omitempty"`
	Started time.Time `json:"started,omitzero"`
	// Error says why the agent could not be asked.
	Error string `json:"error,omitempty"`
	// Ready says whether the node's tier has converged; Waiting says on
	// what when it has not.
	Ready   bool   `json:"ready"`
	Waiting string `json:"waiting,omitempty"`
	// Tier is the role's own state as JSON: BGP sessions and routes on
	// routers, IPVS services and LB7 health on LB4s, HAProxy servers on
	// LB7s. Its shape is not part of this API: it follows the tiers'
	// implementation. Summary is the same in one line for a person.
	Tier    json.RawMessage `json:"tier,omitempty"`
	Summary string          `json:"summary,omitempty"`
}

// statusFrom is the public form of a status from the control API.
func statusFrom(st *control.Status) *Status {
	if st == nil {
		return nil
	}
	out := &Status{
		Name: st.Name, Mode: Mode(st.Mode), Topology: st.Topology, Kernel: st.Kernel,
		Started: st.Started, Phase: st.Phase, SupervisorPID: st.SupervisorPID, UpTime: st.UpTime,
	}
	out.Nodes = convert(st.Nodes, func(n control.NodeStatus) NodeStatus {
		return NodeStatus{
			Name: n.Name, Role: n.Role, Netns: n.Netns, Loopback: n.Loopback, Agent: AgentStatus(n.Agent),
			Interfaces: convert(n.Interfaces, func(i control.InterfaceStatus) InterfaceStatus { return InterfaceStatus(i) }),
		}
	})
	out.VIPs = convert(st.VIPs, func(v control.VIPStatus) VIPStatus { return VIPStatus(v) })
	out.DownLinks = convert(st.DownLinks, func(l control.LinkStatus) LinkStatus { return LinkStatus(l) })
	return out
}

// Event is one entry of a lab's event log.
type Event struct {
	// Seq numbers the events in the order the lab first saw them; an
	// event from a node that answered late has a higher number than
	// events of earlier times seen before it.
	Seq uint64 `json:"seq,omitempty"`
	// Time is when it happened; Node where.
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	// Kind is route, health, ipvs, bgp, bfd, maintenance, inject...: the
	// Event* constants name those that programs read.
	Kind string `json:"kind"`
	// Msg says what happened, for a person.
	Msg string `json:"msg"`
	// Route is what a router's FIB holds for a prefix now, on events of
	// kind EventRoute.
	Route *Route `json:"route,omitempty"`
}

// Event kinds that programs read (others are for people).
const (
	// EventRoute: a router changed its FIB route to a VIP (Event.Route).
	EventRoute = "route"
	// EventInject: the lab injected a failure into the node (Lab.Kill,
	// Lab.SetLink...), or ended one.
	EventInject = "inject"
	// EventBFD: a BFD session went up, or down after it was up.
	EventBFD = "bfd"
)

// Route is a route in a router's FIB: no next hop means no route.
type Route struct {
	// Prefix is the VIP's prefix (a /32 or /128), NextHops the LB4s the
	// router spreads it over (ECMP).
	Prefix   netip.Prefix `json:"prefix"`
	NextHops []netip.Addr `json:"next_hops"`
}

// eventsFrom is the public form of events from the control API.
func eventsFrom(evs []control.Event) []Event {
	return convert(evs, func(e control.Event) Event {
		out := Event{Seq: e.Seq, Time: e.Time, Node: e.Node, Kind: e.Kind, Msg: e.Msg}
		if e.Route != nil {
			r := Route(*e.Route)
			out.Route = &r
		}
		return out
	})
}

// CPUReport is where the lab kernel's CPU time went, by kind of process,
// as `lab cpu -o json` prints it.
type CPUReport struct {
	// Interval is how long it was measured; 0 means since boot (each
	// process since it started).
	Interval time.Duration `json:"interval_ns"`
	// CPUs is the number of CPUs; Busy the share of their time not idle,
	// from 0 to 1.
	CPUs int     `json:"cpus"`
	Busy float64 `json:"busy"`
	// Kinds are the processes by kind, the busiest first. The kind "other
	// (kernel, ended processes)" is the busy time no running process
	// accounts for: interrupts, kernel threads, processes that ended.
	Kinds []CPUKind `json:"kinds"`
}

// CPUKind is the CPU time of one kind of process: an LB7's HAProxies,
// the routers' agents...
type CPUKind struct {
	// Kind names the kind; Processes counts its processes.
	Kind      string `json:"kind"`
	Processes int    `json:"processes"`
	// CPU is in CPUs: 0.25 is a quarter of one CPU.
	CPU float64 `json:"cpu"`
}

// cpuReportFrom is the public form of a CPU report.
func cpuReportFrom(r *cpustat.Report) *CPUReport {
	if r == nil {
		return nil
	}
	return &CPUReport{
		Interval: r.Interval, CPUs: r.CPUs, Busy: r.Busy,
		Kinds: convert(r.Kinds, func(k cpustat.Kind) CPUKind { return CPUKind(k) }),
	}
}

// convert maps f over in, keeping nil apart from empty: the JSON of a
// public type is that of the internal one, null and [] alike.
func convert[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
