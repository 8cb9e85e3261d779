package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/bfd"
	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/topology"
)

// BFD runs between routers and LB4s: a router has a session with every
// LB4 address facing it, an LB4 with every router address facing it, in
// each family they share. The router acts on it (see [usableNextHops])
// and runs the echo function when its settings ask (the LB4's kernel
// answers); the LB4 only answers, and shows its sessions.

// bfdPeers are the addresses, facing this node, of every node of role.
func (a *agent) bfdPeers(role topology.Role) []netip.Addr {
	t := a.topology()
	var peers []netip.Addr
	for _, n := range t.NodesByRole(role) {
		for _, f := range topology.Families {
			if addr, ok := t.AddressFacing(a.node.Name, n.Name, f); ok {
				peers = append(peers, addr)
			}
		}
	}
	return peers
}

// startBFD starts the node's BFD sessions with peers when its settings
// enable BFD, and returns nil otherwise; see bfdChanged for onChange. The
// sessions echo when echo is set (a router) and the settings give an
// echo interval.
func (a *agent) startBFD(ctx context.Context, peers []netip.Addr, echo bool, onChange func(bfd.Session)) (*bfd.Server, error) {
	set := a.node.Settings.BFD
	if !set.Enabled {
		return nil, nil
	}
	cfg := bfd.Config{Interval: set.Interval, Multiplier: set.Multiplier}
	if echo {
		cfg.Echo = set.Echo
	}
	s := bfd.NewServer(cfg, a.at.listenPacket, a.log, a.bfdChanged(onChange))
	s.SetPeers(peers)
	if err := s.Start(ctx); err != nil {
		return nil, fmt.Errorf("start bfd: %w", err)
	}
	return s, nil
}

// bfdChanged is the change callback of a node's BFD sessions: a session
// going up, or down after it was up, goes to the event log (with why),
// then every change to then.
func (a *agent) bfdChanged(then func(bfd.Session)) func(bfd.Session) {
	return func(s bfd.Session) {
		switch {
		case s.State == bfd.Up:
			a.event(control.EventBFD, fmt.Sprintf("session with %s up", s.Peer))
		case s.Failed() && s.State != bfd.Init: // Init is on the way back up
			a.event(control.EventBFD, strings.TrimSuffix(fmt.Sprintf("session with %s %s: %s", s.Peer, s.State, s.Diag), ": "))
		}
		if then != nil {
			then(s)
		}
	}
}

// bfdSessions reports the sessions of s, none when BFD is off.
func bfdSessions(s *bfd.Server) []bfd.Session {
	if s == nil {
		return nil
	}
	return s.Sessions()
}

// bfdSummary is the one-line state of the sessions, "" when BFD is off.
func bfdSummary(ss []bfd.Session) string {
	if ss == nil {
		return ""
	}
	up := 0
	for _, s := range ss {
		if s.State == bfd.Up {
			up++
		}
	}
	return fmt.Sprintf("bfd %d/%d up", up, len(ss))
}

// usableNextHops is what the FIB should hold of a route BGP learned with
// next hops learned: every one not found dead (its BFD session failed and
// it answers no ping). An LB4 whose session never came up (BFD off on its
// side) stays: BGP alone decides for it.
func usableNextHops(learned []netip.Addr, failed map[netip.Addr]bool) []netip.Addr {
	return slices.DeleteFunc(slices.Clone(learned), func(a netip.Addr) bool { return failed[a] })
}

// listenPacket opens a datagram socket in the node; a pooled node's crash
// closes it.
func (p place) listenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := p.within(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil || p.opened == nil {
		return c, err
	}
	if !p.opened.add(c) {
		return nil, fmt.Errorf("listen %s %s: node crashed", network, addr)
	}
	return c, nil
}
