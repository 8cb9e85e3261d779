// Package bgp runs the lab's embedded BGP speakers (GoBGP) and writes the
// routes they select into the kernel FIB.
//
// Every session is iBGP in one AS with explicitly configured neighbours.
// Three roles use it: a router receives VIP routes and installs them as
// ECMP routes through a FIB, a route reflector reflects every path to the
// routers with ADD-PATH and installs nothing, and an LB4 announces its VIP
// /32s with itself as next hop and withdraws them on demand.
//
// GoBGP keeps process-wide state and dials from arbitrary goroutines, so a
// process runs at most one Speaker, and that process must be born inside
// the node's network namespace.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Errors returned by Speaker methods called at the wrong time.
var (
	ErrNotStarted = errors.New("bgp speaker not started")
	ErrStopped    = errors.New("bgp speaker stopped")
)

// Peer is the state of one session as seen by the local speaker.
type Peer struct {
	Address netip.Addr
	// State is the lower-case FSM state: "idle", "connect", "active",
	// "opensent", "openconfirm" or "established".
	State string
	// Uptime is how long the session has been established (one-second
	// resolution), zero when it is not.
	Uptime time.Duration
	// Received and Accepted count the prefixes received from the peer and
	// accepted by import policy, summed over the address families.
	Received, Accepted uint64
}

// Speaker is one embedded GoBGP speaker. New returns it inert; Start runs
// it; Stop ends it for good.
type Speaker struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	srv    *server.BgpServer // Set by Start.
	ctx    context.Context   // Cancelled by Stop, ends watches.
	cancel context.CancelFunc
}

// New returns a speaker for cfg that does nothing until Start. Timers left
// at zero get their defaults.
func New(cfg Config, log *slog.Logger) *Speaker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Speaker{cfg: cfg.withDefaults(), log: log, ctx: ctx, cancel: cancel}
}

// Start validates the configuration, starts GoBGP with multipath selection
// on and adds every neighbour. On failure nothing is left running. A
// speaker starts at most once.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return fmt.Errorf("start bgp speaker: %w", ErrStopped)
	}
	if s.srv != nil {
		return errors.New("start bgp speaker: already started")
	}
	if err := s.cfg.Validate(); err != nil {
		return fmt.Errorf("start bgp speaker: %w", err)
	}
	srv := server.NewBgpServer(server.LoggerOption(slogLogger{log: s.log.With("component", "gobgp")}))
	// Serve never returns: GoBGP has no way to end it. The goroutine
	// idles once the server is stopped and dies with the process.
	if s.cfg.Serve == nil {
		go srv.Serve()
	} else if err := s.cfg.Serve(srv.Serve); err != nil {
		return fmt.Errorf("start bgp speaker %s: run its serve loop: %w", s.cfg.RouterID, err)
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: apiGlobal(s.cfg)}); err != nil {
		srv.Stop()
		return fmt.Errorf("start bgp speaker %s: %w", s.cfg.RouterID, err)
	}
	for _, n := range s.cfg.Neighbors {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(s.cfg, n)}); err != nil {
			srv.Stop()
			return fmt.Errorf("add bgp neighbor %s: %w", n.Address, err)
		}
	}
	s.srv = srv
	s.log.Info("bgp speaker started", "router_id", s.cfg.RouterID, "asn", s.cfg.ASN,
		"listen", s.cfg.Listen, "neighbors", len(s.cfg.Neighbors))
	return nil
}

// Stop closes every session (peers get a Cease notification) and ends
// every watch. It is safe to call more than once, and before Start.
func (s *Speaker) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	s.cancel()
	if s.srv != nil {
		s.srv.Stop()
		s.log.Info("bgp speaker stopped", "router_id", s.cfg.RouterID)
	}
}

// server returns the running GoBGP server.
func (s *Speaker) server() (*server.BgpServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ctx.Err() != nil:
		return nil, ErrStopped
	case s.srv == nil:
		return nil, ErrNotStarted
	}
	return s.srv, nil
}

