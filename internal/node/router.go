package node

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/bfd"
	"github.com/lab-lb/lab/internal/bgp"
	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/topology"
)

// bgpConfig is the speaker configuration shared by every role: router ID,
// ASN and timers from the topology.
func (a *agent) bgpConfig() (bgp.Config, error) {
	id, err := routerID(a.node)
	if err != nil {
		return bgp.Config{}, err
	}
	t := a.node.Settings.BGP
	return bgp.Config{
		RouterID: id, ASN: a.topology().BGP.ASN,
		HoldTime: t.HoldTime, Keepalive: t.Keepalive, ConnectRetry: t.ConnectRetry,
	}, nil
}

// upstreams are the BGP peers of routers and LB4s: the route reflectors
// when the topology has some, else (routers) every LB4 or (LB4s) every
// router.
//
// Exactly one end of each session dials, so that no two connections
// collide: routers dial the reflectors, and routers and reflectors dial
// the LB4s, which only accept: an LB4 runs in the pool, where GoBGP's
// dials could not be placed in its namespace.
func (a *agent) upstreams(direct topology.Role, addPaths bool) ([]bgp.Neighbor, error) {
	names := a.topology().BGP.RouteReflectors
	passive := a.node.Role == topology.RoleLB4
	if len(names) == 0 {
		for _, n := range a.topology().NodesByRole(direct) {
			names = append(names, n.Name)
		}
	}
	var ns []bgp.Neighbor
	for _, name := range names {
		addr, err := a.facing(name)
		if err != nil {
			return nil, err
		}
		ns = append(ns, bgp.Neighbor{Address: addr, AddPaths: addPaths, Passive: passive})
	}
	return ns, nil
}

// router is tier 1: it learns the VIPs over BGP and installs one
// multipath route per VIP, one next hop per LB4 announcing it, less the
// LB4s whose BFD session failed: BFD notices a silent LB4 well before the
// BGP hold time does.
type router struct {
	a       *agent
	speaker *bgp.Speaker
	bfd     *bfd.Server // nil when BFD is off
	fib     routeSetter
	probe   prober          // asks a failed LB4's kernel (see probe.go)
	ctx     context.Context // the agent's life, for the probes

	mu      sync.Mutex
	learned map[netip.Prefix][]netip.Addr // BGP's multipath set per prefix
	bfdDown map[netip.Addr]uint64         // LB4 addresses whose BFD session failed: the failure's number
	downs   uint64                        // failures numbered so far
	failed  map[netip.Addr]bool           // of those, the ones that answer no ping either: out of the routes
	routes  map[netip.Prefix][]netip.Addr // what the FIB holds
}

func (r *router) Start(ctx context.Context) error {
	cfg, err := r.a.bgpConfig()
	if err != nil {
		return err
	}
	cfg.Listen = true
	if cfg.Neighbors, err = r.a.upstreams(topology.RoleLB4, true); err != nil {
		return err
	}
	r.learned, r.routes = map[netip.Prefix][]netip.Addr{}, map[netip.Prefix][]netip.Addr{}
	r.bfdDown, r.failed = map[netip.Addr]uint64{}, map[netip.Addr]bool{}
	r.probe, r.ctx = icmpProber{}, ctx
	fib, err := bgp.NewFIB(r.a.log)
	if err != nil {
		return err
	}
	r.fib = fib
	if r.bfd, err = r.a.startBFD(ctx, r.a.bfdPeers(topology.RoleLB4), true, r.onBFD); err != nil {
		fib.Close()
		return err
	}
	r.speaker = bgp.New(cfg, r.a.log)
	if err := r.speaker.Start(ctx); err != nil {
		fib.Close()
		return fmt.Errorf("start bgp: %w", err)
	}
	go func() {
		defer fib.Close()
		err := r.speaker.WatchBest(ctx, r.onBest)
		if err != nil {
			r.a.log.Error("watch bgp", "err", err)
		}
	}()
	go r.a.watchPeers(ctx, r.speaker)
	go func() { <-ctx.Done(); r.speaker.Stop() }()
	return nil
}

// routeSetter is what the router needs of the kernel's FIB: a *bgp.FIB,
// or a fake in unit tests.
type routeSetter interface {
	Set(p netip.Prefix, nextHops []netip.Addr) error
}

// onBest follows BGP's multipath set for p.
func (r *router) onBest(p netip.Prefix, nhs []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(nhs) == 0 {
		delete(r.learned, p)
	} else {
		r.learned[p] = nhs
	}
	r.install(p)
}

// onBFD follows a BFD session: when it fails, the LB4 leaves the routes
// through it as soon as its kernel is found silent too (at once when the
// echo function failed it, after confirm otherwise); when it comes back
// up, it returns to them at once.
func (r *router) onBFD(s bfd.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if down := r.bfdDown[s.Peer] != 0; down == s.Failed() {
		return
	}
	if s.Failed() {
		r.downs++
		r.bfdDown[s.Peer] = r.downs
		if s.Diag == bfd.DiagEchoFailed {
			r.setFailed(s.Peer, true) // its kernel answered no echo: asked already
			return
		}
		go r.confirm(s.Peer, r.downs)
		return
	}
	delete(r.bfdDown, s.Peer)
	r.setFailed(s.Peer, false)
}

// confirmAgain is how often a router asks again an LB4 whose BFD session
// stays down but which answered.
const confirmAgain = time.Second

