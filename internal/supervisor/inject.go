package supervisor

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
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
// while its links stay up, so peers see their TCP sessions close. With
// freeze, the processes are stopped instead (SIGSTOP) and every packet to
// or from the node is dropped: a silent failure that peers only notice
// through hold timers and health checks.
func (s *Supervisor) kill(name string, freeze bool) error {
	s.injectMu.Lock()
	defer s.injectMu.Unlock()
	if err := s.withNode(name, (*nodeState).canKill); err != nil {
		return err
	}
	// Its event log dies with the agent (or cannot answer, frozen): keep a
	// copy for lab events.
	evs := s.agentEvents(name)
	var a *agentProc
	if err := s.withNode(name, func(n *nodeState) error {
		a = n.agent
		return n.kill(freeze, evs)
	}); err != nil {
		return err
	}
	// The event first: what reacts to the crash must come after it in the
	// log.
	if freeze {
		s.event(name, control.EventInject, "freeze: processes stopped, every packet to and from the node dropped")
	} else {
		s.event(name, control.EventInject, "kill: every process of the node killed, links up")
	}
	ns, err := netns.GetFromName(fabric.NodeNetns(s.cfg.Name, name))
	if err != nil {
		return fmt.Errorf("open netns of %s: %w", name, err)
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return fmt.Errorf("stat netns of %s: %w", name, err)
	}
	if freeze {
		// A pooled agent goes on, cut off: nothing it sends or is sent
		// passes, and the processes of its node (HAProxy) stop.
		if err := fabric.Impair(s.planNow().NodeEnds(name), fabric.Impairment{Loss: 100}); err != nil {
			return fmt.Errorf("freeze %s: %w", name, err)
		}
		return journal.SignalNetnsProcesses(st.Ino, unix.SIGSTOP)
	}
	if a != nil && a.cmd == nil {
		if err := s.crashPooled(context.Background(), a); err != nil {
			return fmt.Errorf("kill %s: %w", name, err)
		}
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
	s.injectMu.Lock()
	defer s.injectMu.Unlock()
	var frozen bool
	if err := s.withNode(name, func(n *nodeState) error {
		frozen = n.life == nodeFrozen
		return n.canRevive()
	}); err != nil {
		return err
	}
	if frozen {
		// Thaw: the same processes go on, the packets flow again.
		if err := fabric.Impair(s.planNow().NodeEnds(name), fabric.Impairment{}); err != nil {
			return fmt.Errorf("thaw %s: %w", name, err)
		}
		ns, err := netns.GetFromName(fabric.NodeNetns(s.cfg.Name, name))
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstat(int(ns), &st)
		ns.Close()
		if err == nil {
			err = journal.SignalNetnsProcesses(st.Ino, unix.SIGCONT)
		}
		if err != nil {
			return fmt.Errorf("thaw %s: %w", name, err)
		}
	} else {
		t, _ := s.current()
		n, _ := t.Node(name)
		if err := s.startAgent(ctx, n); err != nil {
			return fmt.Errorf("revive %s: %w", name, err)
		}
	}
	if err := s.withNode(name, (*nodeState).revive); err != nil {
		return err
	}
	if frozen {
		s.event(name, control.EventInject, "revive: processes continued, packets flow again")
	} else {
		s.event(name, control.EventInject, "revive: agent restarted")
	}
	return nil
}

func (s *Supervisor) handleKill(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	if !s.knownNode(w, name) {
		return
	}
	if err := s.kill(name, r.URL.Query().Get("freeze") != ""); err != nil {
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

// linkEnds resolves the request's link: node a's leg of segment b, or its
// link to node b. It answers the error itself when there is none.
func (s *Supervisor) linkEnds(w http.ResponseWriter, r *http.Request) (a, b string, ends []fabric.End, ok bool) {
	a, b = r.PathValue("a"), r.PathValue("b")
	if !s.knownNode(w, a) {
		return a, b, nil, false
	}
	ends, err := s.planNow().LinkEnds(a, b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return a, b, nil, false
	}
	return a, b, ends, true
}

// handleLink sets a link down or up: both ends of the veth carrying node
// a's link b (a segment it joins, or a node it is linked to).
func (s *Supervisor) handleLink(w http.ResponseWriter, r *http.Request) {
	a, b, ends, ok := s.linkEnds(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	switch q.Get("state") {
	case "up", "down":
	default:
		http.Error(w, fmt.Sprintf("state %q: want up or down", q.Get("state")), http.StatusBadRequest)
		return
	}
	up := q.Get("state") == "up"
	s.event(a, control.EventInject, fmt.Sprintf("link %s %s", b, q.Get("state")))
	if err := fabric.SetUp(ends, up); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.setLinkState(a, b, up)
	writeJSON(w, map[string]any{"link": a + " " + b, "up": up})
}

// linkOf names node a's link b as status does: between two nodes, the
// first by name comes first, whichever end lab link named.
func (s *Supervisor) linkOf(a, b string) control.LinkStatus {
	if t, _ := s.current(); t != nil {
		if _, ok := t.Node(b); ok && b < a {
			a, b = b, a
		}
	}
	return control.LinkStatus{Node: a, Link: b}
}

// setLinkState records that node a's link b is up or down.
func (s *Supervisor) setLinkState(a, b string, up bool) {
	l := s.linkOf(a, b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if up {
		delete(s.downLinks, l)
	} else {
		s.downLinks[l] = struct{}{}
	}
}

// downLinkList returns the links set down, in order. s.mu must be held.
func (s *Supervisor) downLinkList() []control.LinkStatus {
	out := make([]control.LinkStatus, 0, len(s.downLinks))
	for l := range s.downLinks {
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y control.LinkStatus) int {
		return cmp.Or(cmp.Compare(x.Node, y.Node), cmp.Compare(x.Link, y.Link))
	})
	return out
}

// handleImpair puts delay, jitter and loss on both ends of a link; all zero
// removes them.
func (s *Supervisor) handleImpair(w http.ResponseWriter, r *http.Request) {
	a, b, ends, ok := s.linkEnds(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var im fabric.Impairment
	var err error
	for key, d := range map[string]*time.Duration{"delay": &im.Delay, "jitter": &im.Jitter} {
		if v := q.Get(key); v != "" {
			if *d, err = time.ParseDuration(v); err != nil || *d < 0 {
				http.Error(w, fmt.Sprintf("%s %q: want a duration such as 20ms", key, v), http.StatusBadRequest)
				return
			}
		}
	}
	if v := q.Get("loss"); v != "" {
		if _, err := fmt.Sscanf(v, "%g", &im.Loss); err != nil || im.Loss < 0 || im.Loss > 100 {
			http.Error(w, fmt.Sprintf("loss %q: want a percentage from 0 to 100", v), http.StatusBadRequest)
			return
		}
	}
	s.event(a, control.EventInject, fmt.Sprintf("impair link %s: delay %s jitter %s loss %g%%", b, im.Delay, im.Jitter, im.Loss))
	if err := fabric.Impair(ends, im); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]any{"link": a + " " + b, "impairment": im})
}

func (s *Supervisor) planNow() *fabric.Plan {
	_, p := s.current()
	return p
}
