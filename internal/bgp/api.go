package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file turns the package's plain values into GoBGP API objects and
// back. It touches no server, so it is tested on its own.

// noListenPort tells GoBGP to open no listening socket.
const noListenPort = -1

// bgpPort is the port routers and route reflectors listen on.
const bgpPort = 179

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// apiGlobal is the global part of the StartBgp request for c, which has
// its defaults applied.
func apiGlobal(c Config) *api.Global {
	g := &api.Global{
		Asn:              c.ASN,
		RouterId:         c.RouterID.String(),
		ListenPort:       noListenPort,
		UseMultiplePaths: true,
	}
	if c.Listen {
		g.ListenPort = bgpPort
	}
	return g
}

// apiPeer is the AddPeer request body for neighbour n of a speaker
// configured with c, which has its defaults applied. Both unicast families
// are enabled so that IPv6 prefixes travel on the same sessions.
func apiPeer(c Config, n Neighbor) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         c.ASN,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      seconds(c.ConnectRetry),
			HoldTime:          seconds(c.HoldTime),
			KeepaliveInterval: seconds(c.Keepalive),
		}},
	}
	if n.Passive {
		p.Transport = &api.Transport{PassiveMode: true}
	}
	if n.RRClient {
		p.RouteReflector = &api.RouteReflector{
			RouteReflectorClient:    true,
			RouteReflectorClusterId: c.RouterID.String(),
		}
	}
	for _, f := range []*api.Family{familyIPv4, familyIPv6} {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: proto.Clone(f).(*api.Family), Enabled: true}}
		if n.AddPaths {
			af.AddPaths = &api.AddPaths{Config: &api.AddPathsConfig{Receive: true, SendMax: AddPathsSendMax}}
		}
		p.AfiSafis = append(p.AfiSafis, af)
	}
	return p
}

func seconds(d time.Duration) uint64 {
	return uint64(d / time.Second)
}

// apiPath is the path announcing p with nextHop, or withdrawing p when
// nextHop is the zero Addr.
func apiPath(p netip.Prefix, nextHop netip.Addr) (*api.Path, error) {
	if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" {
		return nil, fmt.Errorf("prefix %s is not a canonical prefix", p)
	}
	family := familyIPv4
	if p.Addr().Is6() {
		family = familyIPv6
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{
		Prefix:    p.Addr().String(),
		PrefixLen: uint32(p.Bits()),
	})
	if err != nil {
		return nil, fmt.Errorf("encode prefix %s: %w", p, err)
	}
	path := &api.Path{Family: proto.Clone(family).(*api.Family), Nlri: nlri}
	if !nextHop.IsValid() {
		path.IsWithdraw = true
		return path, nil
	}
	if nextHop.Is4() != p.Addr().Is4() || nextHop.IsUnspecified() || nextHop.Zone() != "" {
		return nil, fmt.Errorf("next hop %s does not fit prefix %s", nextHop, p)
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP.
	if err != nil {
		return nil, fmt.Errorf("encode origin: %w", err)
	}
	var nh *anypb.Any
	if nextHop.Is4() {
		nh, err = anypb.New(&api.NextHopAttribute{NextHop: nextHop.String()})
	} else {
		nh, err = anypb.New(&api.MpReachNLRIAttribute{
			Family:   proto.Clone(family).(*api.Family),
			NextHops: []string{nextHop.String()},
			Nlris:    []*anypb.Any{nlri},
		})
	}
	if err != nil {
		return nil, fmt.Errorf("encode next hop %s: %w", nextHop, err)
	}
	path.Pattrs = []*anypb.Any{origin, nh}
	return path, nil
}

// bestPath is what WatchBest needs to know of one path of an event.
type bestPath struct {
	Prefix    netip.Prefix
	NextHop   netip.Addr
	Withdrawn bool
}

// parsePath extracts the prefix, the next hop and the withdrawal flag of
// an IPv4 or IPv6 unicast path.
func parsePath(p *api.Path) (bestPath, error) {
	var bp bestPath
	if f := p.GetFamily(); f.GetSafi() != api.Family_SAFI_UNICAST ||
		(f.GetAfi() != api.Family_AFI_IP && f.GetAfi() != api.Family_AFI_IP6) {
		return bp, fmt.Errorf("unsupported family %v", f)
	}
	var nlri api.IPAddressPrefix
	if err := p.GetNlri().UnmarshalTo(&nlri); err != nil {
		return bp, fmt.Errorf("decode nlri: %w", err)
	}
	addr, err := netip.ParseAddr(nlri.Prefix)
	if err != nil {
		return bp, fmt.Errorf("decode nlri: %w", err)
	}
	bp.Prefix, err = addr.Prefix(int(nlri.PrefixLen))
	if err != nil {
		return bp, fmt.Errorf("decode nlri: %w", err)
	}
	bp.Withdrawn = p.GetIsWithdraw()
	if bp.Withdrawn {
		return bp, nil
	}
	for _, a := range p.GetPattrs() {
		var s string
		switch {
		case a.MessageIs((*api.NextHopAttribute)(nil)):
			var nh api.NextHopAttribute
			if err := a.UnmarshalTo(&nh); err != nil {
				return bp, fmt.Errorf("decode next hop of %s: %w", bp.Prefix, err)
			}
			s = nh.NextHop
		case a.MessageIs((*api.MpReachNLRIAttribute)(nil)):
			var mp api.MpReachNLRIAttribute
			if err := a.UnmarshalTo(&mp); err != nil {
				return bp, fmt.Errorf("decode next hop of %s: %w", bp.Prefix, err)
			}
			if len(mp.NextHops) == 0 {
				continue
			}
			s = mp.NextHops[0] // A second one would be link-local.
		default:
			continue
		}
		nh, err := netip.ParseAddr(s)
		if err != nil {
			return bp, fmt.Errorf("decode next hop of %s: %w", bp.Prefix, err)
		}
		bp.NextHop = nh.Unmap()
		return bp, nil
	}
	return bp, fmt.Errorf("path to %s has no next hop", bp.Prefix)
}

// peerFromAPI converts a ListPeer answer; now is the time its uptime is
// measured against.
func peerFromAPI(p *api.Peer, now time.Time) (Peer, error) {
	addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
	if err != nil {
		return Peer{}, fmt.Errorf("decode peer address: %w", err)
	}
	st := p.GetState().GetSessionState()
	out := Peer{Address: addr, State: sessionState(st)}
	if st == api.PeerState_ESTABLISHED {
		if up := p.GetTimers().GetState().GetUptime(); up != nil {
			out.Uptime = max(now.Sub(up.AsTime()), 0)
		}
	}
	for _, af := range p.GetAfiSafis() {
		out.Received += af.GetState().GetReceived()
		out.Accepted += af.GetState().GetAccepted()
	}
	return out, nil
}
