// Package scenario runs disruption scenarios against a running lab and
// judges what they measured.
//
// A scenario is a small YAML file: a load (the client traffic of package
// traffic), steps run in order (start the load, sleep, inject a failure,
// wait for a condition, stop the load) and assertions on the connections
// measured (how many broke, in which scope, how long failures went on).
// LoadFile and Parse read and validate one, reporting every problem at once
// as FILE:LINE: FIELD: MESSAGE. Run plays it on a Lab, an interface the
// caller implements over a real lab, and returns a Result, which writes a
// readable report (WriteText), a timeline image (WritePNG, WriteSVG: per
// second and per VIP, the connections started, ok, interrupted and broken,
// with the steps marked), JUnit XML for CI (WriteJUnit), and the table of
// the design's claims (WriteClaims, WriteClaimsMarkdown) or its chart
// (WriteClaimsPNG, WriteClaimsSVG: broken connections per scenario and
// scheduler). The images are drawn by package chart.
//
// The format, in short (testdata/example.yaml uses every part of it):
//
//	name: lb4-crash                  # required, [a-z0-9-]+
//	description: free text
//	claim: kill one LB4 (crash)      # the row of the claims table
//	topology: ../topologies/minimal.yaml  # relative to this file
//	load: {from: client1, vips: [www], names: [www.example.org], workers: 40, path: /10M, pause: 200ms,
//	       read-size: 16384, read-timeout: 3s, stall-threshold: 1s,
//	       early-stop: 5%, seed: 1}   # every field optional
//	load: {mode: requests, rate: 100, workers: 10, keepalive: false}  # requests at a rate
//	steps:                           # one action each, plus an optional label
//	  - load: start                  # or stop; stop is implied at the end
//	  - sleep: 5s
//	  - kill: lb4-2                  # also freeze and revive
//	  - kill: [lb7-1, lb7-2]         # several nodes at once
//	  - kill: {role: lb7, share: 12.5%, seed: 1}  # a share of a role's nodes (at least one)
//	  - remove: lb7-2
//	  - {maint: {node: lb4-1, state: on}, label: disable}
//	  - maint: {vip: www, state: on}  # every LB4 withdraws that VIP alone
//	  - agent: {node: server-1, state: drain}
//	  - link: {node: lb4-1, peer: infra, state: down}
//	  - impair: {node: lb4-1, peer: infra, delay: 20ms, jitter: 5ms, loss: 1%}
//	  - add: {node: lb7-3, like: lb7-1}
//	  - exec: {node: lb4-1, argv: [touch, /etc/lb/disable]}
//	  - wait: {converged: true, timeout: 60s}   # default timeout 30s
//	  - wait: {vip: www, next-hops: 1}
//	  - wait: {vip: www, lb7: lb7-2, weight: 0}
//	assert:                          # every one is checked
//	  - {broken: 0, vip: www, after: kill lb4-2, settled: 5s, before: disable}
//	  - {broken-ratio: 1%, after: remove lb7-2, except-lb7: lb7-2}
//	  - {failover: 1s, after: kill lb4-2}
//	  - {reroute: 1s, after: kill lb4-2}   # from the lab's event log
//	  - interrupted: 10
//	  - dns-failures: 0              # lookups of load.names that failed
//	  - {fallbacks: 0, after: maint vip www1 on, settled: 9s}
//	  - {error-ratio: 1%, vip: www}  # requests (and connections) that failed
//	  - p99: 50ms                    # latency of the requests that succeeded
//	  - {repair: 2s, after: kill 12.5% of lb7}  # time to repair (request load)
//
// A step's default label is its action and arguments ("kill lb4-2", "sleep
// 5s"); after and before name a step by label, which must then be unique.
// Durations are Go durations, percentages are written with "%".
//
// Nothing here touches a kernel: every action goes through the Lab.
package scenario

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// DefaultWaitTimeout bounds a wait step that gives no timeout.
const DefaultWaitTimeout = 30 * time.Second

