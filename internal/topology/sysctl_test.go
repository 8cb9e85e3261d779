package topology

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestNamespacedSysctl(t *testing.T) {
	const (
		host = ": it would change the host kernel, and lab down would not restore it"
		list = " (a node may set net.ipv4.*, net.ipv6.*, net.netfilter.*, net.unix.*, net.mpls.* and a few net.core.* keys)"
		core = " (in net.core, a node may set somaxconn, txrehash, optmem_max, rps_default_mask, tstamp_allow_data and xfrm_*)"
	)
	cases := []struct {
		key string
		ok  bool
		why string
	}{
		{key: "net.ipv4.ip_forward", ok: true},
		{key: "net.ipv4.conf.all.rp_filter", ok: true},
		{key: "net.ipv4.vs.sloppy_tcp", ok: true},
		{key: "net.ipv6.conf.default.forwarding", ok: true},
		{key: "net.netfilter.nf_conntrack_tcp_loose", ok: true},
		{key: "net.unix.max_dgram_qlen", ok: true},
		{key: "net.mpls.platform_labels", ok: true},
		{key: "net.core.somaxconn", ok: true},
		{key: "net.core.txrehash", ok: true},
		{key: "net.core.optmem_max", ok: true},
		{key: "net.core.rps_default_mask", ok: true},
		{key: "net.core.tstamp_allow_data", ok: true},
		{key: "net.core.xfrm_aevent_etime", ok: true},
		{key: "net.core.xfrm_larval_drop", ok: true},
		{key: "kernel.core_pattern", why: "sysctl kernel.core_pattern is not per network namespace" + host + list},
		{key: "vm.swappiness", why: "sysctl vm.swappiness is not per network namespace" + host + list},
		{key: "fs.file-max", why: "sysctl fs.file-max is not per network namespace" + host + list},
		{key: "ipv4.ip_forward", why: "sysctl ipv4.ip_forward is not per network namespace" + host + ` (did you mean "net.ipv4.ip_forward"?)`},
		{key: "net.core.rmem_max", why: "net.core.rmem_max is global, not per network namespace" + core},
		{key: "net.core.netdev_max_backlog", why: "net.core.netdev_max_backlog is global, not per network namespace" + core},
		{key: "net.core.xfrm_", why: "net.core.xfrm_ is global, not per network namespace" + core},
		{key: "net.core.somaxcon", why: `net.core.somaxcon is global, not per network namespace (did you mean "net.core.somaxconn"?)`},
		{key: "net.core.conf.all.forwarding", why: "net.core.conf.all.forwarding is global, not per network namespace" + core},
		{key: "net.bridge.bridge-nf-call-iptables", why: "sysctl net.bridge.bridge-nf-call-iptables is not known to be per network namespace" + list},
		{key: "net.nf_conntrack_max", why: "sysctl net.nf_conntrack_max is not known to be per network namespace" + list},
		{key: "net.ipv4", why: "sysctl net.ipv4 is not known to be per network namespace" + list},
		{key: "net.ip4.ip_forward", why: `sysctl net.ip4.ip_forward is not known to be per network namespace (did you mean "net.ipv4.ip_forward"?)`},
		{key: "net.ipv4x.ip_forward", why: `sysctl net.ipv4x.ip_forward is not known to be per network namespace (did you mean "net.ipv4.ip_forward"?)`},
		{key: "net.ipv4ip_forward.x", why: "sysctl net.ipv4ip_forward.x is not known to be per network namespace" + list},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			ok, why := namespacedSysctl(tc.key)
			if ok != tc.ok || why != tc.why {
				t.Errorf("namespacedSysctl(%q) = %v, %q\nwant %v, %q", tc.key, ok, why, tc.ok, tc.why)
			}
		})
	}
}

// TestShippedSysctlsNamespaced checks every sysctl key of the shipped
// defaults and topologies.
func TestShippedSysctlsNamespaced(t *testing.T) {
	files, err := filepath.Glob("../../topologies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../configs/defaults.yaml")
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		for _, key := range sysctlKeys(&doc) {
			n++
			if ok, why := namespacedSysctl(key); !ok {
				t.Errorf("%s: %s", f, why)
			}
		}
	}
	if n == 0 {
		t.Fatal("no sysctls found in the shipped files")
	}
}

// sysctlKeys returns the keys of every sysctls: mapping under n.
func sysctlKeys(n *yaml.Node) []string {
	var keys []string
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].Value == "sysctls" && c.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(c.Content); j += 2 {
				keys = append(keys, c.Content[j].Value)
			}
			continue
		}
		keys = append(keys, sysctlKeys(c)...)
	}
	return keys
}