// Announce originates p with the given next hop, replacing an earlier
// announcement of p. The next hop must be of the prefix's family.
func (s *Speaker) Announce(p netip.Prefix, nextHop netip.Addr) error {
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("announce %s: %w", p, err)
	}
	if !nextHop.IsValid() {
		return fmt.Errorf("announce %s: no next hop", p)
	}
	path, err := apiPath(p, nextHop)
	if err != nil {
		return fmt.Errorf("announce %s: %w", p, err)
	}
	if _, err := srv.AddPath(s.ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
		return fmt.Errorf("announce %s via %s: %w", p, nextHop, err)
	}
	s.log.Info("prefix announced", "prefix", p, "next_hop", nextHop)
	return nil
}

// Withdraw stops originating p. Withdrawing a prefix that is not
// announced is not an error.
func (s *Speaker) Withdraw(p netip.Prefix) error {
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("withdraw %s: %w", p, err)
	}
	path, err := apiPath(p, netip.Addr{})
	if err != nil {
		return fmt.Errorf("withdraw %s: %w", p, err)
	}
	err = srv.DeletePath(s.ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path})
	if err != nil {
		return fmt.Errorf("withdraw %s: %w", p, err)
	}
	s.log.Info("prefix withdrawn", "prefix", p)
	return nil
}

// Peers returns the state of every configured neighbour, sorted by
// address.
func (s *Speaker) Peers(ctx context.Context) ([]Peer, error) {
	srv, err := s.server()
	if err != nil {
		return nil, fmt.Errorf("list bgp peers: %w", err)
	}
	var raw []*api.Peer
	if err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { raw = append(raw, p) }); err != nil {
		return nil, fmt.Errorf("list bgp peers: %w", err)
	}
	now := time.Now()
	peers := make([]Peer, 0, len(raw))
	for _, r := range raw {
		p, err := peerFromAPI(r, now)
		if err != nil {
			return nil, fmt.Errorf("list bgp peers: %w", err)
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	return peers, nil
}

// WatchBest calls fn with the complete, sorted multipath next-hop set of a
// prefix each time that set changes, starting with the prefixes already
// known; an empty set means the prefix is gone. fn runs on the calling
// goroutine, one call at a time. WatchBest blocks until ctx is done or the
// speaker stops, and then returns nil.
func (s *Speaker) WatchBest(ctx context.Context, fn func(p netip.Prefix, nextHops []netip.Addr)) error {
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("watch best paths: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	return watchBest(ctx, srv, s.log, fn)
}

// WatchPeers calls fn with the address and session state ("established",
// "active"...) of every neighbour, then again each time a session changes
// state, as GoBGP reports it (no polling). fn runs on the calling
// goroutine, one call at a time, and may see a state twice. WatchPeers
// blocks until ctx is done or the speaker stops, and then returns nil.
func (s *Speaker) WatchPeers(ctx context.Context, fn func(addr netip.Addr, state string)) error {
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("watch bgp sessions: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	return watchPeers(ctx, srv, srv, fn)
}

// SetNeighbors makes the speaker's neighbours ns: sessions with new ones
// start, sessions with the ones left out close (lab add, lab remove).
// Neighbours already there keep their sessions.
func (s *Speaker) SetNeighbors(ctx context.Context, ns []Neighbor) error {
	srv, err := s.server()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	have := map[netip.Addr]bool{}
	for _, n := range s.cfg.Neighbors {
		have[n.Address] = true
	}
	want := map[netip.Addr]bool{}
	for _, n := range ns {
		want[n.Address] = true
		if have[n.Address] {
			continue
		}
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(s.cfg, n)}); err != nil {
			return fmt.Errorf("add bgp neighbor %s: %w", n.Address, err)
		}
		s.log.Info("bgp neighbor added", "neighbor", n.Address)
	}
	for _, n := range s.cfg.Neighbors {
		if want[n.Address] {
			continue
		}
		if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: n.Address.String()}); err != nil {
			return fmt.Errorf("delete bgp neighbor %s: %w", n.Address, err)
		}
		s.log.Info("bgp neighbor deleted", "neighbor", n.Address)
	}
	s.cfg.Neighbors = slices.Clone(ns)
	return nil
}
