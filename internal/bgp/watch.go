package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
)

// bestWatcher is the part of the GoBGP server that WatchBest uses; tests
// feed synthetic events through it.
type bestWatcher interface {
	WatchEvent(ctx context.Context, r *api.WatchEventRequest, fn func(*api.WatchEventResponse)) error
}

// watchBest subscribes to best-path events of w and reports next-hop set
// changes to fn until ctx is done.
//
// With multiple paths enabled, GoBGP sends for every destination that
// changed its whole new multipath set (all paths of equal preference), or a
// single withdrawn path when none is left; one event may cover several
// destinations. A set therefore replaces the previous one of its prefix.
func watchBest(ctx context.Context, w bestWatcher, log *slog.Logger, fn func(netip.Prefix, []netip.Addr)) error {
	events := make(chan []*api.Path)
	req := &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}},
	}}
	// GoBGP calls this from one goroutine per watch and queues events
	// without bound before it, so blocking here stalls only this watch.
	err := w.WatchEvent(ctx, req, func(r *api.WatchEventResponse) {
		t := r.GetTable()
		if t == nil {
			return
		}
		select {
		case events <- t.GetPaths():
		case <-ctx.Done():
		}
	})
	if err != nil {
		return fmt.Errorf("watch best paths: %w", err)
	}
	var table nextHopTable
	for {
		select {
		case <-ctx.Done():
			return nil
		case paths := <-events:
			parsed := make([]bestPath, 0, len(paths))
			for _, p := range paths {
				bp, err := parsePath(p)
				if err != nil {
					log.Warn("best path ignored", "error", err)
					continue
				}
				parsed = append(parsed, bp)
			}
			for _, c := range table.apply(parsed) {
				log.Debug("next hops changed", "prefix", c.Prefix, "next_hops", c.NextHops)
				fn(c.Prefix, c.NextHops)
			}
		}
	}
}

// nextHopSet is the multipath next-hop set of one prefix; an empty set
// means the prefix has no route.
type nextHopSet struct {
	Prefix   netip.Prefix
	NextHops []netip.Addr
}

// nextHopTable keeps the current next-hop set of every prefix.
type nextHopTable struct {
	sets map[netip.Prefix][]netip.Addr
}

// apply takes the paths of one best-path event, in which the paths of a
// prefix form its complete new set, and returns the sets that changed,
// sorted by prefix, each with sorted next hops.
func (t *nextHopTable) apply(paths []bestPath) []nextHopSet {
	if t.sets == nil {
		t.sets = make(map[netip.Prefix][]netip.Addr)
	}
	next := make(map[netip.Prefix][]netip.Addr)
	for _, p := range paths {
		hops := next[p.Prefix]
		if !p.Withdrawn && p.NextHop.IsValid() {
			hops = append(hops, p.NextHop)
		}
		next[p.Prefix] = hops
	}
	prefixes := make([]netip.Prefix, 0, len(next))
	for p := range next {
		prefixes = append(prefixes, p)
	}
	slices.SortFunc(prefixes, netip.Prefix.Compare)
	var changed []nextHopSet
	for _, p := range prefixes {
		hops := next[p]
		slices.SortFunc(hops, netip.Addr.Compare)
		hops = slices.Compact(hops)
		if slices.Equal(hops, t.sets[p]) {
			continue
		}
		if len(hops) == 0 {
			delete(t.sets, p)
			changed = append(changed, nextHopSet{Prefix: p})
			continue
		}
		t.sets[p] = hops
		changed = append(changed, nextHopSet{Prefix: p, NextHops: slices.Clone(hops)})
	}
	return changed
}

// peerLister is the part of the GoBGP server that watchPeers reads the
// current sessions from.
type peerLister interface {
	ListPeer(ctx context.Context, r *api.ListPeerRequest, fn func(*api.Peer)) error
}

// sessionState names a session state as Peer.State does: "established",
// "active", "idle"...
func sessionState(st api.PeerState_SessionState) string {
	name, ok := api.PeerState_SessionState_name[int32(st)]
	if !ok {
		return "unknown"
	}
	return strings.ToLower(name)
}

// watchPeers calls fn with every session's current state, then with each
// state change as GoBGP reports it, until ctx is done: no polling.
func watchPeers(ctx context.Context, w bestWatcher, l peerLister, fn func(netip.Addr, string)) error {
	type change struct {
		addr  netip.Addr
		state string
	}
	events := make(chan change)
	send := func(addr, state string) {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		select {
		case events <- change{a, state}:
		case <-ctx.Done():
		}
	}
	// Watch first, then read the sessions: no change falls in between.
	err := w.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer().GetPeer(); p != nil && r.GetPeer().GetType() == api.WatchEventResponse_PeerEvent_STATE {
			send(p.GetState().GetNeighborAddress(), sessionState(p.GetState().GetSessionState()))
		}
	})
	if err != nil {
		return fmt.Errorf("watch bgp sessions: %w", err)
	}
	var current []change
	err = l.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			current = append(current, change{a, sessionState(p.GetState().GetSessionState())})
		}
	})
	if err != nil {
		return fmt.Errorf("list bgp sessions: %w", err)
	}
	for _, c := range current {
		fn(c.addr, c.state)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-events:
			fn(c.addr, c.state)
		}
	}
}
