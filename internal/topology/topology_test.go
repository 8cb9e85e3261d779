package topology

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/testenv"
)

// TestGolden resolves the ready topologies and the valid inputs under
// testdata, and compares them with their resolved form.
func TestGolden(t *testing.T) {
	inputs := []string{"../../topologies/minimal.yaml", "../../topologies/reference.yaml"}
	more, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, more...)
	if len(inputs) < 5 {
		t.Fatalf("want at least 5 inputs, found %v", inputs)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			topo, err := Load(in)
			if err != nil {
				t.Fatalf("Load(%q):\n%v", in, err)
			}
			b, err := json.MarshalIndent(topo, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", name+".golden.json"), append(b, '\n'))
		})
	}
}

// TestShippedTopologies loads every topology under topologies/, golden or
// not: each must be valid.
func TestShippedTopologies(t *testing.T) {
	files, err := filepath.Glob("../../topologies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("want at least 4 topologies, found %v", files)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("Load(%q):\n%v", f, err)
			}
		})
	}
}

// TestInvalid parses every file under testdata/invalid and compares the
// error text with the .err file beside it.
func TestInvalid(t *testing.T) {
	inputs, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("want at least 20 invalid inputs, found %d", len(inputs))
	}
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".yaml"), func(t *testing.T) {
			topo, err := Load(in)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want an error", in, topo)
			}
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("Load(%q) error is %T %v, want a non-empty *Errors", in, err, err)
			}
			for _, e := range errs.List {
				if e.File != in || e.Line < 1 {
					t.Errorf("problem %q: want file %q and a line", e.Error(), in)
				}
			}
			testenv.Golden(t, strings.TrimSuffix(in, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) error = %v, want os.ErrNotExist", err)
	}
}

// TestMergeKeepsLines checks that a problem in a merged value points at the
// line where the user wrote it, under the path where it was written.
func TestMergeKeepsLines(t *testing.T) {
	const base = `name: merge
segments:
  infra: {prefix: 192.0.2.0/24}
nodes:
  r1:
    role: router
    links: [infra]
`
	cases := []struct {
		name  string
		extra string
		want  Error
	}{
		{
			name:  "topology role",
			extra: "roles:\n  router:\n    bgp:\n      hold-time: soon\n",
			want:  Error{File: "merge.yaml", Line: 11, Field: "roles.router.bgp.hold-time", Msg: `"soon" is not a duration (want e.g. 3s)`},
		},
		{
			name:  "topology defaults",
			extra: "defaults:\n  health:\n    rise: -1\n",
			want:  Error{File: "merge.yaml", Line: 10, Field: "defaults.health.rise", Msg: "-1 must be positive"},
		},
		{
			name:  "role for no node",
			extra: "roles:\n  lb7:\n    haproxy: {maxconn: lots}\n",
			want:  Error{File: "merge.yaml", Line: 10, Field: "roles.lb7.haproxy.maxconn", Msg: `"lots" is not a whole number`},
		},
		{
			name:  "keepalive against hold time of another level",
			extra: "roles:\n  router:\n    bgp:\n      keepalive: 5s\n",
			want:  Error{File: "merge.yaml", Line: 11, Field: "roles.router.bgp.keepalive", Msg: "keepalive 5s must be shorter than hold-time 3s"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("merge.yaml", []byte(base+tc.extra))
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v, want *Errors", err)
			}
			if diff := cmp.Diff(errs.List, []Error{tc.want}); diff != "" {
				t.Errorf("problems (-got +want):\n%s", diff)
			}
		})
	}
}

// keepAddr is the sysctl the shipped defaults set on every node.
const keepAddr = "net.ipv6.conf.all.keep_addr_on_down"

