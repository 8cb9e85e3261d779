package dashboard

import (
	"encoding/json"
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

// loadMsg is the load started from the page: its state and, once it has
// run, its figures per second, which stay after it stops until the next
// load starts.
type loadMsg struct {
	State   string `json:"state"`
	From    string `json:"from,omitempty"`
	Workers int    `json:"workers,omitempty"`
	// Start is when the load started, by this host's clock; the page
	// places the lab's injections on the chart from it.
	Start       time.Time    `json:"start,omitzero"`
	Elapsed     float64      `json:"elapsed"` // seconds
	Started     int          `json:"started"`
	Active      int          `json:"active"`
	OK          int          `json:"ok"`
	Broken      int          `json:"broken"`
	Interrupted int          `json:"interrupted"`
	Seconds     []secondView `json:"seconds"`
	// Report sums up the load once stopped.
	Report *reportView `json:"report,omitempty"`
	Error  string      `json:"error,omitempty"`
}

// secondView is one complete second of a load: the connections that
// finished in it, ok (interrupted ones included), broken, interrupted.
type secondView struct {
	Started     int `json:"started"`
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
}

// reportView is the summary of a stopped load.
type reportView struct {
	Total       int `json:"total"`
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
}

// setProgress copies p into m: the totals, and one entry per complete
// second (a quiet second has no entry in p.Seconds: it counts zero).
func (m *loadMsg) setProgress(p *lab.LoadProgress) {
	m.Elapsed = p.Elapsed.Seconds()
	m.Started, m.Active, m.OK, m.Broken, m.Interrupted = p.Started, p.Active, p.OK, p.Broken, p.Interrupted
	n := int(p.Elapsed / time.Second)
	m.Seconds = make([]secondView, n)
	for i := range min(n, len(p.Seconds)) {
		s := p.Seconds[i]
		m.Seconds[i] = secondView{Started: s.Started, OK: s.OK, Broken: s.Broken, Interrupted: s.Interrupted}
	}
}
