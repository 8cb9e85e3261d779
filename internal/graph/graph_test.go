package graph

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/health"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/topology"
)

func load(t *testing.T, name string) *topology.Topology {
	t.Helper()
	top, err := topology.Load(filepath.Join("..", "..", "topologies", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// TestGolden checks the DOT and Mermaid of the shipped topologies, drawn
// from the file alone (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden, topology string
		addresses, vips  bool
	}{
		{"minimal", "minimal", false, false},
		{"reference", "reference", false, false},
		{"minimal-addresses-vips", "minimal", true, true},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			g := Build(load(t, tc.topology), nil)
			g.ShowAddresses, g.ShowVIPs = tc.addresses, tc.vips
			testenv.Golden(t, filepath.Join("testdata", tc.golden+".dot"), []byte(g.DOT()))
			testenv.Golden(t, filepath.Join("testdata", tc.golden+".mmd"), []byte(g.Mermaid()))
		})
	}
}

// TestBuildReference checks the model of the reference lab: every node in
// its tier, and every node on the segments it is on.
func TestBuildReference(t *testing.T) {
	g := Build(load(t, "reference"), nil)
	if len(g.Nodes) != 37 || len(g.Segments) != 4 || g.Live {
		t.Fatalf("%d nodes, %d segments, live %v: want 37, 4, false", len(g.Nodes), len(g.Segments), g.Live)
	}
	ranks := map[string]int{}
	for _, n := range g.Nodes {
		ranks[n.Name] = n.Rank
		if n.State != "" {
			t.Errorf("%s has state %q without a status", n.Name, n.State)
		}
	}
	for name, want := range map[string]int{"users": RankClients, "dns": RankClients, "internet": RankHosts,
		"r1": RankRouters, "rr2": RankRouters, "lb4-7": RankLB4, "lb7-13": RankLB7, "server-10": RankServers} {
		if ranks[name] != want {
			t.Errorf("%s has rank %d, want %d", name, ranks[name], want)
		}
	}
	var infra []Edge
	for _, e := range g.Edges {
		if e.Kind != EdgeSegment {
			t.Errorf("edge %+v from a topology alone: want segment edges only", e)
		}
		if e.From == "infra" || e.To == "infra" {
			infra = append(infra, e)
		}
	}
	// Routers and reflectors above the segment, LB4s and LB7s below.
	if len(infra) != 24 || !cmp.Equal(infra[0], Edge{From: "r1", To: "infra", Kind: EdgeSegment}) ||
		!cmp.Equal(infra[4], Edge{From: "infra", To: "lb4-1", Kind: EdgeSegment}) {
		t.Errorf("infra edges: %+v", infra)
	}
	if want := []string{"mh-1", "mh-2", "sh-1", "sh-2", "wlc-1"}; !slices.Equal(g.Nodes[7].Announces, want) {
		t.Errorf("%s announces %v, want %v", g.Nodes[7].Name, g.Nodes[7].Announces, want)
	}
}

