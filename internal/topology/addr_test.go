package topology

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/lab-lb/lab/internal/yamlerr"
)

// addrs parses addresses; "" is the zero Addr.
func addrs(t *testing.T, ss ...string) []netip.Addr {
	t.Helper()
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		if s != "" {
			out[i] = netip.MustParseAddr(s)
		}
	}
	return out
}

func TestAllocate(t *testing.T) {
	cases := []struct {
		name        string
		prefix      string
		pinned      []string
		want        []string
		wantMissing int
	}{
		{
			name:   "allocated in order",
			prefix: "192.0.2.0/29",
			pinned: []string{"", "", ""},
			want:   []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
		},
		{
			name:   "pinned and allocated",
			prefix: "192.0.2.128/25",
			pinned: []string{"", "192.0.2.129", "", "192.0.2.131", ""},
			want:   []string{"192.0.2.130", "192.0.2.129", "192.0.2.132", "192.0.2.131", "192.0.2.133"},
		},
		{
			name:   "pinned at the end",
			prefix: "192.0.2.0/29",
			pinned: []string{"192.0.2.6", "", ""},
			want:   []string{"192.0.2.6", "192.0.2.1", "192.0.2.2"},
		},
		{
			name:   "full without network and broadcast",
			prefix: "192.0.2.0/30",
			pinned: []string{"", ""},
			want:   []string{"192.0.2.1", "192.0.2.2"},
		},
		{
			name:        "exhausted",
			prefix:      "192.0.2.0/30",
			pinned:      []string{"", "192.0.2.1", "", ""},
			want:        []string{"192.0.2.2", "192.0.2.1", "", ""},
			wantMissing: 2,
		},
		{
			name:   "slash 31 uses both addresses",
			prefix: "192.0.2.8/31",
			pinned: []string{"", ""},
			want:   []string{"192.0.2.8", "192.0.2.9"},
		},
		{
			name:        "slash 32",
			prefix:      "192.0.2.8/32",
			pinned:      []string{"", ""},
			want:        []string{"192.0.2.8", ""},
			wantMissing: 1,
		},
		{
			name:   "ipv6 skips the subnet-router anycast address",
			prefix: "2001:db8:1::/64",
			pinned: []string{"", "2001:db8:1::2", "", ""},
			want:   []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4"},
		},
		{
			name:   "ipv6 keeps the last address",
			prefix: "2001:db8:1::/126",
			pinned: []string{"", "", ""},
			want:   []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"},
		},
		{
			name:   "ipv6 slash 127",
			prefix: "2001:db8:1::/127",
			pinned: []string{"", ""},
			want:   []string{"2001:db8:1::", "2001:db8:1::1"},
		},
		{
			name:   "top of the address space",
			prefix: "255.255.255.252/30",
			pinned: []string{"", ""},
			want:   []string{"255.255.255.253", "255.255.255.254"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, missing := allocate(netip.MustParsePrefix(tc.prefix), addrs(t, tc.pinned...))
			addrCmp := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
			if diff := cmp.Diff(got, addrs(t, tc.want...), addrCmp); diff != "" {
				t.Errorf("addresses (-got +want):\n%s", diff)
			}
			if missing != tc.wantMissing {
				t.Errorf("missing = %d, want %d", missing, tc.wantMissing)
			}
		})
	}
}

