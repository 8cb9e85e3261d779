package lab

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/traffic"
)

// netipEqual makes go-cmp compare netip values with ==.
var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// loadTopology is a hand-made topology with VIPs of every kind.
func loadTopology() *topology.Topology {
	a := netip.MustParseAddr
	return &topology.Topology{
		Name: "t",
		VIPs: []topology.VIP{
			{Name: "www", Address: a("198.51.100.1"), Port: 80, Protocol: "tcp"},
			{Name: "alt", Address: a("198.51.100.1"), Port: 8080, Protocol: "tcp"},
			{Name: "dns", Address: a("198.51.100.2"), Port: 53, Protocol: "udp"},
			{Name: "v6", Address: a("2001:db8::1"), Port: 80, Protocol: "tcp"},
		},
		Nodes: []topology.Node{
			{Name: "client1", Role: topology.RoleClient, Loopback: []netip.Addr{a("203.0.113.1"), a("203.0.113.2")}},
			{Name: "dual", Role: topology.RoleClient, Loopback: []netip.Addr{a("203.0.113.3"), a("2001:db8:1::3")}},
			{Name: "bare", Role: topology.RoleHost},
		},
	}
}

func TestLoadConfig(t *testing.T) {
	a := netip.MustParseAddr
	ap := netip.MustParseAddrPort
	www, alt, v6 := ap("198.51.100.1:80"), ap("198.51.100.1:8080"), ap("[2001:db8::1]:80")
	v4src := []netip.Addr{a("203.0.113.1"), a("203.0.113.2")}
	cases := []struct {
		name    string
		cfg     LoadConfig
		edit    func(*topology.Topology)
		want    traffic.Config
		wantErr string
	}{
		{
			name: "defaults: the node's loopback, every TCP VIP it can reach",
			cfg:  LoadConfig{From: "client1"},
			want: traffic.Config{Targets: []netip.AddrPort{www, alt}, Sources: v4src},
		},
		{
			name: "dual-stack node reaches the IPv6 VIP too",
			cfg:  LoadConfig{From: "dual"},
			want: traffic.Config{Targets: []netip.AddrPort{www, alt, v6}, Sources: []netip.Addr{a("203.0.113.3"), a("2001:db8:1::3")}},
		},
		{
			name: "no loopback: the kernel chooses, every TCP VIP",
			cfg:  LoadConfig{From: "bare"},
			want: traffic.Config{Targets: []netip.AddrPort{www, alt, v6}},
		},
		{
			name: "by name, in topology order, each once",
			cfg:  LoadConfig{From: "client1", VIPs: []string{"alt", "www", "alt"}},
			want: traffic.Config{Targets: []netip.AddrPort{www, alt}, Sources: v4src},
		},
		{
			name: "by address: every TCP VIP on it",
			cfg:  LoadConfig{From: "client1", VIPs: []string{"198.51.100.1"}},
			want: traffic.Config{Targets: []netip.AddrPort{www, alt}, Sources: v4src},
		},
		{
			name: "by address and port",
			cfg:  LoadConfig{From: "client1", VIPs: []string{"198.51.100.1:8080"}},
			want: traffic.Config{Targets: []netip.AddrPort{alt}, Sources: v4src},
		},
		{
			name: "given sources and tunables pass through",
			cfg: LoadConfig{
				From: "client1", VIPs: []string{"www"}, Sources: []netip.Addr{a("192.0.2.1")},
				Workers: 40, Path: "/1M", ReadSize: 4096, Pause: -1, ReadTimeout: 2 * time.Second,
				StallThreshold: 500 * time.Millisecond, ConnectTimeout: time.Second, EarlyStop: 0.2, Seed: 3,
			},
			want: traffic.Config{
				Targets: []netip.AddrPort{www}, Sources: []netip.Addr{a("192.0.2.1")},
				Workers: 40, Path: "/1M", ReadSize: 4096, Pause: -1, ReadTimeout: 2 * time.Second,
				StallThreshold: 500 * time.Millisecond, ConnectTimeout: time.Second, EarlyStop: 0.2, Seed: 3,
			},
		},
		{
			name: "no node: the first client",
			cfg:  LoadConfig{},
			want: traffic.Config{Targets: []netip.AddrPort{www, alt}, Sources: v4src},
		},
		{
			name:    "no node and no client",
			cfg:     LoadConfig{},
			edit:    func(t *topology.Topology) { t.Nodes = t.Nodes[2:] },
			wantErr: "no node to run the load from: the topology has no client",
		},
		{
			name:    "unknown node",
			cfg:     LoadConfig{From: "client9"},
			wantErr: "no node client9 in topology t",
		},
		{
			name:    "unknown VIPs are all named",
			cfg:     LoadConfig{From: "client1", VIPs: []string{"www", "nope", "198.51.100.9"}},
			wantErr: "no VIP \"nope\" in topology t (VIPs: www, alt, dns, v6)\nno VIP \"198.51.100.9\" in topology t (VIPs: www, alt, dns, v6)",
		},
		{
			name:    "wrong port",
			cfg:     LoadConfig{From: "client1", VIPs: []string{"198.51.100.1:443"}},
			wantErr: "no VIP \"198.51.100.1:443\"",
		},
		{
			name:    "UDP VIP",
			cfg:     LoadConfig{From: "client1", VIPs: []string{"dns"}},
			wantErr: "VIP dns (198.51.100.2 port 53) is udp: the load speaks TCP",
		},
		{
			name:    "VIP of a family without source",
			cfg:     LoadConfig{From: "client1", VIPs: []string{"v6"}},
			wantErr: "VIP v6 (2001:db8::1): no source address of its family",
		},
		{
			name: "given IPv6 sources reach the IPv6 VIP only",
			cfg:  LoadConfig{From: "client1", Sources: []netip.Addr{a("2001:db8:1::9")}},
			want: traffic.Config{Targets: []netip.AddrPort{v6}, Sources: []netip.Addr{a("2001:db8:1::9")}},
		},
		{
			name:    "no reachable VIP",
			cfg:     LoadConfig{From: "client1"},
			edit:    func(t *topology.Topology) { t.VIPs = t.VIPs[2:] },
			wantErr: "topology t has no TCP VIP that the sources can reach",
		},
		{
			name:    "no VIP at all",
			cfg:     LoadConfig{From: "client1", VIPs: []string{"www"}},
			edit:    func(t *topology.Topology) { t.VIPs = nil },
			wantErr: "no VIP \"www\" in topology t (VIPs: none)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo := loadTopology()
			if tc.edit != nil {
				tc.edit(topo)
			}
			got, err := loadConfig(topo, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("load config: %v", err)
			}
			if diff := cmp.Diff(got, tc.want, netipEqual, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("configuration (-got +want):\n%s", diff)
			}
		})
	}
}

