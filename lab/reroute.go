package lab

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/scenario"
)

// clockSlack is how far before a step's start its injection event may be
// stamped: the scenario's clock and the supervisor's are two processes'
// (and in VM mode two kernels') readings of one clock.
const clockSlack = time.Second

// Rerouted implements scenario.Rerouter.
func (s scenarioLab) Rerouted(ctx context.Context, node string, since time.Time) (time.Duration, bool, error) {
	return s.l.Rerouted(ctx, node, since)
}

// Rerouted tells, from the lab's event log, how long after the first
// failure injected into node at or after since (kill, freeze, link...)
// every router had dropped the node from the routes that went through it
// then. ok is false when no injection into node came after since, no
// router routed through it, or one still does.
func (l *Lab) Rerouted(ctx context.Context, node string, since time.Time) (d time.Duration, ok bool, err error) {
	t, err := l.topology()
	if err != nil {
		return 0, false, err
	}
	n, ok := t.Node(node)
	if !ok {
		return 0, false, nil // removed since
	}
	evs, err := l.client.Events(ctx, 0)
	if err != nil {
		return 0, false, err
	}
	var addrs []netip.Addr
	for _, i := range n.Interfaces {
		for _, p := range i.Addresses {
			addrs = append(addrs, p.Addr())
		}
	}
	d, ok = rerouted(evs, node, addrs, since.Add(-clockSlack))
	return d, ok, nil
}

// rerouted reads, in events sorted by time, the first injection into node
// at or after since, and returns how long after it every route that went
// through one of addrs then no longer did; ok is false when there was no
// such injection, no such route, or a route kept the node.
func rerouted(events []control.Event, node string, addrs []netip.Addr, since time.Time) (time.Duration, bool) {
	type key struct {
		router string
		prefix netip.Prefix
	}
	through := func(r *control.Route) bool {
		return slices.ContainsFunc(r.NextHops, func(a netip.Addr) bool { return slices.Contains(addrs, a) })
	}
	routes := map[key]*control.Route{}
	var at time.Time
	pending := map[key]bool{}
	var last time.Time
	for _, e := range events {
		switch {
		case at.IsZero() && e.Kind == control.EventInject && e.Node == node && !e.Time.Before(since):
			at = e.Time
			for k, r := range routes {
				if through(r) {
					pending[k] = true
				}
			}
			if len(pending) == 0 {
				return 0, false
			}
		case e.Kind == control.EventRoute && e.Route != nil:
			k := key{e.Node, e.Route.Prefix}
			routes[k] = e.Route
			if pending[k] && !through(e.Route) {
				delete(pending, k)
				last = e.Time
				if len(pending) == 0 {
					return last.Sub(at), true
				}
			}
		}
	}
	return 0, false
}

var _ scenario.Rerouter = scenarioLab{}
