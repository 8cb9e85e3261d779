package supervisor

import (
	"fmt"

	"github.com/lab-lb/lab/internal/control"
)

// The supervisor owns the state of the lab and of each of its nodes, all
// of it guarded by Supervisor.mu: nothing reads or writes it without that
// lock. A node's state changes only through the transitions below, which
// refuse what its current life does not allow. The injections and changes
// that drive them (kill, revive, add, remove) run one at a time, under
// Supervisor.injectMu, so what one of them checked still holds when it
// acts.

// phase is where the lab as a whole is.
type phase string

const (
	phaseBuilding phase = "building"
	phaseReady    phase = "ready"
	phaseStopping phase = "stopping"
)

// life is where lab kill, lab revive and lab remove have taken a node.
type life string

const (
	nodeRunning  life = "running"  // its agent runs (or is being started)
	nodeKilled   life = "killed"   // lab kill: every process of the node killed
	nodeFrozen   life = "frozen"   // lab kill --freeze: processes stopped, packets dropped
	nodeRemoving life = "removing" // lab remove, or a failed lab add, takes it out
)

// nodeState is one node of the lab.
type nodeState struct {
	name  string
	agent *agentProc // its current agent; nil until one is started
	life  life
	saved []control.Event // event logs of its agents that died, for lab events
	// frozenLog is where, in saved, the log of the agent frozen by lab
	// kill --freeze starts: thawed, that agent answers with it again.
	frozenLog int
}

// canKill says why lab kill cannot take the node down, nil if it can.
func (n *nodeState) canKill() error {
	switch n.life {
	case nodeRunning:
		return nil
	case nodeRemoving:
		return fmt.Errorf("%s is being removed", n.name)
	}
	return fmt.Errorf("%s is already killed (bring it back with lab revive %s)", n.name, n.name)
}

// kill takes a running node to killed, or to frozen, and keeps evs, the
// event log of the agent about to die or stop.
func (n *nodeState) kill(freeze bool, evs []control.Event) error {
	if err := n.canKill(); err != nil {
		return err
	}
	n.life = nodeKilled
	if freeze {
		n.life, n.frozenLog = nodeFrozen, len(n.saved)
	}
	n.saved = append(n.saved, evs...)
	return nil
}

// canRevive says why lab revive cannot bring the node back, nil if it
// can.
func (n *nodeState) canRevive() error {
	switch n.life {
	case nodeKilled, nodeFrozen:
		return nil
	case nodeRemoving:
		return fmt.Errorf("%s is being removed", n.name)
	}
	return fmt.Errorf("%s is not killed", n.name)
}

// revive takes a killed or frozen node back to running.
func (n *nodeState) revive() error {
	if err := n.canRevive(); err != nil {
		return err
	}
	if n.life == nodeFrozen { // the same agent answers again, with its whole log
		n.saved = n.saved[:n.frozenLog]
	}
	n.life = nodeRunning
	return nil
}

// remove takes the node, in any life, to removing: its agent's exit is
// expected from now on. It keeps evs, the event log of the agent about to
// go. Removing again is allowed: it is lab remove run again after a
// failure.
func (n *nodeState) remove(evs []control.Event) {
	n.life = nodeRemoving
	n.saved = append(n.saved, evs...)
}

// down says whether the node's agent is not expected to answer: it was
// killed, frozen or is being removed.
func (l life) down() bool { return l != nodeRunning }

// node returns name's state, made (running, with no agent yet) on first
// use. s.mu must be held.
func (s *Supervisor) node(name string) *nodeState {
	n := s.nodes[name]
	if n == nil {
		n = &nodeState{name: name, life: nodeRunning}
		s.nodes[name] = n
	}
	return n
}

// withNode runs f on name's state under s.mu.
func (s *Supervisor) withNode(name string, f func(*nodeState) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f(s.node(name))
}

// lifeOf returns name's life: running for a node with no state yet.
func (s *Supervisor) lifeOf(name string) life {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[name]; n != nil {
		return n.life
	}
	return nodeRunning
}

// agentOf returns name's current agent, nil when it has none.
func (s *Supervisor) agentOf(name string) *agentProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[name]; n != nil {
		return n.agent
	}
	return nil
}

// forget drops the state of a node that left the lab; the event logs of
// its agents stay for lab events.
func (s *Supervisor) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[name]; n != nil {
		s.removed = append(s.removed, n.saved...)
		delete(s.nodes, name)
	}
	// Its links went with it.
	for l := range s.downLinks {
		if l.Node == name || l.Link == name {
			delete(s.downLinks, l)
		}
	}
}
