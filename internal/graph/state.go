package graph

import (
	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
)

// State is what a node of a running lab is doing, as the drawings colour
// it.
type State string

// The states of a node, as `lab status` has them, and the two ways out of
// service that only the tier status tells.
const (
	StateReady   State = "ready"
	StateWaiting State = "waiting" // its tier has not converged
	StateSlow    State = "slow"    // its agent gave no answer in time
	// StateMaintenance is an LB4 with /etc/lb/disable (lab maint lb4-N
	// on), or an LB7 whose own agent-check says down (lab maint lb7-N on).
	StateMaintenance State = "maintenance"
	// StateWithdrawn is an LB4 that announces no VIP, though nobody asked
	// (no healthy LB7, or still starting).
	StateWithdrawn   State = "withdrawn"
	StateKilled      State = "killed" // lab kill
	StateFrozen      State = "frozen" // lab kill --freeze
	StateExited      State = "exited" // its agent died
	StateUnreachable State = "unreachable"
	// StateUnknown is a node of the topology that the status lacks.
	StateUnknown State = "unknown"
)

// nodeState decides the state of a node with role r from its agent's
// status, and why. What the agent process is doing comes first (a killed
// LB4 is killed, whatever its tier said last), then maintenance and
// withdrawal, which explain a tier that is not ready, then readiness.
func nodeState(r topology.Role, a control.AgentStatus) (State, string) {
	switch a.State {
	case "running":
	case "killed", "frozen", "slow", "exited", "unreachable":
		return State(a.State), a.Error
	default:
		return StateUnknown, "agent " + a.State
	}
	switch r {
	case topology.RoleLB4:
		if st, ok := tierStatus[node.LB4Status](a); ok {
			switch {
			case st.Disabled:
				return StateMaintenance, "/etc/lb/disable"
			case !st.Announced:
				return StateWithdrawn, a.Waiting
			}
		}
	case topology.RoleLB7:
		if st, ok := tierStatus[node.LB7Status](a); ok && len(st.Enabler) == 1 {
			if e := st.Enabler[0]; e.Operational == "DOWN" || e.Admin == "MAINT" {
				return StateMaintenance, "agent-check " + e.Status
			}
		}
	}
	if !a.Ready {
		return StateWaiting, a.Waiting
	}
	return StateReady, ""
}

// StateColor is the fill colour of a node in state s.
func StateColor(s State) string {
	switch s {
	case StateReady:
		return "#b2f2bb" // green
	case StateWaiting:
		return "#ffec99" // yellow
	case StateSlow:
		return "#ffd8a8" // orange
	case StateMaintenance:
		return "#a5d8ff" // blue
	case StateWithdrawn:
		return "#d0bfff" // violet
	case StateKilled:
		return "#ff8787" // red
	case StateFrozen:
		return "#99e9f2" // ice
	case StateExited, StateUnreachable:
		return "#adb5bd" // grey
	}
	return "#ffffff"
}

// RankColor is the fill colour of the nodes of tier rank in a graph
// without states (a topology alone).
func RankColor(rank int) string {
	switch rank {
	case RankClients:
		return "#dbe4ff" // indigo
	case RankHosts:
		return "#e9ecef" // grey
	case RankRouters:
		return "#fff3bf" // yellow
	case RankLB4:
		return "#d3f9d8" // green
	case RankLB7:
		return "#ffe3e3" // red
	case RankServers:
		return "#f3d9fa" // grape
	}
	return "#ffffff"
}

// fill is the fill colour of n: its state's in a live graph, its tier's
// otherwise.
func (g *Graph) fill(n *Node) string {
	if g.Live {
		return StateColor(n.State)
	}
	return RankColor(n.Rank)
}

// states lists the states the nodes of g are in, in the order of the
// constants: the legend of a live drawing.
func (g *Graph) states() []State {
	var out []State
	for _, s := range []State{StateReady, StateWaiting, StateSlow, StateMaintenance, StateWithdrawn,
		StateKilled, StateFrozen, StateExited, StateUnreachable, StateUnknown} {
		for _, n := range g.Nodes {
			if n.State == s {
				out = append(out, s)
				break
			}
		}
	}
	return out
}