// TestSettingsLevels checks the order of the settings levels.
func TestSettingsLevels(t *testing.T) {
	const src = `name: levels
segments:
  infra: {prefix: 192.0.2.0/24}
defaults:
  sysctls: {net.core.somaxconn: "1024", net.ipv4.ip_forward: "0"}
  bgp: {hold-time: 9s}
  bfd: {interval: 50ms}
roles:
  router:
    bgp: {hold-time: 6s, keepalive: 2s}
nodes:
  r1:
    role: router
    links: [infra]
    bgp: {keepalive: 1500ms}
    bfd: {enabled: false}
  h1:
    role: host
    links: [infra]
    bfd: {enabled: false}
`
	topo, err := Parse("levels.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		node string
		want Settings
	}{
		{
			node: "r1",
			want: Settings{
				Sysctls: map[string]string{
					"net.core.somaxconn":                 "1024",
					"net.ipv4.ip_forward":                "0", // the topology's defaults beat the shipped role
					"net.ipv4.fib_multipath_hash_policy": "1",
					"net.ipv4.fib_multipath_use_neigh":   "1",
					"net.ipv6.conf.all.forwarding":       "1",
					"net.ipv6.fib_multipath_hash_policy": "1",
				},
				BGP: BGPTimers{HoldTime: 6 * time.Second, Keepalive: 1500 * time.Millisecond, ConnectRetry: time.Second},
			},
		},
		{
			node: "h1",
			want: Settings{
				Sysctls: map[string]string{"net.core.somaxconn": "1024", "net.ipv4.ip_forward": "0"},
				BGP:     BGPTimers{HoldTime: 9 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.node, func(t *testing.T) {
			n, ok := topo.Node(tc.node)
			if !ok {
				t.Fatalf("no node %s", tc.node)
			}
			got := n.Settings
			got.Health, got.HAProxy = Health{}, HAProxy{}
			if want := (BFD{Enabled: false, Interval: 50 * time.Millisecond, Multiplier: 3, Echo: 100 * time.Millisecond}); got.BFD != want {
				t.Errorf("bfd %+v, want %+v", got.BFD, want)
			}
			got.BFD = BFD{}
			if got.Sysctls[keepAddr] != "1" {
				t.Errorf("sysctl %s = %q, want the shipped default 1", keepAddr, got.Sysctls[keepAddr])
			}
			delete(got.Sysctls, keepAddr)
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("settings (-got +want):\n%s", diff)
			}
		})
	}
}

// TestShippedDefaults checks the values of configs/defaults.yaml that the
// brief fixes.
func TestShippedDefaults(t *testing.T) {
	topo, err := Load("../../topologies/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		role Role
		want Settings
	}{
		{RoleRouter, Settings{Sysctls: map[string]string{
			"net.ipv4.ip_forward":                "1",
			"net.ipv4.fib_multipath_hash_policy": "1",
			"net.ipv4.fib_multipath_use_neigh":   "1",
			"net.ipv6.conf.all.forwarding":       "1",
			"net.ipv6.fib_multipath_hash_policy": "1",
		}}},
		{RoleLB4, Settings{Sysctls: map[string]string{
			"net.ipv4.vs.sloppy_tcp":                "1",
			"net.ipv4.vs.schedule_icmp":             "1",
			"net.ipv4.vs.pmtu_disc":                 "0",
			"net.ipv4.vs.expire_nodest_conn":        "0",
			"net.ipv4.vs.expire_quiescent_template": "0",
		}}},
		{RoleLB7, Settings{Sysctls: map[string]string{
			"net.ipv4.conf.all.rp_filter":     "0",
			"net.ipv4.conf.default.rp_filter": "0",
			"net.ipv4.conf.all.arp_ignore":    "1",
			"net.ipv4.conf.all.arp_announce":  "2",
		}}},
		{RoleServer, Settings{Sysctls: map[string]string{}}},
	}
	common := Settings{
		BGP:    BGPTimers{HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second},
		Health: Health{Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2},
		HAProxy: HAProxy{
			Maxconn: 4096, TimeoutConnect: 2 * time.Second, TimeoutClient: time.Minute, TimeoutServer: time.Minute,
			CheckInterval: time.Second, Rise: 2, Fall: 2, AgentPort: 5555, AgentInterval: 500 * time.Millisecond,
		},
		BFD: BFD{Enabled: true, Interval: 200 * time.Millisecond, Multiplier: 3, Echo: 100 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(string(tc.role), func(t *testing.T) {
			nodes := topo.NodesByRole(tc.role)
			if len(nodes) == 0 {
				t.Fatalf("no %s node in minimal", tc.role)
			}
			want := common
			want.Sysctls = tc.want.Sysctls
			want.Sysctls[keepAddr] = "1"
			if diff := cmp.Diff(nodes[0].Settings, want); diff != "" {
				t.Errorf("settings (-got +want):\n%s", diff)
			}
		})
	}
}

// TestDNSRoleDefaults checks the shipped health checks of dns nodes: a
// failed VIP leaves the answers within fall x interval + timeout (2.5s).
func TestDNSRoleDefaults(t *testing.T) {
	const src = "name: d\nsegments:\n  s: {prefix: 192.0.2.0/24}\nnodes:\n  ns1: {role: dns, links: [s]}\n"
	topo, err := Parse("d.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	n, ok := topo.Node("ns1")
	if !ok || n.Role != RoleDNS {
		t.Fatalf("Node(ns1) = %+v, %v; want a dns node", n, ok)
	}
	want := Health{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	if n.Settings.Health != want {
		t.Errorf("health %+v, want %+v", n.Settings.Health, want)
	}
	if got := n.Settings.Sysctls["net.ipv4.ip_forward"]; got != "" {
		t.Errorf("a dns node forwards (ip_forward %q), want it not to, like a host", got)
	}
}

func TestNodeLookup(t *testing.T) {
	topo, err := Load("../../topologies/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Nodes) != 37 {
		t.Errorf("reference has %d nodes, want 37", len(topo.Nodes))
	}
	cases := []struct {
		name  string
		role  Role
		group string
		addr  string
	}{
		{"users", RoleClient, "", ""},
		{"r2", RoleRouter, "", "192.0.2.131/25"},
		{"rr1", RoleRR, "", "192.0.2.253/25"},
		{"lb4-1", RoleLB4, "lb4", "192.0.2.132/25"},
		{"lb4-7", RoleLB4, "lb4", "192.0.2.138/25"},
		{"lb7-1", RoleLB7, "lb7", "192.0.2.139/25"},
		{"lb7-13", RoleLB7, "lb7", "192.0.2.151/25"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := topo.Node(tc.name)
			if !ok {
				t.Fatalf("Node(%q) not found", tc.name)
			}
			if n.Role != tc.role || n.Group != tc.group {
				t.Errorf("Node(%q) role %q group %q, want %q %q", tc.name, n.Role, n.Group, tc.role, tc.group)
			}
			if tc.addr == "" {
				return
			}
			var got netip.Prefix
			for _, i := range n.Interfaces {
				if i.Segment == "infra" {
					got, _ = i.Address(IPv4)
				}
			}
			if got.String() != tc.addr {
				t.Errorf("Node(%q) infra address %s, want %s", tc.name, got, tc.addr)
			}
		})
	}
	if _, ok := topo.Node("lb7-14"); ok {
		t.Error("Node(lb7-14) found, want none")
	}
	counts := map[Role]int{RoleClient: 1, RoleHost: 1, RoleDNS: 1, RoleRouter: 2, RoleRR: 2, RoleLB4: 7, RoleLB7: 13, RoleServer: 10}
	for role, want := range counts {
		if got := len(topo.NodesByRole(role)); got != want {
			t.Errorf("NodesByRole(%s) has %d nodes, want %d", role, got, want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "a.yaml", Line: 3, Field: "nodes.r1", Msg: "bad"}, "a.yaml:3: nodes.r1: bad"},
		{"no field", Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{"no line", Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVIPServers checks when VIPs without an LB4 or an LB7 are refused.
func TestVIPServers(t *testing.T) {
	const head = "name: serve\nsegments:\n  infra: {prefix: 192.0.2.0/24}\n"
	cases := []struct {
		name  string
		nodes string
		vips  string
		want  []Error
	}{
		{name: "both", nodes: "  a: {role: lb4}\n  b: {role: lb7}\n", vips: "vips: [{address: 198.51.100.1}]\n"},
		{name: "no VIPs", nodes: "  a: {role: router}\n"},
		{name: "empty VIPs", nodes: "  a: {role: router}\n", vips: "vips: []\n"},
		{
			name:  "no LB4",
			nodes: "  b: {role: lb7, count: 2}\n",
			vips:  "vips: [{address: 198.51.100.1}]\n",
			want:  []Error{{File: "serve.yaml", Line: 6, Field: "vips", Msg: "1 VIP but no lb4 node to serve it (add a node with role lb4)"}},
		},
		{
			name:  "neither",
			nodes: "  a: {role: router}\n",
			vips:  "vips: [{address: 198.51.100.1}, {address: 198.51.100.2}]\n",
			want:  []Error{{File: "serve.yaml", Line: 6, Field: "vips", Msg: "2 VIPs but no lb4 and no lb7 node to serve them (add nodes with roles lb4 and lb7)"}},
		},
		{
			// The unknown role may be the missing LB7: its problem is enough.
			name:  "unknown role",
			nodes: "  a: {role: lb4}\n  b: {role: lb8}\n",
			vips:  "vips: [{address: 198.51.100.1}]\n",
			want:  []Error{{File: "serve.yaml", Line: 6, Field: "nodes.b.role", Msg: `unknown role "lb8" (want client, host, router, rr, lb4, lb7, server or dns)`}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("serve.yaml", []byte(head+"nodes:\n"+tc.nodes+tc.vips))
			var got []Error
			var errs *Errors
			if errors.As(err, &errs) {
				got = errs.List
			} else if err != nil {
				t.Fatalf("Parse error = %v, want *Errors", err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("problems (-got +want):\n%s", diff)
			}
		})
	}
}

// TestVIPNames labels the VIPs of a dual-stack name apart and finds VIPs by
// name, label and address.
func TestVIPNames(t *testing.T) {
	topo, err := Load("testdata/dualstack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, v := range topo.VIPs {
		labels = append(labels, topo.VIPLabel(v))
	}
	if diff := cmp.Diff(labels, []string{"www/v4", "www/v6", "v6only"}); diff != "" {
		t.Errorf("labels (-got +want):\n%s", diff)
	}
	for s, want := range map[string][]int{
		"www": {0, 1}, "www/v6": {1}, "v6only": {2}, "2001:db8:100::2": {2},
		"[2001:db8:100::1]:80": {1}, "198.51.100.1:81": nil, "www/v5": nil,
	} {
		if got := topo.VIPsNamed(s); !cmp.Equal(got, want) {
			t.Errorf("VIPsNamed(%q) = %v, want %v", s, got, want)
		}
	}
}