func TestHostProblem(t *testing.T) {
	cases := []struct {
		prefix, addr, want string
	}{
		{"192.0.2.128/25", "192.0.2.130", ""},
		{"192.0.2.128/25", "192.0.2.128", "is the network address of"},
		{"192.0.2.128/25", "192.0.2.255", "is the broadcast address of"},
		{"192.0.2.128/25", "192.0.2.5", "is not in"},
		{"192.0.2.128/25", "2001:db8::1", "is not in"},
		{"192.0.2.0/31", "192.0.2.0", ""},
		{"192.0.2.0/31", "192.0.2.1", ""},
		{"2001:db8::/64", "2001:db8::", "is the subnet-router anycast address of"},
		{"2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff", ""},
		{"2001:db8::/127", "2001:db8::", ""},
	}
	for _, tc := range cases {
		t.Run(tc.prefix+" "+tc.addr, func(t *testing.T) {
			got := hostProblem(netip.MustParsePrefix(tc.prefix), netip.MustParseAddr(tc.addr))
			if got != tc.want {
				t.Errorf("hostProblem = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestP2PAddrs(t *testing.T) {
	cases := []struct {
		name, pool string
		index      int
		a, b       string
	}{
		{"first", "100.64.0.0/16", 0, "100.64.0.0/31", "100.64.0.1/31"},
		{"carry", "100.64.0.0/16", 200, "100.64.1.144/31", "100.64.1.145/31"},
		{"ipv6", "2001:db8:ffff::/64", 1, "2001:db8:ffff::2/127", "2001:db8:ffff::3/127"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := p2pAddrs(netip.MustParsePrefix(tc.pool), tc.index)
			if a.String() != tc.a || b.String() != tc.b {
				t.Errorf("p2pAddrs = %s %s, want %s %s", a, b, tc.a, tc.b)
			}
		})
	}
	capacities := []struct {
		pool string
		want int
	}{
		{"100.64.0.0/31", 1},
		{"100.64.0.0/29", 4},
		{"100.64.0.0/16", 1000},
		{"2001:db8::/64", 1000},
		{"100.64.0.0/32", 0},
	}
	for _, tc := range capacities {
		t.Run("capacity "+tc.pool, func(t *testing.T) {
			if got := p2pCapacity(netip.MustParsePrefix(tc.pool), 1000); got != tc.want {
				t.Errorf("p2pCapacity = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestExpandLoopback(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		first   string
		last    string
		count   int
		problem string
	}{
		{name: "address", in: "203.0.113.7", first: "203.0.113.7", last: "203.0.113.7", count: 1},
		{name: "last octet", in: "203.0.113.1-200", first: "203.0.113.1", last: "203.0.113.200", count: 200},
		{name: "full v4", in: "203.0.113.250-203.0.114.5", first: "203.0.113.250", last: "203.0.114.5", count: 12},
		{name: "full v6", in: "2001:db8::ff-2001:db8::101", first: "2001:db8::ff", last: "2001:db8::101", count: 3},
		{name: "prefix", in: "203.0.113.0/30", first: "203.0.113.0", last: "203.0.113.3", count: 4},
		{name: "largest prefix", in: "10.0.0.0/20", first: "10.0.0.0", last: "10.0.15.255", count: 4096},
		{name: "one", in: "203.0.113.5-5", first: "203.0.113.5", last: "203.0.113.5", count: 1},
		{name: "reversed", in: "203.0.113.9-8", problem: `range "203.0.113.9-8" is reversed: 203.0.113.8 is below 203.0.113.9`},
		{name: "too many", in: "10.0.0.0-10.0.16.0", problem: `range "10.0.0.0-10.0.16.0" holds more than 4096 addresses`},
		{name: "prefix too big", in: "10.0.0.0/19", problem: `10.0.0.0/19 holds more than 4096 addresses`},
		{name: "short v6", in: "2001:db8::1-2", problem: `range "2001:db8::1-2": "2" is not an IP address (want a full IPv6 address)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, problem := expandLoopback(tc.in, maxLoopback)
			if problem != tc.problem {
				t.Fatalf("problem = %q, want %q", problem, tc.problem)
			}
			if problem != "" {
				return
			}
			if len(got) != tc.count || got[0].String() != tc.first || got[len(got)-1].String() != tc.last {
				t.Errorf("got %d addresses %s..%s, want %d %s..%s", len(got), got[0], got[len(got)-1], tc.count, tc.first, tc.last)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	parse := func(s string) *yaml.Node {
		t.Helper()
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Content[0]
	}
	low := parse("bgp: {hold-time: 3s, keepalive: 1s}\nsysctls: {a.b: \"1\"}\n")
	high := parse("\nbgp: {keepalive: 2s, hold-time: ~}\nsysctls: {c.d: \"2\"}\n")
	var got rawSettings
	if err := merge(low, nil, high).Decode(&got); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		v    value
		want string
		line int
	}{
		{"kept from the lower layer", got.BGP.HoldTime, "3s", 1},
		{"replaced by the higher layer", got.BGP.Keepalive, "2s", 2},
		{"merged map, lower key", got.Sysctls[0].V, "1", 2},
		{"merged map, higher key", got.Sysctls[1].V, "2", 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := tc.v.str()
			if s != tc.want || yamlerr.Line(tc.v.Node) != tc.line {
				t.Errorf("got %q at line %d, want %q at line %d", s, yamlerr.Line(tc.v.Node), tc.want, tc.line)
			}
		})
	}
}
