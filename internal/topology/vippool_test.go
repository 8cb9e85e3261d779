package topology

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVIPAllocation checks how VIPs written without an address get theirs
// from vip-pool: pinned addresses first, then the lowest free address of
// each family, in VIP order.
func TestVIPAllocation(t *testing.T) {
	const head = `name: alloc
segments:
  infra: {prefix: [192.0.2.128/25, "2001:db8:0:2::/64"]}
nodes:
  r1: {role: router, links: [infra]}
  lb4: {role: lb4, links: [infra], loopback: [203.0.113.1]}
  lb7: {role: lb7, links: [infra]}
`
	cases := []struct {
		name string
		more string
		want []string // NAME ADDRESS, with "(allocated)" when it came from the pool
		pool string   // Topology.VIPPool
		errs []string // the problems, LINE: FIELD: MESSAGE
	}{
		{
			name: "pinned and allocated",
			more: `vip-pool: 198.51.100.0/29
vips:
  - {name: a}
  - {name: b, address: 198.51.100.1}
  - {name: c}
  - {name: d, address: 198.51.100.3, port: 443}
  - {name: e}
  - {name: f, address: 198.51.100.3}   # the same address on another port
  - {name: g, address: 192.0.2.1}      # outside the pool: fine
`,
			pool: "[198.51.100.0/29]",
			want: []string{
				"a 198.51.100.2 (allocated)", "b 198.51.100.1", "c 198.51.100.4 (allocated)",
				"d 198.51.100.3", "e 198.51.100.5 (allocated)", "f 198.51.100.3", "g 192.0.2.1",
			},
		},
		{
			name: "huge pools",
			more: "vip-pool: [0.0.0.0/1, \"8000::/1\"]\nvips: [{name: a}]\n",
			pool: "[0.0.0.0/1 8000::/1]",
			want: []string{"a 0.0.0.1 (allocated)", "a 8000::1 (allocated)"},
		},
		{
			name: "dual-stack pool",
			more: `vip-pool: ["2001:db8:100::/64", 198.51.100.0/24]
vips:
  - {name: a}
  - {name: b, address: "2001:db8:100::1"}
  - {name: c, port: 443}
`,
			pool: "[198.51.100.0/24 2001:db8:100::/64]",
			want: []string{
				"a 198.51.100.1 (allocated)", "a 2001:db8:100::2 (allocated)",
				"b 2001:db8:100::1",
				"c 198.51.100.2 (allocated)", "c 2001:db8:100::3 (allocated)",
			},
		},
		{
			name: "a written address of one family takes nothing from the pool",
			more: "vip-pool: [198.51.100.0/24, \"2001:db8:100::/64\"]\nvips: [{name: a, address: 198.51.100.1}, {name: b}]\n",
			pool: "[198.51.100.0/24 2001:db8:100::/64]",
			want: []string{"a 198.51.100.1", "b 198.51.100.2 (allocated)", "b 2001:db8:100::1 (allocated)"},
		},
		{
			name: "IPv4 skips the first and last addresses",
			more: "vip-pool: 198.51.100.0/30\nvips: [{name: a}, {name: b}]\n",
			pool: "[198.51.100.0/30]",
			want: []string{"a 198.51.100.1 (allocated)", "b 198.51.100.2 (allocated)"},
		},
		{
			name: "IPv6 skips the first address only",
			more: "vip-pool: \"2001:db8:100::/127\"\nvips: [{name: a}]\n",
			pool: "[2001:db8:100::/127]",
			want: []string{"a 2001:db8:100::1 (allocated)"},
		},
		{
			name: "pool too small",
			more: `vip-pool: 198.51.100.0/30
vips:
  - {name: a, address: 198.51.100.1}
  - {name: b}
  - {name: c}
  - {name: d}
`,
			errs: []string{"8: vip-pool: vip-pool 198.51.100.0/30 has 1 free IPv4 address for 3 VIPs"},
		},
		{
			name: "pool too small, one family",
			more: "vip-pool: [198.51.100.0/24, \"2001:db8:100::/128\"]\nvips: [{name: a}]\n",
			errs: []string{"8: vip-pool[1]: vip-pool 2001:db8:100::/128 has 0 free IPv6 addresses for 1 VIP"},
		},
		{
			name: "no pool",
			more: "vips:\n  - {name: a, address: 198.51.100.1}\n  - {name: b}\n",
			errs: []string{"10: vips[1]: no address, and no vip-pool to allocate one from (add address: or vip-pool:)"},
		},
		{
			name: "null address",
			more: "vips:\n  - {name: a, address: ~}\n",
			errs: []string{"9: vips[0]: no address, and no vip-pool to allocate one from (add address: or vip-pool:)"},
		},
		{
			name: "allocated addresses clash like written ones",
			more: "vip-pool: 203.0.113.0/24\nvips: [{name: a}]\n",
			errs: []string{"9: vips[0]: 203.0.113.1 is also on lo of lb4"},
		},
		{
			name: "pool overlaps a segment",
			more: "vip-pool: 192.0.2.0/24\nvips: [{name: a}]\n",
			errs: []string{"8: vip-pool: 192.0.2.0/24 overlaps segment infra (192.0.2.128/25)"},
		},
		{
			name: "pool overlaps p2p-pool",
			more: "p2p-pool: 198.51.100.0/25\nvip-pool: 198.51.100.0/24\nvips: [{name: a}]\n",
			errs: []string{"9: vip-pool: 198.51.100.0/24 overlaps p2p-pool 198.51.100.0/25"},
		},
		{
			// Without links, the default p2p-pool is not in use.
			name: "pool in the unused default p2p-pool",
			more: "vip-pool: 100.64.0.0/24\nvips: [{name: a}]\n",
			pool: "[100.64.0.0/24]",
			want: []string{"a 100.64.0.1 (allocated)"},
		},
		{
			name: "pool with host bits",
			more: "vip-pool: 198.51.100.1/24\nvips: [{name: a}]\n",
			errs: []string{`8: vip-pool: "198.51.100.1/24" has host bits set (want 198.51.100.0/24)`},
		},
		{
			name: "pool not a prefix",
			more: "vip-pool: 198.51.100.1\nvips: [{name: a, address: 198.51.100.1}]\n",
			errs: []string{`8: vip-pool: "198.51.100.1" is not a prefix (want e.g. 192.0.2.128/25)`},
		},
		{
			name: "two pools of one family",
			more: "vip-pool: [198.51.100.0/24, 203.0.113.0/24]\nvips: [{name: a}]\n",
			errs: []string{"8: vip-pool[1]: a second IPv4 value (want at most one per family; the first is at line 8)"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo := parseOrProblems(t, "alloc.yaml", head+tc.more, tc.errs)
			if topo == nil {
				return
			}
			if got := fmt.Sprint(topo.VIPPool); got != tc.pool {
				t.Errorf("VIPPool %s, want %s", got, tc.pool)
			}
			var got []string
			for _, v := range topo.VIPs {
				s := v.Name + " " + v.Address.String()
				if v.Allocated {
					s += " (allocated)"
				}
				got = append(got, s)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("VIPs (-got +want):\n%s", diff)
			}
		})
	}
}
