package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/journal"
)

// event records what the supervisor did (failure injections) in the lab's
// event log.
func (s *Supervisor) event(nodeName, kind, msg string) {
	s.mu.Lock()
	s.events = append(s.events, control.Event{Time: time.Now(), Node: nodeName, Kind: kind, Msg: msg})
	s.mu.Unlock()
	s.log.Info(kind, "node", nodeName, "msg", msg)
}

// kill crashes a node: every process in its network namespace (the agent,
// its BGP speaker, HAProxy, commands run there) dies at once with SIGKILL,
// while its links stay up, so peers see their TCP sessions close.
func (s *Supervisor) kill(name string) error {
	s.mu.Lock()
	if s.killed[name] {
		s.mu.Unlock()
		return fmt.Errorf("%s is already killed (bring it back with lab revive %s)", name, name)
	}
	a := s.agents[name]
	s.killed[name] = true
	s.mu.Unlock()
	// The event first: what reacts to the crash must come after it in the
	// log.
	s.event(name, "inject", "kill: every process of the node killed, links up")
	ns, err := netns.GetFromName(fabric.NodeNetns(s.cfg.Name, name))
	if err != nil {
		return fmt.Errorf("open netns of %s: %w", name, err)
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return fmt.Errorf("stat netns of %s: %w", name, err)
	}
	if err := journal.KillNetnsProcesses(st.Ino); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	if a != nil {
		<-a.exited
	}
	return nil
}

// revive restarts a killed node's agent, which brings its services back.
func (s *Supervisor) revive(ctx context.Context, name string) error {
	s.mu.Lock()
	killed := s.killed[name]
	s.mu.Unlock()
	if !killed {
		return fmt.Errorf("%s is not killed", name)
	}
	n, _ := s.topo.Node(name)
	if err := s.startAgent(ctx, n); err != nil {
		return fmt.Errorf("revive %s: %w", name, err)
	}
	s.mu.Lock()
	delete(s.killed, name)
	s.mu.Unlock()
	s.event(name, "inject", "revive: agent restarted")
	return nil
}

func (s *Supervisor) handleKill(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	if !s.knownNode(w, name) {
		return
	}
	if err := s.kill(name); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, map[string]string{"killed": name})
}

func (s *Supervisor) handleRevive(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	if !s.knownNode(w, name) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), agentStartTimeout)
	defer cancel()
	if err := s.revive(ctx, name); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, map[string]string{"revived": name})
}