// Scenario is a parsed, validated scenario file.
type Scenario struct {
	// Name matches [a-z0-9-]+.
	Name        string
	Description string
	// Claim is the row label in the claims table; empty means Name.
	Claim string
	// File is the path given to LoadFile, or the name given to Parse.
	File string
	// Topology is the topology file the scenario is written for, relative
	// to the working directory (the file names it relative to itself); empty
	// when not given.
	Topology string
	// Load is the traffic that load-start steps start.
	Load Load
	// Steps run in order.
	Steps []Step
	// Assert is checked once the steps are over, every one of them.
	Assert []Assertion
}

// Load describes the scenario's traffic. Zero fields take the defaults of
// traffic.Config; negative Pause and EarlyStop disable them (a file that
// writes "pause: 0s" or "early-stop: 0%" gets -1).
type Load struct {
	// Mode is "requests" for a request load (see traffic.ModeRequests);
	// empty means downloads.
	Mode string `json:",omitzero"`
	// Rate is a request load's requests a second over all workers;
	// KeepAlive reuses connections.
	Rate      float64 `json:",omitzero"`
	KeepAlive bool    `json:",omitzero"`
	// From is the client node; empty lets the lab choose.
	From string `json:",omitzero"`
	// VIPs names the VIPs to load; empty means all of them, unless Names
	// are given.
	VIPs []string `json:",omitzero"`
	// Names are service names, looked up through the lab's DNS before
	// every connection.
	Names          []string      `json:",omitzero"`
	Workers        int           `json:",omitzero"`
	Path           string        `json:",omitzero"`
	Pause          time.Duration `json:",omitzero"`
	ReadSize       int           `json:",omitzero"`
	ReadTimeout    time.Duration `json:",omitzero"`
	StallThreshold time.Duration `json:",omitzero"`
	// EarlyStop is a fraction (0.05 for 5%).
	EarlyStop float64 `json:",omitzero"`
	Seed      int64   `json:",omitzero"`
}

// Kind is what a step does.
type Kind string

// Step kinds. Every kind but the first four is an injection, which Run
// hands to Lab.Do as an Action.
const (
	KindLoadStart Kind = "load-start"
	KindLoadStop  Kind = "load-stop"
	KindSleep     Kind = "sleep"
	KindWait      Kind = "wait"
	KindKill      Kind = "kill"
	KindFreeze    Kind = "freeze"
	KindRevive    Kind = "revive"
	KindMaint     Kind = "maint"
	KindAgent     Kind = "agent"
	KindLink      Kind = "link"
	KindImpair    Kind = "impair"
	KindAdd       Kind = "add"
	KindRemove    Kind = "remove"
	KindExec      Kind = "exec"
)

// Inject reports whether k is an injection (handed to Lab.Do).
func (k Kind) Inject() bool {
	switch k {
	case KindLoadStart, KindLoadStop, KindSleep, KindWait:
		return false
	}
	return true
}

// Step is one step of a scenario. Only the fields of its Kind are set.
type Step struct {
	Kind Kind `json:",omitzero"`
	// Label names the step in reports and in assertion scopes; Parse sets
	// the default one (such as "kill lb4-2") when the file gives none.
	Label string `json:",omitzero"`
	// Sleep is the pause of a sleep step.
	Sleep time.Duration `json:",omitzero"`
	// Action is what an injection step does.
	Action Action `json:",omitzero"`
	// Wait is the condition of a wait step.
	Wait Condition `json:",omitzero"`
	// Line is where the step was written, 0 when it was not read from a
	// file.
	Line int `json:",omitzero"`
}

