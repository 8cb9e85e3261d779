package node

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lab-lb/lab/internal/nameserver"
	"github.com/lab-lb/lab/internal/topology"
)

// The services lab's zone: www answers with both VIPs, www1 and www2 and
// each VIP's own name with one, in both families; the dns node is the zone's name server.
func TestZone(t *testing.T) {
	topo := load(t, "services")
	z := Zone(topo)
	v4 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	want := nameserver.Zone{
		Origin: "example.org.",
		TTL:    topo.DNS.TTL,
		NS:     []nameserver.Host{{Name: "dns.example.org.", Addrs: nodeAddrs(mustNode(t, topo, "dns"))}},
		Services: map[string][]netip.Addr{
			"www.example.org.":  {v4("198.51.100.1"), v4("2001:db8:100::1"), v4("198.51.100.2"), v4("2001:db8:100::2")},
			"mh-1.example.org.": {v4("198.51.100.1"), v4("2001:db8:100::1")},
			"www1.example.org.": {v4("198.51.100.1"), v4("2001:db8:100::1")},
			"mh-2.example.org.": {v4("198.51.100.2"), v4("2001:db8:100::2")},
			"www2.example.org.": {v4("198.51.100.2"), v4("2001:db8:100::2")},
		},
	}
	if diff := cmp.Diff(z, want, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("Zone (-got +want):\n%s", diff)
	}
	if len(want.NS[0].Addrs) != 2 {
		t.Errorf("dns node addresses %v, want one of each family", want.NS[0].Addrs)
	}
}

func TestResolvConf(t *testing.T) {
	topo := load(t, "services")
	dns := nodeAddrs(mustNode(t, topo, "dns"))
	want := "# written by lab: the lab's own name servers\n" +
		"nameserver " + dns[0].String() + "\n" +
		"nameserver " + dns[1].String() + "\n" +
		"search example.org\noptions timeout:1 attempts:2\n"
	if got := ResolvConf(topo); got != want {
		t.Errorf("ResolvConf =\n%s\nwant\n%s", got, want)
	}
	if got := ResolvConf(load(t, "minimal")); got != "" {
		t.Errorf("ResolvConf of a lab without dns node = %q, want none", got)
	}
}

func mustNode(t *testing.T, topo *topology.Topology, name string) *topology.Node {
	t.Helper()
	n, ok := topo.Node(name)
	if !ok {
		t.Fatalf("no node %s", name)
	}
	return n
}