// tierJSON is v as an agent's tier status.
func tierJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNodeState(t *testing.T) {
	running := func(ready bool, waiting string, tier json.RawMessage) control.AgentStatus {
		return control.AgentStatus{State: "running", Ready: ready, Waiting: waiting, Tier: tier}
	}
	announced := tierJSON(t, node.LB4Status{Announced: true})
	enabler := func(op, admin string) json.RawMessage {
		return tierJSON(t, node.LB7Status{Enabler: []haproxy.ServerState{{Name: haproxy.EnablerServer, Operational: op, Admin: admin, Status: op}}})
	}
	for _, tc := range []struct {
		name    string
		role    topology.Role
		agent   control.AgentStatus
		want    State
		wantWhy string
	}{
		{"ready router", topology.RoleRouter, running(true, "", nil), StateReady, ""},
		{"waiting router", topology.RoleRouter, running(false, "198.51.100.1/32 has 1 of 2 next hops", nil), StateWaiting, "198.51.100.1/32 has 1 of 2 next hops"},
		{"killed", topology.RoleServer, control.AgentStatus{State: "killed"}, StateKilled, ""},
		{"frozen", topology.RoleLB7, control.AgentStatus{State: "frozen"}, StateFrozen, ""},
		{"slow", topology.RoleRouter, control.AgentStatus{State: "slow", Error: "no answer in 10s"}, StateSlow, "no answer in 10s"},
		{"exited", topology.RoleRR, control.AgentStatus{State: "exited", Error: "exit status 2"}, StateExited, "exit status 2"},
		{"unreachable", topology.RoleClient, control.AgentStatus{State: "unreachable"}, StateUnreachable, ""},
		{"odd agent state", topology.RoleClient, control.AgentStatus{State: "starting"}, StateUnknown, "agent starting"},
		{"ready LB4", topology.RoleLB4, running(true, "", announced), StateReady, ""},
		{"LB4 in maintenance", topology.RoleLB4, running(true, "", tierJSON(t, node.LB4Status{Disabled: true})), StateMaintenance, "/etc/lb/disable"},
		{"LB4 withdrawn", topology.RoleLB4, running(false, "VIPs not announced", tierJSON(t, node.LB4Status{})), StateWithdrawn, "VIPs not announced"},
		{"LB4 announcing, an LB7 not healthy yet", topology.RoleLB4, running(false, "lb7-2 not healthy yet", announced), StateWaiting, "lb7-2 not healthy yet"},
		{"killed LB4 whose tier said announced", topology.RoleLB4, control.AgentStatus{State: "killed", Tier: announced}, StateKilled, ""},
		{"LB4 without tier status", topology.RoleLB4, running(false, "starting", nil), StateWaiting, "starting"},
		{"ready LB7", topology.RoleLB7, running(true, "", enabler("UP", "READY")), StateReady, ""},
		{"LB7 agent-check down", topology.RoleLB7, running(false, "/healthcheck answers 503", enabler("DOWN", "READY")), StateMaintenance, "agent-check DOWN"},
		{"LB7 agent-check maint", topology.RoleLB7, running(false, "/healthcheck answers 503", enabler("UP", "MAINT")), StateMaintenance, "agent-check UP"},
		{"LB7 waiting for its backends", topology.RoleLB7, running(false, "/healthcheck answers 503", enabler("UP", "READY")), StateWaiting, "/healthcheck answers 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := nodeState(tc.role, tc.agent)
			if got != tc.want || why != tc.wantWhy {
				t.Errorf("nodeState = %q, %q; want %q, %q", got, why, tc.want, tc.wantWhy)
			}
		})
	}
}

// liveMinimal is the status of the minimal lab with lb4-2 in maintenance,
// lb7-2's agent-check down, server-1 killed and server-2 frozen; r1 sends
// www over both LB4s in IPv4 and over lb4-1 alone in IPv6.
func liveMinimal(t *testing.T, top *topology.Topology) *control.Status {
	t.Helper()
	addr := func(node, seg string, f topology.Family) netip.Addr {
		t.Helper()
		n, _ := top.Node(node)
		for _, i := range n.Interfaces {
			if i.Segment == seg {
				if p, ok := i.Address(f); ok {
					return p.Addr()
				}
			}
		}
		t.Fatalf("%s has no %v address on %s", node, f, seg)
		return netip.Addr{}
	}
	ready := control.AgentStatus{State: "running", Ready: true}
	withTier := func(a control.AgentStatus, v any) control.AgentStatus {
		a.Tier = tierJSON(t, v)
		return a
	}
	router := node.RouterStatus{Routes: map[string][]netip.Addr{
		"198.51.100.1/32":     {addr("lb4-1", "infra", topology.IPv4), addr("lb4-2", "infra", topology.IPv4)},
		"2001:db8:100::1/128": {addr("lb4-1", "infra", topology.IPv6)},
	}}
	lb4 := node.LB4Status{Announced: true, Health: []health.State{{Name: "lb7-1", Healthy: true}, {Name: "lb7-2", Healthy: false}}}
	lb7 := func(op string) node.LB7Status {
		return node.LB7Status{Enabler: []haproxy.ServerState{{Name: haproxy.EnablerServer, Operational: op, Admin: "READY", Status: op}}}
	}
	notReady := ready
	notReady.Ready, notReady.Waiting = false, "/healthcheck answers 503"
	return &control.Status{Name: "minimal", Nodes: []control.NodeStatus{
		{Name: "client1", Role: "client", Agent: ready},
		{Name: "r1", Role: "router", Agent: withTier(ready, router)},
		{Name: "lb4-1", Role: "lb4", Agent: withTier(ready, lb4)},
		{Name: "lb4-2", Role: "lb4", Agent: withTier(ready, node.LB4Status{Announced: true, Disabled: true, Health: lb4.Health})},
		{Name: "lb7-1", Role: "lb7", Agent: withTier(ready, lb7("UP"))},
		{Name: "lb7-2", Role: "lb7", Agent: withTier(notReady, lb7("DOWN"))},
		{Name: "server-1", Role: "server", Agent: control.AgentStatus{State: "killed"}},
		{Name: "server-2", Role: "server", Agent: control.AgentStatus{State: "frozen"}},
	}}
}