// Action is an injection, for Lab.Do. Which fields are set depends on Kind:
//
//   - kill, freeze, revive, remove: Node; or several nodes at once, Nodes,
//     or Share of the nodes of Role picked with Seed (Run hands Lab.Do one
//     action per node, with Node set);
//   - maint: Node or VIP (every LB4 withdraws that VIP alone), State (on
//     or off);
//   - agent: Node, State (an agent-check line, such as drain or "up 50%");
//   - link: Node, Peer (a segment or node), State (up or down);
//   - impair: Node, Peer, Delay, Jitter, Loss (all zero to clear);
//   - add: Node, Like (optional: the node to copy);
//   - exec: Node, Argv.
type Action struct {
	Kind  Kind     `json:",omitzero"`
	Node  string   `json:",omitzero"`
	Nodes []string `json:",omitzero"`
	Role  string   `json:",omitzero"`
	// Share is a fraction (0.125 for 12.5%) of Role's nodes.
	Share         float64       `json:",omitzero"`
	Seed          int64         `json:",omitzero"`
	VIP           string        `json:",omitzero"`
	Peer          string        `json:",omitzero"`
	State         string        `json:",omitzero"`
	Like          string        `json:",omitzero"`
	Argv          []string      `json:",omitzero"`
	Delay, Jitter time.Duration `json:",omitzero"`
	// Loss is in percent (1 for 1%), as lab.Impairment has it.
	Loss float64 `json:",omitzero"`
}

// Condition is what a wait step waits for, for Lab.Check. Exactly one of
// these is set: Converged; VIP with NextHops (every router has that many
// next hops for the VIP); VIP, LB7 and Weight (every LB4 gives that LB7
// that weight in the VIP's service).
type Condition struct {
	Converged bool   `json:",omitzero"`
	VIP       string `json:",omitzero"`
	LB7       string `json:",omitzero"`
	NextHops  *int   `json:",omitzero"`
	Weight    *int   `json:",omitzero"`
	// Timeout bounds the wait; Parse sets DefaultWaitTimeout when the file
	// gives none.
	Timeout time.Duration `json:",omitzero"`
}

// Metric is what an assertion measures.
type Metric string

// Metrics.
const (
	// MetricBroken counts the broken connections in scope.
	MetricBroken Metric = "broken"
	// MetricBrokenRatio is the fraction of the connections in scope that
	// broke.
	MetricBrokenRatio Metric = "broken-ratio"
	// MetricInterrupted counts the connections in scope that stalled
	// longer than the stall threshold and still ended well.
	MetricInterrupted Metric = "interrupted"
	// MetricFailover is the latest failure moment among the broken
	// connections in scope, minus the time of the scope's After step.
	MetricFailover Metric = "failover"
	// MetricReroute is how long after the scope's After step (an
	// injection into one node) every router had dropped that node from
	// its routes, as the lab's event log tells (see Rerouter). It fails
	// when the lab cannot tell, or no router routed through the node.
	MetricReroute Metric = "reroute"
	// MetricDNSFailures counts the lookups of a service name that failed
	// (no address, no such name, no answer): no connection was tried.
	MetricDNSFailures Metric = "dns-failures"
	// MetricFallbacks counts the addresses of service names that failed to
	// connect, before another address did or the client gave up: clients
	// that still had a withdrawn VIP in their cached answer.
	MetricFallbacks Metric = "fallbacks"
	// MetricErrorRatio is the fraction of the requests (connections) in
	// scope that failed, failed lookups included: the user got no page.
	MetricErrorRatio Metric = "error-ratio"
	// MetricP99 is the 99th percentile of the latency of the requests in
	// scope that succeeded (a request load).
	MetricP99 Metric = "p99"
	// MetricRepair is the time to repair after the scope's After step (a
	// request load): until the last request failed, or was slower than
	// twice the steady p99 in a second whose p99 was, before service
	// settled (see traffic.Report.Repairs). It fails when service was not repaired
	// before the next injection or the end.
	MetricRepair Metric = "repair"
)

// Metrics returns every metric, in the order of the documentation.
func Metrics() []Metric {
	return []Metric{MetricBroken, MetricBrokenRatio, MetricInterrupted, MetricFailover, MetricReroute, MetricDNSFailures,
		MetricFallbacks, MetricErrorRatio, MetricP99, MetricRepair}
}

