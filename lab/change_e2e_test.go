package lab_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/ipvs"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/lab"
)

// destinations is an LB4's destination list for the first IPv4 VIP, in
// kernel order, as "address wN".
func destinations(t *testing.T, st *lab.Status, lb4 string) []string {
	t.Helper()
	var out []string
	for _, d := range firstService4(t, st, lb4).Destinations {
		out = append(out, fmt.Sprintf("%s w%d", d.Address, d.Weight))
	}
	return out
}

// firstService4 is an LB4's first IPv4 service, empty when it has none.
func firstService4(t *testing.T, st *lab.Status, lb4 string) ipvs.Desired {
	t.Helper()
	for _, svc := range tier[node.LB4Status](t, st, lb4).Services {
		if svc.Service.Address.Is4() {
			return svc
		}
	}
	return ipvs.Desired{}
}

func hasNode(st *lab.Status, name string) bool {
	return slices.ContainsFunc(st.Nodes, func(n lab.NodeStatus) bool { return n.Name == name })
}

// TestE2EAddRemove adds an LB7 and an LB4 to the running minimal lab and
// removes them: every LB4 puts the new LB7 at the head of its IPVS list
// without re-adding the others (same order everywhere), the new LB7
// serves, the router gains and loses the new LB4's next hop, and bad
// requests change nothing.
func TestE2EAddRemove(t *testing.T) {
	const name = "e2e-change"
	l := up(t, "../topologies/minimal.yaml", name)
	ctx := context.Background()

	if err := l.Add(ctx, "lb7-3", "lb7-1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.134 w1", "192.0.2.133 w1", "192.0.2.132 w1"}
	waitStatus(t, l, 30*time.Second, "lb7-3 healthy on every LB4", func(st *lab.Status) bool {
		return slices.Equal(destinations(t, st, "lb4-1"), want) && slices.Equal(destinations(t, st, "lb4-2"), want)
	})
	evs, err := l.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == "ipvs" && strings.Contains(e.Msg, "re-add") {
			t.Errorf("adding an LB7 re-added a destination: %s %s", e.Node, e.Msg)
		}
	}
	lb7s, _ := curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 30))
	if lb7s["lb7-3"] == 0 {
		t.Errorf("no request reached the new lb7-3: %v", lb7s)
	}

	if err := l.Add(ctx, "lb4-3", "lb4-1"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 30*time.Second, "r1 routes through lb4-3", func(st *lab.Status) bool {
		return len(tier[node.RouterStatus](t, st, "r1").Routes["198.51.100.1/32"]) == 3 &&
			slices.Equal(destinations(t, st, "lb4-3"), want)
	})
	curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 31, 50))

	// Bad requests: an error each, and the lab keeps its 10 nodes.
	for _, bad := range []func() error{
		func() error { return l.Add(ctx, "lb7-2", "lb7-1") },    // taken
		func() error { return l.Add(ctx, "r2", "r1") },          // not an LB
		func() error { return l.Add(ctx, "lb7-9", "nobody") },   // no model
		func() error { return l.Remove(ctx, "server-1") },       // not an LB
		func() error { return l.Remove(ctx, "lb7-9") },          // unknown
		func() error { return l.Add(ctx, "Bad_Name", "lb7-1") }, // bad name
	} {
		if err := bad(); err == nil {
			t.Error("a bad add or remove was accepted")
		} else {
			t.Logf("refused: %v", err)
		}
	}
	if st := status(t, l); len(st.Nodes) != 10 {
		t.Errorf("%d nodes after refused changes, want 10", len(st.Nodes))
	}

	lb43 := addrOfFamily(t, status(t, l), "lb4-3", "infra", lab.IPv6)
	if err := l.Remove(ctx, "lb7-3"); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(ctx, "lb4-3"); err != nil {
		t.Fatal(err)
	}
	// A removed LB4 leaves a thread in its namespace (GoBGP's serve loop),
	// but not its interfaces: nothing answers for its address any more,
	// which the next node added will take.
	if out, code := execOut(t, l, "r1", "ping", "-c", "1", "-W", "2", lb43.String()); code == 0 {
		t.Errorf("the removed lb4-3's address %s still answers:\n%s", lb43, out)
	}
	want = want[1:]
	waitStatus(t, l, 30*time.Second, "lb7-3 and lb4-3 gone", func(st *lab.Status) bool {
		return !hasNode(st, "lb7-3") && !hasNode(st, "lb4-3") &&
			len(tier[node.RouterStatus](t, st, "r1").Routes["198.51.100.1/32"]) == 2 &&
			slices.Equal(destinations(t, st, "lb4-1"), want) && slices.Equal(destinations(t, st, "lb4-2"), want)
	})
	if out, code := execOut(t, l, "lb7-1", "ip", "-o", "link", "show", "lb4-3"); code == 0 {
		t.Errorf("lb7-1 still has the tunnel from the removed lb4-3: %s", out)
	}
	lb7s, _ = curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 20))
	if lb7s["lb7-3"] != 0 {
		t.Errorf("the removed lb7-3 still answers: %v", lb7s)
	}
	top, err := l.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := top.Node("lb7-3"); ok || len(top.Nodes) != 8 {
		t.Errorf("Lab.Topology() after the changes has %d nodes (lb7-3 there: %v), want 8", len(top.Nodes), ok)
	}
}
