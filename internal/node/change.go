package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/lab-lb/lab/internal/bgp"
	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/health"
	"github.com/lab-lb/lab/internal/topology"
)

// Runtime changes: after `lab add` or `lab remove`, the supervisor posts
// the new topology to every agent, and the roles that depend on other
// nodes follow: LB4s change their LB7 list (health checks and IPVS, the new
// LB7 last so that every LB4 keeps the same destination order), routers
// and route reflectors their BGP neighbours.

// reconfigurer is a role that follows topology changes.
type reconfigurer interface {
	Reconfigure(ctx context.Context, t *topology.Topology) error
}

func (a *agent) topology() *topology.Topology {
	a.topoMu.Lock()
	defer a.topoMu.Unlock()
	return a.topo
}

// setTopology handles POST /topology: the body is the lab's new topology,
// resolved (JSON).
func (a *agent) setTopology(w http.ResponseWriter, r *http.Request) {
	var t topology.Topology
	if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
		http.Error(w, fmt.Sprintf("decode topology: %v", err), http.StatusBadRequest)
		return
	}
	if _, ok := t.Node(a.node.Name); !ok {
		http.Error(w, fmt.Sprintf("the new topology has no node %s", a.node.Name), http.StatusBadRequest)
		return
	}
	a.topoMu.Lock()
	a.topo = &t
	a.topoMu.Unlock()
	if rc, ok := a.role.(reconfigurer); ok {
		if err := rc.Reconfigure(r.Context(), &t); err != nil {
			a.log.Error("reconfigure", "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	a.log.Info("topology changed", "nodes", len(t.Nodes))
	w.WriteHeader(http.StatusNoContent)
}

// targets lists the LB7s of t, in topology order, with their addresses as
// this LB4 reaches them.
func (l *lb4) targets(t *topology.Topology) ([]lb7Target, error) {
	var out []lb7Target
	for _, n := range t.NodesByRole(topology.RoleLB7) {
		d := lb7Target{name: n.Name}
		for _, f := range topology.Families {
			d.addrs[f], _ = t.AddressFacing(l.a.node.Name, n.Name, f)
		}
		if !d.addrs[topology.IPv4].IsValid() {
			return nil, fmt.Errorf("%s shares no IPv4 segment with %s (it checks LB7s over IPv4)", l.a.node.Name, n.Name)
		}
		out = append(out, d)
	}
	return out, nil
}

func healthTargets(lb7s []lb7Target) []health.Target {
	var out []health.Target
	for _, d := range lb7s {
		out = append(out, health.Target{Name: d.name, Addr: netip.AddrPortFrom(d.addrs[topology.IPv4], haproxy.DefaultHealthPort), Path: haproxy.HealthURI})
	}
	return out
}

// Reconfigure follows a new LB7 list: a new LB7 is checked at once and
// joins IPVS (last, weight 0 until healthy); a removed one leaves IPVS.
func (l *lb4) Reconfigure(_ context.Context, t *topology.Topology) error {
	lb7s, err := l.targets(t)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.lb7s = lb7s
	keep := map[string]bool{}
	for _, d := range lb7s {
		keep[d.name] = true
	}
	for name := range l.healthy {
		if !keep[name] {
			delete(l.healthy, name)
			delete(l.known, name)
		}
	}
	l.mu.Unlock()
	l.checker.Update(healthTargets(lb7s))
	if l.bfd != nil {
		l.bfd.SetPeers(l.a.bfdPeers(topology.RoleRouter))
	}
	return l.reconcile()
}

// Reconfigure follows a new LB4 list when the router peers with the LB4s
// directly (no route reflectors).
func (r *router) Reconfigure(ctx context.Context, _ *topology.Topology) error {
	if r.bfd != nil {
		r.bfd.SetPeers(r.a.bfdPeers(topology.RoleLB4))
	}
	ns, err := r.a.upstreams(topology.RoleLB4, true)
	if err != nil {
		return err
	}
	return r.speaker.SetNeighbors(ctx, ns)
}

// clients are a route reflector's neighbours: every router and LB4. The
// routers dial; the reflector dials the LB4s (see upstreams).
func (r *reflector) clients() ([]bgp.Neighbor, error) {
	var ns []bgp.Neighbor
	for _, role := range []topology.Role{topology.RoleRouter, topology.RoleLB4} {
		for _, n := range r.a.topology().NodesByRole(role) {
			addr, err := r.a.facing(n.Name)
			if err != nil {
				return nil, err
			}
			ns = append(ns, bgp.Neighbor{Address: addr, RRClient: true, AddPaths: true, Passive: role == topology.RoleRouter})
		}
	}
	return ns, nil
}

// Reconfigure follows a new LB4 list.
func (r *reflector) Reconfigure(ctx context.Context, _ *topology.Topology) error {
	ns, err := r.clients()
	if err != nil {
		return err
	}
	return r.speaker.SetNeighbors(ctx, ns)
}