// duration reports whether the metric is a time.
func (m Metric) duration() bool {
	return m == MetricFailover || m == MetricReroute || m == MetricP99 || m == MetricRepair
}

// requests reports whether the metric needs a request load.
func (m Metric) requests() bool { return m == MetricP99 || m == MetricRepair }

// Assertion is a limit on a metric over the connections in a scope.
type Assertion struct {
	Metric Metric `json:",omitzero"`
	// Limit is the largest value that passes, in the metric's unit: a
	// number of connections for broken and interrupted, a fraction (0.01
	// for 1%) for broken-ratio, a time.Duration for failover and reroute.
	Limit float64 `json:",omitzero"`
	Scope Scope   `json:",omitzero"`
	// Line is where the assertion was written, 0 when it was not read
	// from a file.
	Line int `json:",omitzero"`
}

// String writes the assertion as "broken <= 0 [vip www, after kill lb4-2]".
func (a Assertion) String() string {
	return fmt.Sprintf("%s <= %s [%s]", a.Metric, a.Metric.format(a.Limit), a.Scope)
}

// format writes a value of the metric in its unit.
func (m Metric) format(v float64) string {
	switch {
	case m == MetricBrokenRatio || m == MetricErrorRatio:
		return formatPercent(v)
	case m.duration():
		return formatDuration(time.Duration(v))
	default:
		return fmt.Sprintf("%d", int64(v))
	}
}

// Scope selects connections. The zero Scope selects every connection.
type Scope struct {
	// VIP keeps the connections to that VIP.
	VIP string `json:",omitzero"`
	// Scheduler keeps the connections to the VIPs of that IPVS scheduler
	// (mh, sh, wlc...), so that one scenario fits several topologies.
	Scheduler string `json:",omitzero"`
	// After keeps the connections that ended at or after the start of the
	// step with that label.
	After string `json:",omitzero"`
	// Settled, with After, keeps only the connections that started at least
	// that long after the step.
	Settled time.Duration `json:",omitzero"`
	// Before keeps the connections that started before the start of the
	// step with that label, except those that failed at or after it: in
	// flight when the step began, they failed by its doing.
	Before string `json:",omitzero"`
	// ExceptLB7 leaves out the connections that LB7 served (by their
	// X-Lab-LB7 header) and the ones refused at connect, which carry no
	// header: when an LB7 dies, the LB4s keep sending it new flows until
	// their checks notice, and its kernel refuses them. Those are its
	// share too. Other connections that broke before any header are kept.
	ExceptLB7 string `json:",omitzero"`
}

// String describes the scope, such as "vip www, after kill lb4-2 +5s".
func (s Scope) String() string {
	var parts []string
	if s.VIP != "" {
		parts = append(parts, "vip "+s.VIP)
	}
	if s.Scheduler != "" {
		parts = append(parts, "scheduler "+s.Scheduler)
	}
	if s.After != "" {
		a := "after " + s.After
		if s.Settled > 0 {
			a += " +" + formatDuration(s.Settled)
		}
		parts = append(parts, a)
	}
	if s.Before != "" {
		parts = append(parts, "before "+s.Before)
	}
	if s.ExceptLB7 != "" {
		parts = append(parts, "except lb7 "+s.ExceptLB7)
	}
	if len(parts) == 0 {
		return "all connections"
	}
	return strings.Join(parts, ", ")
}

// VIP is a VIP of the running lab, as Lab.VIPs reports it.
type VIP struct {
	// Name names the VIP in reports and scopes: the topology's name, with
	// "/v4" or "/v6" when the name has a VIP of each family.
	Name string
	// Service is the VIP's name in the topology: a scope or a wait naming
	// it covers every family.
	Service string
	// Target is the address and port the load connects to; connections
	// are matched to VIPs by it.
	Target netip.AddrPort
	// Scheduler is the IPVS scheduler of the VIP's service (mh, sh, wlc).
	Scheduler string
}

