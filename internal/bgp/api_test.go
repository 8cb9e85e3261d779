package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestAPIGlobal(t *testing.T) {
	base := Config{RouterID: netip.MustParseAddr("10.0.0.1"), ASN: 65000}.withDefaults()
	for _, tc := range []struct {
		name   string
		listen bool
		want   *api.Global
	}{
		{name: "dial only", listen: false, want: &api.Global{
			Asn: 65000, RouterId: "10.0.0.1", ListenPort: -1, UseMultiplePaths: true,
		}},
		{name: "listen", listen: true, want: &api.Global{
			Asn: 65000, RouterId: "10.0.0.1", ListenPort: 179, UseMultiplePaths: true,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Listen = tc.listen
			if diff := cmp.Diff(apiGlobal(c), tc.want, protocmp.Transform()); diff != "" {
				t.Errorf("apiGlobal() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestAPIPeer(t *testing.T) {
	cfg := Config{
		RouterID:     netip.MustParseAddr("10.0.0.2"),
		ASN:          65000,
		HoldTime:     6 * time.Second,
		Keepalive:    2 * time.Second,
		ConnectRetry: 5 * time.Second,
	}.withDefaults()
	families := func(addPaths *api.AddPaths) []*api.AfiSafi {
		return []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}, AddPaths: addPaths},
			{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true}, AddPaths: addPaths},
		}
	}
	timers := &api.Timers{Config: &api.TimersConfig{ConnectRetry: 5, HoldTime: 6, KeepaliveInterval: 2}}
	for _, tc := range []struct {
		name     string
		neighbor Neighbor
		want     *api.Peer
	}{
		{
			name:     "plain",
			neighbor: Neighbor{Address: netip.MustParseAddr("10.0.0.3")},
			want: &api.Peer{
				Conf:     &api.PeerConf{NeighborAddress: "10.0.0.3", PeerAsn: 65000},
				Timers:   timers,
				AfiSafis: families(nil),
			},
		},
		{
			name:     "route reflector client with add-path",
			neighbor: Neighbor{Address: netip.MustParseAddr("10.0.0.1"), RRClient: true, AddPaths: true},
			want: &api.Peer{
				Conf:           &api.PeerConf{NeighborAddress: "10.0.0.1", PeerAsn: 65000},
				Timers:         timers,
				RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: "10.0.0.2"},
				AfiSafis:       families(&api.AddPaths{Config: &api.AddPathsConfig{Receive: true, SendMax: 16}}),
			},
		},
		{
			name:     "passive: a reflector's client dials it",
			neighbor: Neighbor{Address: netip.MustParseAddr("10.0.0.4"), RRClient: true, Passive: true},
			want: &api.Peer{
				Conf:           &api.PeerConf{NeighborAddress: "10.0.0.4", PeerAsn: 65000},
				Timers:         timers,
				Transport:      &api.Transport{PassiveMode: true},
				RouteReflector: &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: "10.0.0.2"},
				AfiSafis:       families(nil),
			},
		},
		{
			name:     "add-path towards a reflector",
			neighbor: Neighbor{Address: netip.MustParseAddr("2001:db8::2"), AddPaths: true},
			want: &api.Peer{
				Conf:     &api.PeerConf{NeighborAddress: "2001:db8::2", PeerAsn: 65000},
				Timers:   timers,
				AfiSafis: families(&api.AddPaths{Config: &api.AddPathsConfig{Receive: true, SendMax: 16}}),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(apiPeer(cfg, tc.neighbor), tc.want, protocmp.Transform()); diff != "" {
				t.Errorf("apiPeer() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestAPIPath(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prefix  string
		nextHop string // Empty for a withdrawal.
		wantErr bool
		want    bestPath
	}{
		{name: "ipv4", prefix: "198.51.100.1/32", nextHop: "10.0.0.3",
			want: bestPath{Prefix: netip.MustParsePrefix("198.51.100.1/32"), NextHop: netip.MustParseAddr("10.0.0.3")}},
		{name: "ipv6", prefix: "2001:db8:100::1/128", nextHop: "2001:db8::3",
			want: bestPath{Prefix: netip.MustParsePrefix("2001:db8:100::1/128"), NextHop: netip.MustParseAddr("2001:db8::3")}},
		{name: "withdrawal", prefix: "198.51.100.0/24",
			want: bestPath{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Withdrawn: true}},
		{name: "host bits set", prefix: "198.51.100.1/24", nextHop: "10.0.0.3", wantErr: true},
		{name: "family mismatch", prefix: "198.51.100.1/32", nextHop: "2001:db8::3", wantErr: true},
		{name: "unspecified next hop", prefix: "198.51.100.1/32", nextHop: "0.0.0.0", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nh netip.Addr
			if tc.nextHop != "" {
				nh = netip.MustParseAddr(tc.nextHop)
			}
			path, err := apiPath(netip.MustParsePrefix(tc.prefix), nh)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("apiPath() = %v, want an error", path)
				}
				return
			}
			if err != nil {
				t.Fatalf("apiPath() error = %v", err)
			}
			got, err := parsePath(path)
			if err != nil {
				t.Fatalf("parsePath(apiPath()) error = %v", err)
			}
			if diff := cmp.Diff(got, tc.want, addrComparer); diff != "" {
				t.Errorf("parsePath(apiPath()) (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParsePathErrors(t *testing.T) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: "198.51.100.1", PrefixLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	origin, err := anypb.New(&api.OriginAttribute{})
	if err != nil {
		t.Fatal(err)
	}
	v4 := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	for _, tc := range []struct {
		name string
		path *api.Path
	}{
		{name: "no next hop", path: &api.Path{Family: v4, Nlri: nlri, Pattrs: []*anypb.Any{origin}}},
		{name: "wrong family", path: &api.Path{
			Family: &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}, Nlri: nlri}},
		{name: "nlri of another type", path: &api.Path{Family: v4, Nlri: origin}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := parsePath(tc.path); err == nil {
				t.Errorf("parsePath() = %+v, want an error", got)
			}
		})
	}
}

func TestPeerFromAPI(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		peer *api.Peer
		want Peer
	}{
		{
			name: "established",
			peer: &api.Peer{
				Conf:   &api.PeerConf{NeighborAddress: "10.0.0.2"},
				State:  &api.PeerState{SessionState: api.PeerState_ESTABLISHED},
				Timers: &api.Timers{State: &api.TimersState{Uptime: timestamppb.New(now.Add(-90 * time.Second))}},
				AfiSafis: []*api.AfiSafi{
					{State: &api.AfiSafiState{Received: 3, Accepted: 2}},
					{State: &api.AfiSafiState{Received: 1, Accepted: 1}},
				},
			},
			want: Peer{Address: netip.MustParseAddr("10.0.0.2"), State: "established", Uptime: 90 * time.Second, Received: 4, Accepted: 3},
		},
		{
			name: "down keeps no uptime",
			peer: &api.Peer{
				Conf:   &api.PeerConf{NeighborAddress: "2001:db8::2"},
				State:  &api.PeerState{SessionState: api.PeerState_ACTIVE},
				Timers: &api.Timers{State: &api.TimersState{Uptime: timestamppb.New(now.Add(-time.Hour))}},
			},
			want: Peer{Address: netip.MustParseAddr("2001:db8::2"), State: "active"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := peerFromAPI(tc.peer, now)
			if err != nil {
				t.Fatalf("peerFromAPI() error = %v", err)
			}
			if diff := cmp.Diff(got, tc.want, addrComparer); diff != "" {
				t.Errorf("peerFromAPI() (-got +want):\n%s", diff)
			}
		})
	}
}