// TestBuildLive checks a graph built with a hand-made status: each node's
// state and colour, the ECMP edges from the router's routes, and the LB4s'
// healthy LB7s.
func TestBuildLive(t *testing.T) {
	top := load(t, "minimal")
	g := Build(top, liveMinimal(t, top))
	if !g.Live {
		t.Fatal("not live")
	}
	states := map[string]State{}
	colours := map[string]string{}
	for i := range g.Nodes {
		states[g.Nodes[i].Name] = g.Nodes[i].State
		colours[g.Nodes[i].Name] = g.fill(&g.Nodes[i])
	}
	wantStates := map[string]State{"client1": StateReady, "r1": StateReady, "lb4-1": StateReady, "lb4-2": StateMaintenance,
		"lb7-1": StateReady, "lb7-2": StateMaintenance, "server-1": StateKilled, "server-2": StateFrozen}
	if diff := cmp.Diff(wantStates, states); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	for name, s := range wantStates {
		if colours[name] != StateColor(s) {
			t.Errorf("%s is %s, coloured %s: want %s", name, s, colours[name], StateColor(s))
		}
	}
	// Every state its own colour, but for the two that mean the agent is gone.
	seen := map[string]State{}
	for _, s := range []State{StateReady, StateWaiting, StateSlow, StateMaintenance, StateWithdrawn, StateKilled, StateFrozen, StateExited} {
		if o, ok := seen[StateColor(s)]; ok {
			t.Errorf("%s and %s share colour %s", s, o, StateColor(s))
		}
		seen[StateColor(s)] = s
	}
	var live []Edge
	for _, e := range g.Edges {
		if e.Kind == EdgeECMP || e.Kind == EdgeHealthy {
			live = append(live, e)
		}
	}
	want := []Edge{
		{From: "r1", To: "lb4-1", Kind: EdgeECMP, VIPs: []string{"www"}},
		{From: "r1", To: "lb4-2", Kind: EdgeECMP, VIPs: []string{"www/v4"}},
		{From: "lb4-1", To: "lb7-1", Kind: EdgeHealthy},
		{From: "lb4-2", To: "lb7-1", Kind: EdgeHealthy},
	}
	if diff := cmp.Diff(want, live); diff != "" {
		t.Errorf("live edges (-want +got):\n%s", diff)
	}
	if !slices.Equal(g.Nodes[2].Announces, []string{"www"}) || g.Nodes[3].Announces != nil {
		t.Errorf("lb4-1 announces %v, lb4-2 %v: want [www] and none", g.Nodes[2].Announces, g.Nodes[3].Announces)
	}
	if got := g.states(); !slices.Equal(got, []State{StateReady, StateMaintenance, StateKilled, StateFrozen}) {
		t.Errorf("legend states %v", got)
	}
	g.ShowVIPs = true
	testenv.Golden(t, filepath.Join("testdata", "minimal-live.dot"), []byte(g.DOT()))
	testenv.Golden(t, filepath.Join("testdata", "minimal-live.mmd"), []byte(g.Mermaid()))
}

// TestBuildMissingNode checks that a node of the topology that the status
// lacks is drawn, in state unknown.
func TestBuildMissingNode(t *testing.T) {
	top := load(t, "minimal")
	st := liveMinimal(t, top)
	st.Nodes = st.Nodes[:1]
	g := Build(top, st)
	if g.Nodes[1].State != StateUnknown || g.Nodes[1].Why == "" {
		t.Errorf("r1, not in the status: state %q (%q), want unknown", g.Nodes[1].State, g.Nodes[1].Why)
	}
	for _, e := range g.Edges {
		if e.Kind != EdgeSegment {
			t.Errorf("edge %+v without the status of r1 and the LB4s", e)
		}
	}
}

func TestVIPOrder(t *testing.T) {
	top := load(t, "reference")
	for _, tc := range []struct{ in, want []string }{
		{[]string{"sh-1/v6", "mh-1/v4", "mh-1/v6"}, []string{"mh-1", "sh-1/v6"}},
		{[]string{"wlc-1/v4"}, []string{"wlc-1/v4"}},
		{nil, nil},
	} {
		if got := vipOrder(top, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("vipOrder(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