// TestLoadConfigShared checks that the resolved sources do not share the
// topology's backing array, which a group's members share.
func TestLoadConfigShared(t *testing.T) {
	topo := loadTopology()
	got, err := loadConfig(topo, LoadConfig{From: "client1"})
	if err != nil {
		t.Fatal(err)
	}
	got.Sources[0] = netip.MustParseAddr("192.0.2.99")
	if n, _ := topo.Node("client1"); n.Loopback[0] != netip.MustParseAddr("203.0.113.1") {
		t.Errorf("the topology's loopback changed to %v", n.Loopback)
	}
}

func TestLoadConfigMinimal(t *testing.T) {
	topo, err := topology.Load(filepath.Join("..", "topologies", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(topo, LoadConfig{From: "client1"})
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	// Both families of www: the load mixes them, each from sources of its
	// own family.
	want := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:80"), netip.MustParseAddrPort("[2001:db8:100::1]:80")}
	if diff := cmp.Diff(got.Targets, want, netipEqual); diff != "" {
		t.Errorf("targets (-got +want):\n%s", diff)
	}
	if len(got.Sources) != 100 || got.Sources[0] != netip.MustParseAddr("203.0.113.1") || got.Sources[49] != netip.MustParseAddr("203.0.113.50") ||
		got.Sources[50] != netip.MustParseAddr("2001:db8:ff::1") || got.Sources[99] != netip.MustParseAddr("2001:db8:ff::32") {
		t.Errorf("sources %v, want 203.0.113.1 to 203.0.113.50 and 2001:db8:ff::1 to 2001:db8:ff::32", got.Sources)
	}
	// One family by its label.
	got, err = loadConfig(topo, LoadConfig{From: "client1", VIPs: []string{"www/v6"}})
	if err != nil {
		t.Fatalf("load config of www/v6: %v", err)
	}
	if diff := cmp.Diff(got.Targets, want[1:], netipEqual); diff != "" {
		t.Errorf("targets of www/v6 (-got +want):\n%s", diff)
	}
}

func TestLoadConfigWithDefaults(t *testing.T) {
	got := LoadConfig{From: "c", Workers: 3, Pause: -1}.WithDefaults()
	want := LoadConfig{
		Mode: LoadDownloads, From: "c", Workers: 3, Path: traffic.DefaultPath, ReadSize: traffic.DefaultReadSize, Pause: -1,
		EarlyStop: traffic.DefaultEarlyStop, ReadTimeout: traffic.DefaultReadTimeout,
		StallThreshold: traffic.DefaultStallThreshold, ConnectTimeout: traffic.DefaultConnectTimeout,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("configuration (-got +want):\n%s", diff)
	}
	// A request load: 10 workers, 100 requests a second in all, a short
	// path; the rate goes to the engine per worker.
	got = LoadConfig{Mode: LoadRequests}.WithDefaults()
	if got.Workers != 10 || got.Rate != 100 || got.Path != "/" {
		t.Errorf("request load defaults: %d workers, rate %g, path %q; want 10, 100, /", got.Workers, got.Rate, got.Path)
	}
	tc := LoadConfig{Mode: LoadRequests, Rate: 50, Workers: 5, KeepAlive: true}.traffic(traffic.Config{})
	if tc.Mode != traffic.ModeRequests || tc.Rate != 10 || !tc.KeepAlive || tc.Workers != 5 {
		t.Errorf("engine configuration %+v: want requests, 10 a second per worker, keep-alive, 5 workers", tc)
	}
}

// fakeSupervisor answers the load routes of the control API with canned
// answers and records the requests.
type fakeSupervisor struct {
	mu       sync.Mutex
	requests []string
	bodies   []string
	stopped  bool // the load was stopped and forgotten
}

func (f *fakeSupervisor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	f.bodies = append(f.bodies, string(b))
	stopped := f.stopped
	f.stopped = f.stopped || r.URL.Path == "/v1/nodes/client1/load/4/stop"
	f.mu.Unlock()
	switch route := r.Method + " " + r.URL.Path; {
	case stopped && strings.HasPrefix(route, "POST /v1/nodes/client1/load/4"):
		http.Error(w, "no load \"4\"", http.StatusNotFound)
	case route == "POST /v1/nodes/client1/load":
		_, _ = io.WriteString(w, `{"id":"4"}`)
	case route == "GET /v1/nodes/client1/load/4":
		_, _ = io.WriteString(w, `{"elapsed_ns":2000000000,"started":5,"active":2,"ok":3,"seconds":[{"started":5,"ok":3}]}`)
	case route == "POST /v1/nodes/client1/load/4/stop":
		_, _ = io.WriteString(w, `{"total":3,"ok":3,"by_outcome":{"ok":3}}`)
	default:
		http.Error(w, "no load \"4\"", http.StatusNotFound)
	}
}

// TestLoadClient runs StartLoad, Progress and Stop against a fake
// supervisor on a unix socket: the requests, their bodies and the decoded
// answers.
func TestLoadClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fake := &fakeSupervisor{}
	srv := &http.Server{Handler: fake}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	ep := control.Endpoint("unix://" + sock)
	c, err := control.NewClient(ep, "secret")
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{Info: Info{Name: "t", Endpoint: string(ep), Token: "secret", Topology: filepath.Join("..", "topologies", "minimal.yaml")}, client: c}
	t.Cleanup(l.Close)
	ctx := context.Background()

	ld, err := l.StartLoad(ctx, LoadConfig{From: "client1", Workers: 7})
	if err != nil {
		t.Fatalf("start load: %v", err)
	}
	if ld.ID != "4" || ld.Node != "client1" || len(ld.Targets) != 2 || len(ld.Sources) != 100 {
		t.Errorf("load %s on %s with %d targets and %d sources, want 4 on client1 with 2 (www in each family) and 100",
			ld.ID, ld.Node, len(ld.Targets), len(ld.Sources))
	}
	p, err := ld.Progress(ctx)
	if err != nil {
		t.Fatalf("progress: %v", err)
	}
	wantP := &LoadProgress{Elapsed: 2 * time.Second, Started: 5, Active: 2, OK: 3, Seconds: []LoadSecond{{Started: 5, OK: 3}}}
	if diff := cmp.Diff(p, wantP); diff != "" {
		t.Errorf("progress (-got +want):\n%s", diff)
	}
	rep, err := ld.Stop(ctx)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if rep.Total != 3 || rep.ByOutcome[OutcomeOK] != 3 {
		t.Errorf("report %+v, want 3 connections ok", rep)
	}
	_, err = ld.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), `stop load 4 on client1: no load "4"`) {
		t.Errorf("second stop: error %v, want the agent's 404 message", err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	wantReqs := []string{
		"POST /v1/nodes/client1/load Bearer secret",
		"GET /v1/nodes/client1/load/4 Bearer secret",
		"POST /v1/nodes/client1/load/4/stop Bearer secret",
		"POST /v1/nodes/client1/load/4/stop Bearer secret",
	}
	if diff := cmp.Diff(fake.requests, wantReqs); diff != "" {
		t.Errorf("requests (-got +want):\n%s", diff)
	}
	var req node.LoadRequest
	if err := json.Unmarshal([]byte(fake.bodies[0]), &req); err != nil {
		t.Fatalf("decode start request %s: %v", fake.bodies[0], err)
	}
	if req.Workers != 7 || len(req.Targets) != 2 || len(req.Sources) != 100 || req.Lease != loadLease.String() {
		t.Errorf("start request %s: want 7 workers, 2 targets, 100 sources and a lease of %s", fake.bodies[0], loadLease)
	}
}

func TestInjections(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	evs := []Event{
		{Time: at(1), Node: "lb4-1", Kind: EventInject, Msg: "kill: every process of the node killed, links up"},
		{Time: at(5), Node: "lb7-1", Kind: EventInject, Msg: "freeze: processes stopped, every packet to and from the node dropped"},
		{Time: at(6), Node: "r1", Kind: EventRoute, Msg: "198.51.100.1/32 via 10.0.0.1"},
		{Time: at(7), Node: "lb4-2", Kind: EventInject, Msg: "link r1 down"},
		{Time: at(9), Node: "lb7-1", Kind: EventInject, Msg: "revive: processes continued, packets flow again"},
		{Time: at(12), Node: "lb7-2", Kind: EventInject, Msg: "kill: every process of the node killed, links up"},
	}
	got := injections(evs, at(2), at(12))
	want := []Injection{
		{Label: "freeze lb7-1", At: at(5)},
		{Label: "link lb4-2 r1 down", At: at(7)},
		{Label: "revive lb7-1", At: at(9)},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("injections (-got +want):\n%s", diff)
	}
}

// TestScenarioRequestLoad checks that a scenario's request load reaches
// the public Scenario and back, as StartLoad gets it.
func TestScenarioRequestLoad(t *testing.T) {
	s, err := LoadScenario("../internal/scenario/testdata/example-requests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Load.Mode != LoadRequests || s.Load.Rate != 100 || s.Load.Workers != 10 {
		t.Errorf("load %+v, want requests at 100 a second over 10 workers", s.Load)
	}
	s.Load.KeepAlive = true
	if raw := s.scenario().Load; raw.Mode != "requests" || raw.Rate != 100 || !raw.KeepAlive {
		t.Errorf("scenario load %+v, want requests at 100 a second, keep-alive", raw)
	}
}