// LoadFile reads and validates the scenario at path. The error, if any, is
// an *Errors listing every problem, or the read error.
func LoadFile(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load scenario: %w", err)
	}
	return Parse(path, data)
}

// Parse reads and validates a scenario from data; file names it in
// messages, in Scenario.File, and is the base of a relative topology path.
// The error, if any, is an *Errors listing every problem.
func Parse(file string, data []byte) (*Scenario, error) {
	c := &collector{file: file}
	s := parse(c, file, data)
	if s != nil {
		s.fillDefaults()
		validate(c, s)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks a scenario built in code, as Parse checks a file (labels
// left empty take their defaults first). The error, if any, is an *Errors.
func (s *Scenario) Validate() error {
	c := &collector{file: s.File}
	cp := s.clone()
	cp.fillDefaults()
	validate(c, cp)
	return c.err()
}

// clone returns a copy of s that shares nothing mutable with it.
func (s *Scenario) clone() *Scenario {
	cp := *s
	cp.Load.VIPs = append([]string(nil), s.Load.VIPs...)
	cp.Steps = make([]Step, len(s.Steps))
	for i, st := range s.Steps {
		st.Action.Argv = append([]string(nil), st.Action.Argv...)
		st.Action.Nodes = append([]string(nil), st.Action.Nodes...)
		cp.Steps[i] = st
	}
	cp.Assert = append([]Assertion(nil), s.Assert...)
	return &cp
}

// fillDefaults sets default labels and wait timeouts.
func (s *Scenario) fillDefaults() {
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Label == "" {
			st.Label = st.DefaultLabel()
		}
		if st.Kind == KindWait && st.Wait.Timeout == 0 {
			st.Wait.Timeout = DefaultWaitTimeout
		}
	}
}

// DefaultLabel returns the label of a step that the file does not label,
// such as "kill lb4-2", "sleep 5s" or "wait www next-hops 1".
func (st Step) DefaultLabel() string {
	a := st.Action
	switch st.Kind {
	case KindLoadStart:
		return "load start"
	case KindLoadStop:
		return "load stop"
	case KindSleep:
		return "sleep " + formatDuration(st.Sleep)
	case KindWait:
		w := st.Wait
		switch {
		case w.Converged:
			return "wait converged"
		case w.NextHops != nil:
			return fmt.Sprintf("wait %s next-hops %d", w.VIP, *w.NextHops)
		case w.Weight != nil:
			return fmt.Sprintf("wait %s %s weight %d", w.VIP, w.LB7, *w.Weight)
		}
		return "wait"
	case KindMaint, KindAgent:
		if a.VIP != "" {
			return join(string(st.Kind), "vip", a.VIP, a.State)
		}
		return join(string(st.Kind), a.Node, a.State)
	case KindLink:
		return join("link", a.Node, a.Peer, a.State)
	case KindImpair:
		return join("impair", a.Node, a.Peer)
	case KindAdd:
		return join("add", a.Node)
	case KindExec:
		return join(append([]string{"exec", a.Node}, a.Argv...)...)
	}
	switch {
	case a.Role != "":
		return join(string(st.Kind), formatPercent(a.Share), "of", a.Role)
	case len(a.Nodes) > 0:
		return join(append([]string{string(st.Kind)}, a.Nodes...)...)
	}
	return join(string(st.Kind), a.Node)
}

// join joins the non-empty words with spaces.
func join(words ...string) string {
	var kept []string
	for _, w := range words {
		if w != "" {
			kept = append(kept, w)
		}
	}
	return strings.Join(kept, " ")
}

// formatDuration writes d rounded to the millisecond.
func formatDuration(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}

// formatPercent writes a fraction as a percentage, such as "0.5%".
func formatPercent(f float64) string {
	return fmt.Sprintf("%.4g%%", f*100)
}
