package kmod

import (
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/topology"
)

// The modules a lab uses, whatever its topology.
var (
	ipvs   = Module{Name: "ip_vs", Config: "CONFIG_IP_VS", For: "IPVS on the LB4s (tier 2)"}
	ipip   = Module{Name: "ipip", Config: "CONFIG_NET_IPIP", For: "IPIP tunnels from LB4s to LB7s"}
	ipv6   = Module{Name: "ipv6", Config: "CONFIG_IPV6", For: "IPv6 on every node"}
	ip6tnl = Module{Name: "ip6_tunnel", Config: "CONFIG_IPV6_TUNNEL", For: "IPv6-in-IPv6 tunnels from LB4s to LB7s"}
	veth   = Module{Name: "veth", Config: "CONFIG_VETH", For: "links between nodes"}
	bridge = Module{Name: "bridge", Config: "CONFIG_BRIDGE", For: "segments with more than two nodes"}
	netem  = Module{Name: "sch_netem", Config: "CONFIG_NET_SCH_NETEM", For: "lab impair and lab kill --freeze"}
)

// Scheduler returns the module of an IPVS scheduler ("mh": ip_vs_mh).
func Scheduler(name string) Module {
	return Module{
		Name:   "ip_vs_" + name,
		Config: "CONFIG_IP_VS_" + strings.ToUpper(name),
		For:    "IPVS scheduler " + name,
	}
}

// Needs returns the modules a lab with VIPs using these schedulers needs,
// each once, IPVS first. With no scheduler given it needs every one a
// topology may name: what a host must offer for any lab.
func Needs(schedulers ...string) []Module {
	if len(schedulers) == 0 {
		schedulers = topology.Schedulers
	}
	mods := []Module{ipvs}
	var seen []string
	for _, s := range schedulers {
		if !slices.Contains(seen, s) {
			seen = append(seen, s)
			mods = append(mods, Scheduler(s))
		}
	}
	return append(mods, ipip, ipv6, ip6tnl, veth, bridge, netem)
}

// Names returns the names of mods.
func Names(mods []Module) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.Name
	}
	return out
}
