package dashboard

import (
	"cmp"
	"encoding/json"
	"slices"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/lab"
)

// The states a node's box shows, each with its colour on the page.
const (
	StateReady       = "ready"
	StateWaiting     = "waiting"     // its tier has not converged
	StateKilled      = "killed"      // lab kill
	StateFrozen      = "frozen"      // lab kill --freeze
	StateSlow        = "slow"        // its agent runs but did not answer in time
	StateExited      = "exited"      // its agent died
	StateUnreachable = "unreachable" // its agent cannot be reached
	StateMaintenance = "maintenance" // an LB4 disabled, an LB7 whose agent-check says down
	StateWithdrawn   = "withdrawn"   // an LB4 that announces no VIP
)

// nodeView is one node as the page draws it.
type nodeView struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"`
	// Detail says why, for a person: what a waiting node waits for, an
	// agent's error, or the tier's summary.
	Detail string `json:"detail,omitempty"`
	// Links are the segments the node joins and the nodes it is linked
	// to, as `lab link` names them.
	Links     []string `json:"links"`
	Addresses []string `json:"addresses,omitempty"`
}

// statusMsg is the page's picture of the lab.
type statusMsg struct {
	Name  string              `json:"name"`
	Mode  control.Mode        `json:"mode"`
	Phase string              `json:"phase"`
	Nodes []nodeView          `json:"nodes"`
	VIPs  []control.VIPStatus `json:"vips,omitempty"`
	// DownLinks are the links set down, from the lab's own state.
	DownLinks []control.LinkStatus `json:"down_links"`
	// Error is why the last poll failed; the nodes are those of the last
	// poll that worked.
	Error string `json:"error,omitempty"`
}

// tierInfo is what the LB4 and LB7 tiers' full status adds to readiness.
type tierInfo struct {
	maintenance bool
	withdrawn   bool
	summary     string
}

// tierOf reads the tier state of an LB4 or LB7 from its full status.
func tierOf(role string, as control.AgentStatus) tierInfo {
	ti := tierInfo{summary: as.Summary}
	if len(as.Tier) == 0 {
		return ti
	}
	switch role {
	case "lb4":
		var st node.LB4Status
		if json.Unmarshal(as.Tier, &st) == nil {
			ti.maintenance = st.Disabled
			ti.withdrawn = !st.Disabled && !st.Announced
		}
	case "lb7":
		// The enabler is a server with the LB7's own agent-check alone:
		// "down" or "maint" there (lab maint lb7-1 on) takes it out, and
		// the LB7's /healthcheck fails.
		var st node.LB7Status
		if json.Unmarshal(as.Tier, &st) == nil && len(st.Enabler) > 0 {
			up := false
			for _, e := range st.Enabler {
				if e.Operational == "UP" && e.Admin != "MAINT" {
					up = true
				}
			}
			ti.maintenance = !up
		}
	}
	return ti
}

// viewOf returns the page's view of node n, given what the last tier poll
// said of it (zero when none did).
func viewOf(n control.NodeStatus, ti tierInfo) nodeView {
	v := nodeView{Name: n.Name, Role: n.Role, Links: []string{}}
	for _, i := range n.Interfaces {
		switch {
		case i.Segment != "":
			v.Links = append(v.Links, i.Segment)
		case i.Peer != "":
			v.Links = append(v.Links, i.Peer)
		}
		v.Addresses = append(v.Addresses, i.Addresses...)
	}
	a := n.Agent
	switch {
	case a.State != "running":
		v.State, v.Detail = a.State, a.Error
		switch a.State {
		case StateKilled, StateFrozen, StateSlow, StateExited:
		default:
			v.State = StateUnreachable
		}
	case ti.maintenance:
		v.State, v.Detail = StateMaintenance, ti.summary
	case ti.withdrawn:
		v.State, v.Detail = StateWithdrawn, ti.summary
	case !a.Ready:
		v.State, v.Detail = StateWaiting, a.Waiting
	default:
		v.State, v.Detail = StateReady, ti.summary
	}
	return v
}

// eventsMsg carries events, oldest first. With Replace, they are the
// whole log the page should show (a page that just connected); without,
// they come after what it has.
type eventsMsg struct {
	Replace bool            `json:"replace,omitempty"`
	Events  []control.Event `json:"events"`
}

