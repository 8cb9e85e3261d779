package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
)

// TopologyFile is the resolved topology the supervisor saves in the
// configs directory once `lab add` or `lab remove` changed the lab; the
// host side (lab.Open) reads it in place of the original file.
const TopologyFile = "topology.json"

// current returns the lab's topology and plan, which lab add and lab
// remove replace.
func (s *Supervisor) current() (*topology.Topology, *fabric.Plan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topo, s.plan
}

// add builds a new LB4 or LB7 like an existing one, starts its agent and
// tells every other agent about it. What it built is torn down if a step
// fails.
func (s *Supervisor) add(ctx context.Context, name, like string) (err error) {
	s.injectMu.Lock()
	defer s.injectMu.Unlock()
	prev, prevPlan := s.current()
	next, err := prev.WithNodeLike(name, like)
	if err != nil {
		return err
	}
	nextPlan := fabric.NewPlan(next, s.cfg.Name)
	diff := fabric.Diff(prevPlan, nextPlan)
	defer func() {
		if err == nil {
			return
		}
		ns, tunnels := fabric.Gone(nextPlan, prevPlan)
		s.mu.Lock()
		var a *agentProc
		if n := s.nodes[name]; n != nil { // its agent was started
			n.remove(nil)
			a = n.agent
		}
		s.mu.Unlock()
		if a != nil && a.cmd == nil {
			if uerr := s.crashPooled(context.Background(), a); uerr != nil {
				s.log.Error("undo add", "node", name, "err", uerr)
			}
		}
		if uerr := fabric.Shrink(ns, tunnels, s.log); uerr != nil {
			s.log.Error("undo add", "node", name, "err", uerr)
		}
		s.forget(name)
		if uerr := s.commit(prev, prevPlan); uerr != nil {
			s.log.Error("undo add", "node", name, "err", uerr)
		}
	}()
	if err := fabric.Apply(ctx, diff, s.jr, s.log); err != nil {
		return fmt.Errorf("build %s: %w", name, err)
	}
	if err := fabric.ForgetNeighbors(prevPlan, fabric.NewAddresses(diff)); err != nil {
		return fmt.Errorf("build %s: %w", name, err)
	}
	n, _ := next.Node(name)
	if n.Role == topology.RoleLB7 {
		cfg, err := node.HAProxyConfig(next, n, s.nodeDir(name))
		if err != nil {
			return err
		}
		text, err := haproxy.Generate(cfg)
		if err != nil {
			return fmt.Errorf("generate haproxy configuration of %s: %w", name, err)
		}
		if err := os.WriteFile(node.HAProxyConfigFile(s.cfg.Configs, name), text, 0o644); err != nil {
			return err
		}
	}
	if err := s.commit(next, nextPlan); err != nil {
		return err
	}
	s.event(name, control.EventInject, fmt.Sprintf("add: a %s like %s", n.Role, like))
	if err := s.startAgent(ctx, n); err != nil {
		return err
	}
	return s.tellAgents(ctx, next, name)
}

// remove takes an LB4 or LB7 out: an LB4's processes die first (its BGP
// sessions close, the routers drop it), an LB7 first leaves every LB4's
// IPVS service; then the node's namespace and the tunnels to it go.
func (s *Supervisor) remove(ctx context.Context, name string) error {
	s.injectMu.Lock()
	defer s.injectMu.Unlock()
	prev, prevPlan := s.current()
	next, err := prev.Without(name)
	if err != nil {
		return err
	}
	n, _ := prev.Node(name)
	nextPlan := fabric.NewPlan(next, s.cfg.Name)
	ns, tunnels := fabric.Gone(prevPlan, nextPlan)
	s.event(name, control.EventInject, "remove: the "+string(n.Role)+" leaves the lab")
	var evs []control.Event
	if !s.lifeOf(name).down() {
		evs = s.agentEvents(name) // its log goes with it: keep a copy
	}
	s.mu.Lock()
	s.node(name).remove(evs) // its agent's exit is expected
	s.mu.Unlock()
	if n.Role == topology.RoleLB7 {
		if err := s.tellAgents(ctx, next, name); err != nil {
			return err
		}
	}
	// Its processes die with its namespace; a pooled agent is stopped
	// first.
	if a := s.agentOf(name); a != nil && a.cmd == nil {
		select {
		case <-a.exited: // killed before
		default:
			if err := s.crashPooled(ctx, a); err != nil {
				return err
			}
		}
	}
	if err := fabric.Shrink(ns, tunnels, s.log); err != nil {
		return err
	}
	if err := s.commit(next, nextPlan); err != nil {
		return err
	}
	s.forget(name)
	if n.Role != topology.RoleLB7 {
		return s.tellAgents(ctx, next, name)
	}
	return nil
}

// commit saves t as the lab's topology, for agents started from now on
// (lab revive too) and for the host side.
func (s *Supervisor) commit(t *topology.Topology, p *fabric.Plan) error {
	path := filepath.Join(s.cfg.Configs, TopologyFile)
	if err := t.Save(path); err != nil {
		return err
	}
	s.mu.Lock()
	s.topo, s.plan, s.topoFile = t, p, path
	s.mu.Unlock()
	return nil
}

// tellAgents posts t to every running agent but skip's.
func (s *Supervisor) tellAgents(ctx context.Context, t *topology.Topology, skip string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(t.Nodes))
	for i, n := range t.Nodes {
		if n.Name == skip || s.lifeOf(n.Name).down() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A starved agent may drop the request (the VM is busiest
			// right when a node starts): try again a few times.
			var err error
			for try := range 3 {
				if try > 0 {
					time.Sleep(time.Duration(try) * time.Second)
				}
				var c *control.Client
				if c, err = s.agentClient(n.Name); err == nil {
					err = c.Post(ctx, "/topology", t)
					c.Close()
				}
				if err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				errs[i] = fmt.Errorf("tell %s: %w", n.Name, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// changeTimeout bounds lab add and lab remove. They do not stop when the
// client goes away: a change half made is worse than one finished late.
const changeTimeout = 3 * time.Minute

func (s *Supervisor) handleAdd(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), changeTimeout)
	defer cancel()
	if err := s.add(ctx, r.PathValue("node"), r.URL.Query().Get("like")); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, map[string]string{"added": r.PathValue("node")})
}

func (s *Supervisor) handleRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	if !s.knownNode(w, name) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), changeTimeout)
	defer cancel()
	if err := s.remove(ctx, name); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeJSON(w, map[string]string{"removed": name})
}
