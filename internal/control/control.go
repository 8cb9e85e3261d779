// Package control is the lab's control API: the JSON documents the
// supervisor serves, the framing of streamed command output, and a client.
//
// A lab's supervisor serves HTTP on a unix socket readable by root only
// (native mode), or on TCP over the VM's management link with a bearer token
// known only to root (VM mode). Node agents serve the same exec framing on a
// unix socket of their own, which the supervisor proxies.
package control

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/cpustat"
)

// Mode is how a lab runs.
type Mode string

// The run modes.
const (
	ModeNative Mode = "native" // namespaces on the host kernel
	ModeVM     Mode = "vm"     // namespaces inside a user-mode Linux kernel
)

// Status is the state of a lab, as `lab status -o json` prints it.
type Status struct {
	Name     string    `json:"name"`
	Mode     Mode      `json:"mode"`
	Topology string    `json:"topology"`
	Kernel   string    `json:"kernel"`
	Started  time.Time `json:"started"`
	Phase    string    `json:"phase"` // building, ready, stopping
	// SupervisorPID is the supervisor's process id in the lab's kernel
	// (the VM's, in VM mode).
	SupervisorPID int          `json:"supervisor_pid"`
	Nodes         []NodeStatus `json:"nodes"`
	// VIPs are the lab's virtual services, in topology order, with the
	// addresses allocated from the VIP pool.
	VIPs   []VIPStatus   `json:"vips,omitempty"`
	UpTime time.Duration `json:"up_time_ns"` // how long `up` took
	// DownLinks are the links `lab link ... down` set down and nothing set
	// up again, in order.
	DownLinks []LinkStatus `json:"down_links,omitempty"`
}

// LinkStatus names a link as `lab link` does: a node's leg of a segment
// (Link is the segment), or the link between two nodes (Link is the
// other node; Node is then the first of the two by name).
type LinkStatus struct {
	Node string `json:"node"`
	Link string `json:"link"`
}

// VIPStatus is one VIP: one address, port and protocol.
type VIPStatus struct {
	Name      string `json:"name"`
	Address   string `json:"address"` // ADDR:PORT
	Protocol  string `json:"protocol"`
	Scheduler string `json:"scheduler"`
	// Names are the DNS names that answer with it, fully qualified.
	Names []string `json:"names,omitempty"`
	// Allocated is set when the address came from the VIP pool.
	Allocated bool `json:"allocated,omitempty"`
}

// NodeStatus is one node.
type NodeStatus struct {
	Name       string            `json:"name"`
	Role       string            `json:"role"`
	Netns      string            `json:"netns"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	Loopback   int               `json:"loopback_addresses"`
	Agent      AgentStatus       `json:"agent"`
}

// InterfaceStatus is one interface of a node.
type InterfaceStatus struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses,omitempty"` // one per family, IPv4 first, with prefix length
	Segment   string   `json:"segment,omitempty"`
	Peer      string   `json:"peer,omitempty"`
}

// AgentStatus is what a node's agent says of itself.
type AgentStatus struct {
	State   string    `json:"state"` // running; killed, frozen (lab kill); slow, unreachable, exited
	PID     int       `json:"pid,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Ready says whether the node's tier has converged; Waiting says on
	// what when it has not.
	Ready   bool   `json:"ready"`
	Waiting string `json:"waiting,omitempty"`
	// Tier is the role's own state: BGP sessions and routes on routers,
	// IPVS services and LB7 health on LB4s, HAProxy servers on LB7s.
	Tier json.RawMessage `json:"tier,omitempty"`
	// Summary is the tier's state in one line for a person.
	Summary string `json:"summary,omitempty"`
}

// Event is one entry of a lab's event log.
type Event struct {
	// Seq numbers the events in the order the supervisor first saw them
	// (from 1): GET /v1/events?since=N answers those after N, whatever
	// their time (an event of a node that answered late has an older time
	// than some before it, and a higher number).
	Seq  uint64    `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	Kind string    `json:"kind"` // route, health, ipvs, bgp, bfd, maintenance, inject...
	Msg  string    `json:"msg"`
	// Route is what a router's FIB holds for a prefix now, on events of
	// kind EventRoute.
	Route *Route `json:"route,omitempty"`
}

// Event kinds that programs read (others are for people).
const (
	// EventRoute: a router changed its FIB route to a VIP (Event.Route).
	EventRoute = "route"
	// EventInject: the supervisor injected a failure into the node, or
	// ended one.
	EventInject = "inject"
	// EventBFD: a BFD session went up, or down after it was up.
	EventBFD = "bfd"
)

// EventsSinceParam is the query parameter of GET /v1/events that asks
// for the events numbered after it only (Event.Seq); since=0 asks for the
// whole log, numbered.
const EventsSinceParam = "since"

// Route is a route in a router's FIB: no next hop means no route.
type Route struct {
	Prefix   netip.Prefix `json:"prefix"`
	NextHops []netip.Addr `json:"next_hops"`
}

// ExecInterruptParam is the query parameter of an exec request that makes
// the end of the request body interrupt the command (SIGINT), which lets
// a client stop a command such as tcpdump gracefully: it writes out what
// it holds and exits, and the rest of its output still arrives.
// Cancelling the request kills the command instead. The body is then no
// input: the command reads /dev/null, and may exit before the body ends.
const ExecInterruptParam = "interrupt-on-eof"

// Frame is one message of a streamed command: output on a stream, or the
// final exit status (or an error that kept the command from running).
type Frame struct {
	Stream string `json:"s,omitempty"` // "stdout" or "stderr"
	Data   []byte `json:"d,omitempty"`
	Exit   *int   `json:"x,omitempty"`
	Error  string `json:"e,omitempty"`
}

// CPUReport is where the lab kernel's CPU time went, by kind of process
// (GET /v1/cpu, `lab cpu -o json`).
type CPUReport = cpustat.Report

// PathCPU is the control API's CPU report.
const PathCPU = "/v1/cpu"

// CPUIntervalParam is the query parameter of GET /v1/cpu that sets how
// long to measure (a Go duration); without it the report covers the time
// since boot.
const CPUIntervalParam = "interval"

// PathLoads lists the loads running in the lab (GET, `lab loads`): a
// []LoadInfo, oldest first. An agent lists its own at GET /load.
const PathLoads = "/v1/loads"

// LoadInfo is a load running from a node.
type LoadInfo struct {
	// Node is the node it runs from (set by the supervisor) and ID its id
	// there: its progress is at /v1/nodes/NODE/load/ID.
	Node string `json:"node,omitempty"`
	ID   string `json:"id"`
	// Targets are the VIP:port pairs it connects to, Names the service
	// names it looks up.
	Targets []string `json:"targets,omitempty"`
	Names   []string `json:"names,omitempty"`
	Workers int      `json:"workers"`
	// Started is when it started, by the lab's clock.
	Started time.Time `json:"started"`
}

// LoadWatchParam is the query parameter of GET /v1/nodes/NODE/load/ID
// that reads a load's progress without renewing its lease: a page that
// watches a load started by `lab load` must not keep it running once
// `lab load` is gone.
const LoadWatchParam = "watch"
