package fabric

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/topology"
)

// TestPlanGolden checks the kernel objects planned for the shipped
// topologies against testdata/*.plan.
func TestPlanGolden(t *testing.T) {
	for _, name := range []string{"minimal", "reference", "services"} {
		t.Run(name, func(t *testing.T) {
			topo, err := topology.Load(filepath.Join("..", "..", "topologies", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			got := NewPlan(topo, name).String()
			testenv.Golden(t, filepath.Join("testdata", name+".plan"), []byte(got))
		})
	}
}

// TestPlanShape checks properties every plan must have, whatever the
// topology: no interface created in the host's namespace, one namespace per
// node plus the bridges', names within the kernel's 15-character limit,
// and unique interface names per namespace.
func TestPlanShape(t *testing.T) {
	topo, err := topology.Load(filepath.Join("..", "..", "topologies", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlan(topo, "reference")
	if got, want := len(p.Namespaces), len(topo.Nodes)+1; got != want {
		t.Errorf("%d namespaces, want %d", got, want)
	}
	seen := map[string]bool{}
	for _, v := range p.Veths {
		for _, end := range [][2]string{{v.NS, v.Name}, {v.PeerNS, v.PeerName}} {
			if end[0] == "" {
				t.Errorf("veth %+v has an end in the host's namespace", v)
			}
			if len(end[1]) > 15 {
				t.Errorf("interface name %q longer than 15 characters", end[1])
			}
			key := end[0] + "/" + end[1]
			if seen[key] {
				t.Errorf("interface %s created twice", key)
			}
			seen[key] = true
		}
	}
	for _, r := range p.Routes {
		if len(r.Via) == 0 {
			t.Errorf("route %+v has no next hop", r)
		}
	}
}

// TestPortNamesUnique: bridge port names are hashes, so check the
// reference lab's are distinct.
func TestPortNamesUnique(t *testing.T) {
	top, err := topology.Load("../../topologies/reference.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, v := range NewPlan(top, "x").Veths {
		if v.Master == "" {
			continue
		}
		if other, ok := seen[v.PeerName]; ok {
			t.Errorf("port %s serves %s and %s", v.PeerName, other, v.Alias)
		}
		seen[v.PeerName] = v.Alias
	}
}

// TestDiff adds an LB7 and an LB4 to the minimal lab and removes them:
// only the new node's objects and the tunnels between them are built,
// and only those are torn down.
func TestDiff(t *testing.T) {
	top, err := topology.Load("../../topologies/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withLB7, err := top.WithNodeLike("lb7-3", "lb7-1")
	if err != nil {
		t.Fatal(err)
	}
	withBoth, err := withLB7.WithNodeLike("lb4-3", "lb4-1")
	if err != nil {
		t.Fatal(err)
	}
	p0, p1, p2 := NewPlan(top, "m"), NewPlan(withLB7, "m"), NewPlan(withBoth, "m")

	d := Diff(p0, p1)
	if want := []string{"lab-m.lb7-3"}; !slices.Equal(d.Namespaces, want) {
		t.Errorf("namespaces %v, want %v", d.Namespaces, want)
	}
	if len(d.Veths) != 2 || len(d.Tunnels) != 4 || len(d.Bridges) != 0 {
		t.Errorf("diff %d veths %d tunnels %d bridges, want 2 4 (one per LB4 and family) 0:\n%s", len(d.Veths), len(d.Tunnels), len(d.Bridges), d)
	}
	for _, x := range d.Addrs {
		if x.NS != "lab-m.lb7-3" {
			t.Errorf("address %v outside the new node", x)
		}
	}
	// The addresses whose old neighbour entries the others must forget.
	if got, want := fmt.Sprint(NewAddresses(d)), "[192.0.2.134 2001:db8:0:2::6 192.0.2.69]"; got != want {
		t.Errorf("new addresses %s, want %s", got, want)
	}
	if got := d.existing(); !slices.Equal(got, []string{"lab-m"}) {
		t.Errorf("existing namespaces %v, want the bridges' lab-m", got)
	}

	// A new LB4: every LB7 gets a tunnel of each family from it.
	d = Diff(p1, p2)
	var tunnelNS []string
	for _, tu := range d.Tunnels {
		if want := map[bool]string{false: "lb4-3", true: "6lb4-3"}[tu.Is6()]; tu.Name != want {
			t.Errorf("tunnel %+v, want it named %s", tu, want)
		}
		tunnelNS = append(tunnelNS, tu.NS)
	}
	if want := []string{"lab-m.lb7-1", "lab-m.lb7-1", "lab-m.lb7-2", "lab-m.lb7-2", "lab-m.lb7-3", "lab-m.lb7-3"}; !slices.Equal(tunnelNS, want) {
		t.Errorf("tunnels in %v, want %v", tunnelNS, want)
	}

	// Removing the LB4 again: its namespace, and the tunnels to it in the
	// LB7s that stay.
	ns, tunnels := Gone(p2, p1)
	if !slices.Equal(ns, []string{"lab-m.lb4-3"}) || len(tunnels) != 6 {
		t.Errorf("gone %v and %d tunnels, want lab-m.lb4-3 and 6", ns, len(tunnels))
	}
	if d := Diff(p2, p1); len(d.Namespaces)+len(d.Veths)+len(d.Tunnels)+len(d.Addrs)+len(d.Routes) != 0 {
		t.Errorf("removing builds something:\n%s", d)
	}
}

// TestTunnelName names IPv6 tunnels apart from IPIP ones and from every
// node name, within the 15 characters of an interface name.
func TestTunnelName(t *testing.T) {
	for _, tc := range []struct {
		lb4  string
		f    topology.Family
		want string
	}{
		{"lb4-1", topology.IPv4, "lb4-1"},
		{"lb4-1", topology.IPv6, "6lb4-1"},
		{"lb4-16", topology.IPv6, "6lb4-16"},
		{"loadbalancer-12", topology.IPv4, "loadbalancer-12"},
	} {
		if got := tunnelName(tc.lb4, tc.f); got != tc.want {
			t.Errorf("tunnelName(%q, %v) = %q, want %q", tc.lb4, tc.f, got, tc.want)
		}
	}
	a, b := tunnelName("loadbalancer-12", topology.IPv6), tunnelName("loadbalancer-13", topology.IPv6)
	if len(a) > maxIfName || len(b) > maxIfName || a == b || a[0] != '6' {
		t.Errorf("long names: %q and %q, want distinct names of at most %d characters starting with 6", a, b, maxIfName)
	}
}