// confirm asks the kernel of an LB4 whose BFD session failed (failure
// number down) whether it is there, until it is not (out of the routes)
// or that failure is over.
func (r *router) confirm(peer netip.Addr, down uint64) {
	for first := true; ; first = false {
		alive := r.probe.Answers(r.ctx, peer, confirmWithin)
		r.mu.Lock()
		if r.bfdDown[peer] != down || r.ctx.Err() != nil {
			r.mu.Unlock()
			return
		}
		if !alive {
			r.setFailed(peer, true)
			r.mu.Unlock()
			return
		}
		if first {
			r.a.event(control.EventBFD, fmt.Sprintf("%s answers pings: kept in the routes while its session is down", peer))
		}
		r.mu.Unlock()
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(confirmAgain):
		}
	}
}

// setFailed takes peer out of the routes through it, or puts it back;
// r.mu is held.
func (r *router) setFailed(peer netip.Addr, failed bool) {
	if r.failed[peer] == failed {
		return
	}
	r.failed[peer] = failed
	for _, p := range slices.SortedFunc(maps.Keys(r.learned), netip.Prefix.Compare) {
		if slices.Contains(r.learned[p], peer) {
			r.install(p)
		}
	}
}

// install makes the FIB's route to p what BGP and BFD say; r.mu is held.
func (r *router) install(p netip.Prefix) {
	nhs := usableNextHops(r.learned[p], r.failed)
	if len(nhs) > 0 && slices.Equal(nhs, r.routes[p]) {
		return // a delete is always passed on: it is idempotent
	}
	if err := r.fib.Set(p, nhs); err != nil {
		r.a.log.Error("install route", "prefix", p, "next_hops", nhs, "err", err)
		return
	}
	r.a.log.Info("route", "prefix", p, "next_hops", nhs)
	r.a.record(control.Event{
		Kind: control.EventRoute, Msg: fmt.Sprintf("%s via %v", p, nhs),
		Route: &control.Route{Prefix: p, NextHops: slices.Clone(nhs)},
	})
	if len(nhs) == 0 {
		delete(r.routes, p)
	} else {
		r.routes[p] = nhs
	}
}

// Ready when every VIP has a route through every LB4.
func (r *router) Ready() (bool, string) {
	want := len(r.a.topology().NodesByRole(topology.RoleLB4))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.a.topology().VIPs {
		p := netip.PrefixFrom(v.Address, v.Address.BitLen())
		if got := len(r.routes[p]); got < want {
			return false, fmt.Sprintf("%s has %d of %d next hops", p, got, want)
		}
	}
	return true, ""
}

// RouterStatus is what `lab status` shows of a router.
type RouterStatus struct {
	Peers  []bgp.Peer              `json:"peers"`
	Routes map[string][]netip.Addr `json:"routes"`        // VIP prefix -> next hops in the FIB
	BFD    []bfd.Session           `json:"bfd,omitempty"` // sessions with the LB4s
}

func (r *router) Status() any {
	st := RouterStatus{Routes: map[string][]netip.Addr{}, BFD: bfdSessions(r.bfd)}
	st.Peers, _ = r.speaker.Peers(context.Background())
	r.mu.Lock()
	for p, nhs := range r.routes {
		st.Routes[p.String()] = slices.Clone(nhs)
	}
	r.mu.Unlock()
	return st
}

// reflector is a BGP route reflector: every router and LB4 is its client,
// and ADD-PATH lets every LB4's path reach the routers.
type reflector struct {
	a       *agent
	speaker *bgp.Speaker
}

func (r *reflector) Start(ctx context.Context) error {
	cfg, err := r.a.bgpConfig()
	if err != nil {
		return err
	}
	cfg.Listen = true
	if cfg.Neighbors, err = r.clients(); err != nil {
		return err
	}
	r.speaker = bgp.New(cfg, r.a.log)
	if err := r.speaker.Start(ctx); err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	go r.a.watchPeers(ctx, r.speaker)
	go func() { <-ctx.Done(); r.speaker.Stop() }()
	return nil
}

// Ready when every session is established.
func (r *reflector) Ready() (bool, string) {
	peers, err := r.speaker.Peers(context.Background())
	if err != nil {
		return false, err.Error()
	}
	for _, p := range peers {
		if p.State != "established" {
			return false, fmt.Sprintf("session with %s is %s", p.Address, p.State)
		}
	}
	return true, ""
}

func (r *reflector) Status() any {
	peers, _ := r.speaker.Peers(context.Background())
	return RouterStatus{Peers: peers}
}

// peersUp counts established sessions.
func peersUp(peers []bgp.Peer) string {
	up := 0
	for _, p := range peers {
		if p.State == "established" {
			up++
		}
	}
	return fmt.Sprintf("bgp %d/%d up", up, len(peers))
}

func (r *router) Summary() string {
	st := r.Status().(RouterStatus)
	parts := []string{peersUp(st.Peers)}
	if b := bfdSummary(st.BFD); b != "" {
		parts = append(parts, b)
	}
	for _, p := range slices.Sorted(maps.Keys(st.Routes)) {
		parts = append(parts, fmt.Sprintf("%s via %d", p, len(st.Routes[p])))
	}
	return strings.Join(parts, "; ")
}

func (r *reflector) Summary() string {
	return peersUp(r.Status().(RouterStatus).Peers)
}

// watchPeers records every BGP session state change of sp in the node's
// event log, as GoBGP pushes them: polling every speaker twice a second
// cost the VM's one CPU for nothing while nothing changed.
func (a *agent) watchPeers(ctx context.Context, sp *bgp.Speaker) {
	last := map[netip.Addr]string{}
	err := sp.WatchPeers(ctx, func(addr netip.Addr, state string) {
		if old, seen := last[addr]; state != old && (seen || state == "established") {
			a.event("bgp", fmt.Sprintf("session with %s %s", addr, state))
		}
		last[addr] = state
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("watch bgp sessions", "err", err)
	}
}
