package topology

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var netipEqual = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestWithNodeLike(t *testing.T) {
	top, err := Load("../../topologies/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nt, err := top.WithNodeLike("lb7-3", "lb7-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Nodes) == len(nt.Nodes) {
		t.Fatal("the original topology changed")
	}
	n := nt.Nodes[len(nt.Nodes)-1]
	var got []string
	for _, ifc := range n.Interfaces {
		got = append(got, ifc.Name+"="+fmt.Sprint(ifc.Addresses))
	}
	for _, ifc := range n.Interfaces {
		for _, other := range top.Nodes {
			for _, o := range other.Interfaces {
				for _, a := range ifc.Addresses {
					if slices.Contains(o.Addresses, a) {
						t.Errorf("%s takes %s's address %s", ifc.Name, other.Name, a)
					}
				}
			}
		}
	}
	model, _ := top.Node("lb7-1")
	if len(n.Interfaces) != len(model.Interfaces) || n.Role != RoleLB7 {
		t.Errorf("new node %+v, want the interfaces and role of %+v", n, model)
	}
	if diff := cmp.Diff(model.Routes, n.Routes, netipEqual...); diff != "" {
		t.Errorf("routes (-model +new):\n%s", diff)
	}
	lb7s := nt.NodesByRole(RoleLB7)
	if last := lb7s[len(lb7s)-1].Name; last != "lb7-3" {
		t.Errorf("last LB7 %s, want lb7-3 (LB4s keep their destination order)", last)
	}
	// minimal.yaml: r1, lb4-1, lb4-2, lb7-1, lb7-2 hold .129-.133 on infra;
	// lb7-1, lb7-2, server-1, server-2 hold .65-.68 on servers; on infra,
	// the same nodes hold 2001:db8:0:2::1-::5.
	if diff := cmp.Diff([]string{"infra=[192.0.2.134/25 2001:db8:0:2::6/64]", "servers=[192.0.2.69/27]"}, got); diff != "" {
		t.Errorf("lb7-3's interfaces (-want +got):\n%s", diff)
	}

	back, err := nt.Without("lb7-3")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(top, back, netipEqual...); diff != "" {
		t.Errorf("add then remove (-before +after):\n%s", diff)
	}

	// Saved and loaded back, the topology is the same.
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := nt.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(nt, loaded, netipEqual...); diff != "" {
		t.Errorf("saved and loaded (-saved +loaded):\n%s", diff)
	}
}

func TestChangeErrors(t *testing.T) {
	top, err := Load("../../topologies/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	one, err := top.Without("lb4-2")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"name taken", func() error { _, err := top.WithNodeLike("lb7-2", "lb7-1"); return err }, "node lb7-2 already exists"},
		{"segment name", func() error { _, err := top.WithNodeLike("infra", "lb7-1"); return err }, "infra names a segment"},
		{"bad name", func() error { _, err := top.WithNodeLike("LB7", "lb7-1"); return err }, `bad node name "LB7"`},
		{"long name", func() error { _, err := top.WithNodeLike("lb7-0123456789ab", "lb7-1"); return err }, "longer than 15"},
		{"unknown model", func() error { _, err := top.WithNodeLike("lb7-3", "lb7-9"); return err }, "no node lb7-9"},
		{"router", func() error { _, err := top.WithNodeLike("r2", "r1"); return err }, "r1 is a router: only lb4 and lb7"},
		{"client loopback", func() error { _, err := top.WithNodeLike("c2", "client1"); return err }, "client1 is a client"},
		{"remove unknown", func() error { _, err := top.Without("lb4-9"); return err }, "no node lb4-9"},
		{"remove backend", func() error { _, err := top.Without("server-1"); return err }, "server-1 is a server"},
		{"remove last", func() error { _, err := one.Without("lb4-1"); return err }, "lb4-1 is the last lb4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