// Load states.
const (
	LoadIdle     = "idle"
	LoadStarting = "starting"
	LoadRunning  = "running"
	LoadStopping = "stopping"
)

// loadMsg is the load started from the page: its state, for the buttons,
// and its report once stopped, which stays until the next load starts.
// Its figures come with the other loads' (loadsMsg).
type loadMsg struct {
	State   string `json:"state"`
	From    string `json:"from,omitempty"`
	Workers int    `json:"workers,omitempty"`
	// Node and ID name it among the loads, once started.
	Node string `json:"node,omitempty"`
	ID   string `json:"id,omitempty"`
	// Report sums up the load once stopped.
	Report *reportView `json:"report,omitempty"`
	Error  string      `json:"error,omitempty"`
}

// loadsMsg is every load the page charts: those running in the lab,
// whoever started them, and the last ones that ended, oldest first.
type loadsMsg struct {
	Loads []loadView `json:"loads"`
}

// loadView is one load as the page charts it.
type loadView struct {
	Node string `json:"node"`
	ID   string `json:"id"`
	// Own is set on the load started from the page.
	Own bool `json:"own,omitempty"`
	// Running is false once the load has left the lab's list: its figures
	// are the last ones read.
	Running bool     `json:"running"`
	Workers int      `json:"workers,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Names   []string `json:"names,omitempty"`
	// Start is when the load started, by this host's clock; the page
	// places the lab's injections on the charts from it.
	Start       time.Time `json:"start,omitzero"`
	Elapsed     float64   `json:"elapsed"` // seconds
	Started     int       `json:"started"`
	Active      int       `json:"active"`
	OK          int       `json:"ok"`
	Broken      int       `json:"broken"`
	Interrupted int       `json:"interrupted"`
	// VIPs holds one series per VIP the load targets, in the lab's VIP
	// order, then those the lab does not know (a service name whose
	// lookup failed).
	VIPs  []vipSeries `json:"vips"`
	Error string      `json:"error,omitempty"`
}

// vipSeries is one VIP's complete seconds of a load.
type vipSeries struct {
	// Name is the VIP's name; Target its address and port, or the
	// service name of failed lookups.
	Name    string       `json:"name"`
	Target  string       `json:"target"`
	Seconds []secondView `json:"seconds"`
}

// secondView is one complete second of a load: the connections that
// finished in it, ok (interrupted ones included), broken, interrupted,
// and the failed lookups of a service name.
type secondView struct {
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
	DNSFailed   int `json:"dns_failed,omitempty"`
}

// reportView is the summary of a stopped load.
type reportView struct {
	Total       int `json:"total"`
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
}

// setProgress copies p into v: the totals, and per VIP one entry per
// complete second (a quiet second has no entry in p's series: it counts
// zero). vips are the lab's, which name the targets.
func (v *loadView) setProgress(p *lab.LoadProgress, vips []control.VIPStatus) {
	v.Elapsed = p.Elapsed.Seconds()
	v.Started, v.Active, v.OK, v.Broken, v.Interrupted = p.Started, p.Active, p.OK, p.Broken, p.Interrupted
	n := int(p.Elapsed / time.Second)
	targets := slices.Clone(v.Targets)
	for t := range p.ByTarget {
		if !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	order := func(t string) int {
		if i := slices.IndexFunc(vips, func(v control.VIPStatus) bool { return v.Address == t }); i >= 0 {
			return i
		}
		return len(vips)
	}
	slices.SortStableFunc(targets, func(a, b string) int {
		return cmp.Or(cmp.Compare(order(a), order(b)), cmp.Compare(a, b))
	})
	v.VIPs = make([]vipSeries, len(targets))
	for i, t := range targets {
		vs := vipSeries{Name: t, Target: t, Seconds: make([]secondView, n)}
		if j := order(t); j < len(vips) {
			vs.Name = vips[j].Name
		}
		ss := p.ByTarget[t]
		for k := range min(n, len(ss)) {
			vs.Seconds[k] = secondView{OK: ss[k].OK, Broken: ss[k].Broken, Interrupted: ss[k].Interrupted, DNSFailed: ss[k].DNSFailed}
		}
		v.VIPs[i] = vs
	}
}
