package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

// lb7Weight is the weight of the LB7 at address lb7 in the first IPv4
// service of LB4 lb4, -1 when it has none.
func lb7Weight(t *testing.T, st *lab.Status, lb4, lb7 string) int {
	for _, d := range firstService4(t, st, lb4).Destinations {
		if d.Address.String() == lb7 {
			return d.Weight
		}
	}
	return -1
}

// addressOn is node's address on segment, without its prefix length.
func addressOn(t *testing.T, st *lab.Status, name, segment string) string {
	t.Helper()
	for _, n := range st.Nodes {
		for _, i := range n.Interfaces {
			if n.Name == name && i.Segment == segment {
				p, err := netip.ParsePrefix(i.Addresses[0]) // IPv4 first
				if err != nil {
					t.Fatalf("address of %s on %s: %v", name, segment, err)
				}
				return p.Addr().String()
			}
		}
	}
	t.Fatalf("%s has no address on %s", name, segment)
	return ""
}

// tier decodes a node's tier status from `lab status`.
func tier[T any](t *testing.T, st *lab.Status, name string) T {
	t.Helper()
	var v T
	for _, n := range st.Nodes {
		if n.Name == name {
			if err := json.Unmarshal(n.Agent.Tier, &v); err != nil {
				t.Fatalf("tier status of %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("no node %s in status", name)
	return v
}

// curlFrom makes n requests from n source addresses of client to target
// and returns how many answers each LB7 and each backend gave.
func curlFrom(t *testing.T, l *lab.Lab, client, url string, sources []string) (lb7s, servers map[string]int) {
	t.Helper()
	lb7s, servers = map[string]int{}, map[string]int{}
	for _, src := range sources {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := l.Get(ctx, client, url, src, 10*time.Second)
		cancel()
		if err != nil {
			t.Fatalf("GET %s from %s: %v", url, src, err)
		}
		if res.Error != "" || res.Status != 200 {
			t.Errorf("GET %s from %s: status %d error %q", url, src, res.Status, res.Error)
			continue
		}
		server := strings.TrimSpace(res.Body)
		if got := res.Header["X-Lab-Server"]; len(got) != 1 || got[0] != server {
			t.Errorf("GET %s from %s: body %q but X-Lab-Server %v", url, src, server, got)
		}
		servers[server]++
		if h := res.Header["X-Lab-Lb7"]; len(h) == 1 {
			lb7s[h[0]]++
		}
	}
	return lb7s, servers
}

func sourceRange(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s.%d", prefix, i))
	}
	return out
}

// TestE2EDataPath checks the three tiers on the minimal topology, for
// each family of its dual-stack VIP: the router's ECMP route has one next
// hop per LB4, every LB4 holds the same Maglev services with tunnel
// destinations in the same order (IPIP for IPv4, IPv6 in IPv6 for IPv6),
// requests from 50 source addresses reach every LB7 and every backend, the
// answers bypass the LB4s (direct return: IPVS counts no outgoing
// packets), and the LB7s decapsulate tunnelled packets from the LB4s only.
func TestE2EDataPath(t *testing.T) {
	const name = "e2e-datapath"
	l := up(t, "../topologies/minimal.yaml", name)

	// lab curl's default: the first VIP, answered with a backend's name.
	res, err := l.Get(context.Background(), "client1", "http://198.51.100.1/", "", 10*time.Second)
	if err != nil || res.Error != "" || res.Status != 200 {
		t.Fatalf("GET the VIP from client1: %v %+v", err, res)
	}
	if body := strings.TrimSpace(res.Body); body != "server-1" && body != "server-2" {
		t.Errorf("the VIP answered %q, want a backend's name", res.Body)
	}

	var sources6 []string
	for i := 1; i <= 50; i++ {
		sources6 = append(sources6, fmt.Sprintf("2001:db8:ff::%x", i))
	}
	for _, c := range []struct {
		url     string
		sources []string
	}{
		{"http://198.51.100.1/", sourceRange("203.0.113", 1, 50)},
		{"http://[2001:db8:100::1]/", sources6},
	} {
		lb7s, servers := curlFrom(t, l, "client1", c.url, c.sources)
		t.Logf("%s from 50 sources: LB7s %v, backends %v", c.url, lb7s, servers)
		for _, want := range []string{"lb7-1", "lb7-2"} {
			if lb7s[want] == 0 {
				t.Errorf("no request to %s went through %s: %v", c.url, want, lb7s)
			}
		}
		for _, want := range []string{"server-1", "server-2"} {
			if servers[want] == 0 {
				t.Errorf("no request to %s reached %s: %v", c.url, want, servers)
			}
		}
	}

	// IPVS adds its per-CPU packet counters up on its estimator's tick
	// (every 2 s): wait until the requests above show on the LB4s.
	var st *lab.Status
	waitStatus(t, l, 15*time.Second, "IPVS counters updated", func(s *lab.Status) bool {
		st = s
		in := map[string]uint32{}
		for _, lb4 := range []string{"lb4-1", "lb4-2"} {
			for _, svc := range tier[node.LB4Status](t, s, lb4).Services {
				in[svc.Service.Address.String()] += svc.Stats.PacketsIn
			}
		}
		return in["198.51.100.1"] > 0 && in["2001:db8:100::1"] > 0
	})
	// Tier 1: one route per VIP, one next hop per LB4, in the kernel.
	rs := tier[node.RouterStatus](t, st, "r1")
	for _, c := range []struct{ vip, prefix, hop1, hop2 string }{
		{"198.51.100.1", "198.51.100.1/32", "192.0.2.130", "192.0.2.131"},
		{"2001:db8:100::1", "2001:db8:100::1/128", "2001:db8:0:2::2", "2001:db8:0:2::3"},
	} {
		want := []netip.Addr{netip.MustParseAddr(c.hop1), netip.MustParseAddr(c.hop2)}
		if got := rs.Routes[c.prefix]; !slices.Equal(got, want) {
			t.Errorf("r1 routes %s via %v, want %v", c.prefix, got, want)
		}
		family := "-4"
		if strings.Contains(c.vip, ":") {
			family = "-6"
		}
		out, code := execOut(t, l, "r1", "ip", family, "route", "show", c.vip)
		if code != 0 || strings.Count(out, "nexthop via") != 2 {
			t.Errorf("r1's kernel route to the VIP %s is not a 2-way multipath route:\n%s", c.vip, out)
		}
	}

	// Tier 2: the same service and destination order on both LB4s,
	// tunnel forwarding, and no packet out through IPVS (direct return).
	var order [][]string
	var in uint32
	for _, lb4 := range []string{"lb4-1", "lb4-2"} {
		s := tier[node.LB4Status](t, st, lb4)
		if !s.Announced || len(s.Services) != 2 {
			t.Fatalf("%s: announced %v, %d services, want 2 (one per family)", lb4, s.Announced, len(s.Services))
		}
		var dests []string
		for _, svc := range s.Services {
			if svc.Service.Scheduler != "mh" {
				t.Errorf("%s schedules %s with %q, want mh", lb4, svc.Service.Address, svc.Service.Scheduler)
			}
			for _, d := range svc.Destinations {
				if d.Address.Is4() != svc.Service.Address.Is4() {
					t.Errorf("%s: service %s has destination %s of the other family", lb4, svc.Service.Address, d.Address)
				}
				dests = append(dests, fmt.Sprintf("%s w%d", d.Address, d.Weight))
			}
			if svc.Stats.PacketsOut != 0 {
				t.Errorf("%s: IPVS sent %d packets out for %s: replies did not bypass it", lb4, svc.Stats.PacketsOut, svc.Service.Address)
			}
			in += svc.Stats.PacketsIn
		}
		order = append(order, dests)
		out, _ := execOut(t, l, lb4, "ipvsadm", "-Ln")
		if strings.Count(out, "Tunnel") != 4 || strings.Count(out, " mh ") != 2 || !strings.Contains(out, "[2001:db8:100::1]:80") {
			t.Errorf("%s: ipvsadm -Ln does not show an mh service of each family with 2 tunnel destinations:\n%s", lb4, out)
		}
	}
	if !slices.Equal(order[0], order[1]) || len(order[0]) != 4 {
		t.Errorf("LB4 destination lists differ or are incomplete: lb4-1 %v, lb4-2 %v", order[0], order[1])
	}
	if in == 0 {
		t.Errorf("the LB4s' IPVS counted no incoming packet")
	}
	// Tier 3: every LB7 sees both backends up.
	for _, lb7 := range []string{"lb7-1", "lb7-2"} {
		s := tier[node.LB7Status](t, st, lb7)
		if len(s.Servers) != 2 {
			t.Errorf("%s: %d servers, want 2", lb7, len(s.Servers))
		}
		for _, srv := range s.Servers {
			if srv.Operational != "UP" {
				t.Errorf("%s: server %s is %s", lb7, srv.Name, srv.Operational)
			}
		}
	}

	// Path MTU discovery through the tiers: with r1's link to the client
	// narrowed to 1280 bytes, the LB7s' full-size answers are too big for
	// it. r1's "packet too big" (ICMPv6) or "fragmentation needed" (ICMP)
	// goes to the VIP's source, the VIP, so to an LB4, whose IPVS hands it
	// to the flow's LB7 (schedule_icmp when that LB4 holds no entry for
	// the flow): the LB7 sends smaller segments and the download ends. If
	// the error were lost, the download would stall.
	execOK(t, l, "r1", "ip", "link", "set", "dev", "edge", "mtu", "1280")
	for _, c := range []struct{ url, source string }{
		{"http://198.51.100.1/256K", "203.0.113.9"},
		{"http://198.51.100.1/256K", "203.0.113.10"},
		{"http://[2001:db8:100::1]/256K", "2001:db8:ff::9"},
		{"http://[2001:db8:100::1]/256K", "2001:db8:ff::a"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := l.Get(ctx, "client1", c.url, c.source, 15*time.Second)
		cancel()
		if err != nil {
			t.Fatalf("GET %s from %s over a 1280-byte link: %v", c.url, c.source, err)
		}
		if res.Error != "" || res.Status != 200 || len(res.Body) != 256<<10 {
			t.Errorf("GET %s from %s over a 1280-byte link: status %d, %d bytes, error %q; want 200 and 256 KiB",
				c.url, c.source, res.Status, len(res.Body), res.Error)
		}
	}
	execOK(t, l, "r1", "ip", "link", "set", "dev", "edge", "mtu", "1500")

	// Tier 3 decapsulates tunnelled packets from the LB4s only. The same
	// ping, sent through a tunnel to lb7-1, is answered when it comes from
	// an LB4 and dropped when it comes from anyone else (here r1); with
	// lb7-1's catch-all device (tunl0, ip6tnl0) up, as it would be without
	// the lab's per-LB4 tunnels, r1's ping is answered too. The inner
	// destination is lb7-1's servers address for IPIP, and for IPv6 one
	// put on its lo for the probe (its infra address is the outer one).
	const target6 = "2001:db8:ffff:7::1"
	execOK(t, l, "lb7-1", "ip", "-6", "addr", "add", target6+"/128", "dev", "lo", "nodad")
	for _, fam := range []struct {
		ip, mode, catchAll, extra string
		family                    lab.Family
		target                    netip.Addr
	}{
		{"-4", "ipip", "tunl0", "", lab.IPv4, addrOn(t, st, "lb7-1", "servers")},
		{"-6", "ip6ip6", "ip6tnl0", " encaplimit none", lab.IPv6, netip.MustParseAddr(target6)},
	} {
		remote := addrOfFamily(t, st, "lb7-1", "infra", fam.family)
		for _, c := range []struct {
			from     string
			catchAll bool
			answered bool
		}{{"lb4-1", false, true}, {"r1", false, false}, {"r1", true, true}} {
			if c.catchAll {
				execOK(t, l, "lb7-1", "ip", "link", "set", fam.catchAll, "up")
			}
			// The inner source is the sender's own address too: the VIPs
			// on its loopback are local on the LB7s as well.
			local := addrOfFamily(t, st, c.from, "infra", fam.family)
			probe := fmt.Sprintf("ip %s tunnel add probe mode %s local %s remote %s%s && "+
				"ip link set probe up && ip %s route add %s dev probe src %s && ping -c 2 -W 2 %s",
				fam.ip, fam.mode, local, remote, fam.extra, fam.ip, netip.PrefixFrom(fam.target, fam.target.BitLen()), local, fam.target)
			out, code := execOut(t, l, c.from, "sh", "-c", probe)
			execOK(t, l, c.from, "ip", fam.ip, "tunnel", "del", "probe")
			if c.catchAll {
				execOK(t, l, "lb7-1", "ip", "link", "set", fam.catchAll, "down")
			}
			// Both pings must have left (the tunnel was built); the
			// answers are what differs.
			sent := strings.Contains(out, "2 packets transmitted")
			if answered := code == 0; !sent || answered != c.answered {
				t.Errorf("ping of %s through %s from %s (lb7-1's %s up: %v): answered %v, want %v\n%s",
					fam.target, fam.mode, c.from, fam.catchAll, c.catchAll, answered, c.answered, out)
			}
		}
	}
}

// addrOn is node's IPv4 address on segment, from the lab's status.
func addrOn(t *testing.T, st *lab.Status, node, segment string) netip.Addr {
	t.Helper()
	return addrOfFamily(t, st, node, segment, lab.IPv4)
}

// addrOfFamily is node's address of family f on segment, from the lab's
// status.
func addrOfFamily(t *testing.T, st *lab.Status, node, segment string, f lab.Family) netip.Addr {
	t.Helper()
	for _, n := range st.Nodes {
		if n.Name != node {
			continue
		}
		for _, ifc := range n.Interfaces {
			if ifc.Segment != segment {
				continue
			}
			for _, a := range ifc.Addresses {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					t.Fatalf("%s on %s: %v", node, segment, err)
				}
				if lab.FamilyOf(p.Addr()) == f {
					return p.Addr()
				}
			}
		}
	}
	t.Fatalf("%s has no %s address on %s", node, f, segment)
	return netip.Addr{}
}

// waitEvent polls the lab's event log until an event matches, or fails
// after d.
func waitEvent(t *testing.T, l *lab.Lab, d time.Duration, what string, match func(lab.Event) bool) {
	t.Helper()
	testenv.EventuallyEvery(t, d, 200*time.Millisecond, what, func() error {
		evs, err := l.Events(context.Background())
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(evs, match) {
			return errors.New("no such event yet")
		}
		return nil
	})
}

// waitStatus polls the lab's status until cond holds, or fails after d;
// it returns how long that took.
func waitStatus(t *testing.T, l *lab.Lab, d time.Duration, what string, cond func(*lab.Status) bool) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.EventuallyEvery(t, d, 100*time.Millisecond, what, func() error {
		st, err := l.Status(context.Background())
		if err != nil {
			return err
		}
		if !cond(st) {
			return errors.New("not yet")
		}
		return nil
	})
	return time.Since(start)
}

// TestE2EMaintenance checks the reference design's maintenance files through
// lab maint: /etc/lb/disable on an LB4 withdraws its VIPs (the router's
// ECMP route loses it), and agent-check "down" on an LB7 fails its
// /healthcheck so that every LB4 gives it weight 0; both come back.
func TestE2EMaintenance(t *testing.T) {
	const name = "e2e-maint"
	l := up(t, "../topologies/minimal.yaml", name)
	ctx := context.Background()
	vip := "198.51.100.1/32"
	nextHops := func(st *lab.Status) []netip.Addr { return tier[node.RouterStatus](t, st, "r1").Routes[vip] }
	weight := func(st *lab.Status, lb4, lb7 string) int { return lb7Weight(t, st, lb4, lb7) }

	if err := l.Maint(ctx, "lb4-2", true); err != nil {
		t.Fatal(err)
	}
	took := waitStatus(t, l, 10*time.Second, "lb4-2 withdrawn", func(st *lab.Status) bool {
		return slices.Equal(nextHops(st), []netip.Addr{netip.MustParseAddr("192.0.2.130")})
	})
	t.Logf("/etc/lb/disable on lb4-2: out of r1's route in %s (status polled every 100ms)", took.Round(10*time.Millisecond))
	if err := l.Maint(ctx, "lb4-2", false); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 10*time.Second, "lb4-2 back", func(st *lab.Status) bool { return len(nextHops(st)) == 2 })

	if err := l.Maint(ctx, "lb7-2", true); err != nil {
		t.Fatal(err)
	}
	took = waitStatus(t, l, 20*time.Second, "lb7-2 at weight 0 on every LB4", func(st *lab.Status) bool {
		return weight(st, "lb4-1", "192.0.2.133") == 0 && weight(st, "lb4-2", "192.0.2.133") == 0
	})
	t.Logf("agent-check down on lb7-2: weight 0 on every LB4 in %s", took.Round(10*time.Millisecond))
	// Its flows now go to lb7-1 only.
	lb7s, _ := curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 10))
	if lb7s["lb7-2"] != 0 {
		t.Errorf("lb7-2 still served requests while down: %v", lb7s)
	}
	if err := l.Maint(ctx, "lb7-2", false); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 20*time.Second, "lb7-2 back", func(st *lab.Status) bool {
		return weight(st, "lb4-1", "192.0.2.133") == 1 && weight(st, "lb4-2", "192.0.2.133") == 1
	})
	// Wrong role, unknown node, bad state: clear errors.
	for _, err := range []error{l.Maint(ctx, "client1", true), l.Maint(ctx, "nope", true), l.Agent(ctx, "server-1", "sideways")} {
		if err == nil {
			t.Error("a wrong maintenance request was accepted")
		}
	}
}

// TestE2EKillRevive crashes an LB4 (lab kill): the router's ECMP route
// drops it at once (its BGP sessions close), requests keep being served by
// the other LB4, and lab revive brings it back into the route.
func TestE2EKillRevive(t *testing.T) {
	const name = "e2e-kill"
	l := up(t, "../topologies/minimal.yaml", name)
	ctx := context.Background()
	hops := func(st *lab.Status) int {
		return len(tier[node.RouterStatus](t, st, "r1").Routes["198.51.100.1/32"])
	}

	if err := l.Kill(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	took := waitStatus(t, l, 10*time.Second, "lb4-2 out of r1's route", func(st *lab.Status) bool { return hops(st) == 1 })
	t.Logf("lab kill lb4-2: out of r1's route in %s (status polled every 100ms)", took.Round(10*time.Millisecond))
	// The router logs the session's loss, as GoBGP pushes it.
	waitEvent(t, l, 20*time.Second, "r1 logs its session with lb4-2 going down", func(e lab.Event) bool {
		return e.Node == "r1" && e.Kind == "bgp" && strings.Contains(e.Msg, "session with") && !strings.HasSuffix(e.Msg, "established")
	})
	// Its event log outlives its agent.
	evs, err := l.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e lab.Event) bool { return e.Node == "lb4-2" && e.Kind == "ipvs" }) {
		t.Error("lab events lost the killed lb4-2's IPVS events")
	}
	st := status(t, l)
	for _, n := range st.Nodes {
		if n.Name == "lb4-2" && n.Agent.State != "killed" {
			t.Errorf("lb4-2 is %q in status, want killed", n.Agent.State)
		}
	}
	_, servers := curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 10))
	if servers["server-1"]+servers["server-2"] != 10 {
		t.Errorf("with lb4-2 dead, answers %v, want 10", servers)
	}
	if err := l.Kill(ctx, "lb4-2"); err == nil {
		t.Error("killing a killed node was accepted")
	}
	if err := l.Revive(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	took = waitStatus(t, l, 30*time.Second, "lb4-2 back in r1's route", func(st *lab.Status) bool { return hops(st) == 2 })
	t.Logf("lab revive lb4-2: back in r1's route in %s", took.Round(10*time.Millisecond))
	if err := l.Revive(ctx, "lb4-2"); err == nil {
		t.Error("reviving a live node was accepted")
	}

	// A silent failure: BFD tells the router, well before the BGP hold
	// timer (3s), and the event log says so.
	since := time.Now()
	if err := l.Freeze(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	took = waitStatus(t, l, 20*time.Second, "frozen lb4-2 out of r1's route", func(st *lab.Status) bool { return hops(st) == 1 })
	t.Logf("lab kill --freeze lb4-2: out of r1's route in %s (as the test polled)", took.Round(10*time.Millisecond))
	if d, ok, err := l.Rerouted(ctx, "lb4-2", since); err != nil || !ok {
		t.Errorf("lab.Rerouted lb4-2: %s %v %v, want a reroute", d, ok, err)
	} else {
		t.Logf("lab kill --freeze lb4-2: out of r1's route %s after the freeze (event log)", d.Round(time.Millisecond))
	}
	evs, err = l.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lb42 := addressOn(t, st, "lb4-2", "infra")
	if !slices.ContainsFunc(evs, func(e lab.Event) bool {
		return e.Node == "r1" && e.Kind == lab.EventBFD && e.Time.After(since) &&
			strings.HasPrefix(e.Msg, "session with "+lb42+" down")
	}) {
		t.Errorf("no bfd event on r1 for %s going down after the freeze", lb42)
	}
	if err := l.Revive(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	took = waitStatus(t, l, 30*time.Second, "thawed lb4-2 back in r1's route", func(st *lab.Status) bool { return hops(st) == 2 })
	t.Logf("lab revive (thaw) lb4-2: back in r1's route in %s", took.Round(10*time.Millisecond))

	weight := func(st *lab.Status, lb4, lb7 string) int { return lb7Weight(t, st, lb4, lb7) }
	// Backends, LB7s and hosts share one agent process (the pool): killing
	// one is still a crash as the network sees it. A download from lb7-1
	// off server-1 (10 GB: minutes at the VM's 100 MB/s) breaks when
	// server-1 is killed, though the process that served it lives on: the
	// kernel sends what was queued, then closes the connection, as for a
	// killed process.
	srv1 := addressOn(t, st, "server-1", "servers")
	downloaded := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		code, err := l.Exec(ctx, "lb7-1", []string{"curl", "-sS", "-o", "/dev/null", "http://" + srv1 + "/10G"}, nil, &out, &out)
		if err != nil {
			code = -1
		}
		downloaded <- code
	}()
	testenv.EventuallyEvery(t, 30*time.Second, 500*time.Millisecond, "download from server-1 under way", func() error {
		// HAProxy's own connections to server-1 do not count.
		out, _ := execOut(t, l, "lb7-1", "ss", "-tnpH", "state", "established", "dst", srv1+":80")
		if !strings.Contains(out, `"curl"`) {
			return fmt.Errorf("no connection of curl from lb7-1 to %s:80: %q", srv1, out)
		}
		return nil
	})
	if err := l.Kill(ctx, "server-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-downloaded:
		if code != 18 { // curl: partial file
			t.Errorf("download from the killed server-1 exited %d, want 18 (transfer cut short)", code)
		}
	case <-time.After(60 * time.Second):
		t.Error("a download from the killed server-1 still runs: its connection outlived the crash")
	}
	serversUp := func(st *lab.Status, lb7 string) int {
		n := 0
		for _, s := range tier[node.LB7Status](t, st, lb7).Servers {
			if s.Operational == "UP" {
				n++
			}
		}
		return n
	}
	waitStatus(t, l, 30*time.Second, "killed server-1 down in every LB7", func(st *lab.Status) bool {
		return serversUp(st, "lb7-1") == 1 && serversUp(st, "lb7-2") == 1
	})
	_, servers = curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 6))
	if servers["server-1"] != 0 {
		t.Errorf("the killed server-1 answered: %v", servers)
	}
	if err := l.Revive(ctx, "server-1"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 30*time.Second, "revived server-1 up in every LB7", func(st *lab.Status) bool {
		return serversUp(st, "lb7-1") == 2 && serversUp(st, "lb7-2") == 2
	})

	// An LB7: its HAProxy dies with it, every LB4 takes it out; revived,
	// it comes back with a new HAProxy.
	if err := l.Kill(ctx, "lb7-2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 30*time.Second, "killed lb7-2 out of every LB4", func(st *lab.Status) bool {
		return weight(st, "lb4-1", "192.0.2.133") == 0 && weight(st, "lb4-2", "192.0.2.133") == 0
	})
	lb7s, _ := curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 6))
	if lb7s["lb7-2"] != 0 {
		t.Errorf("the killed lb7-2 answered: %v", lb7s)
	}
	if err := l.Revive(ctx, "lb7-2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 30*time.Second, "revived lb7-2 back in every LB4", func(st *lab.Status) bool {
		return weight(st, "lb4-1", "192.0.2.133") == 1 && weight(st, "lb4-2", "192.0.2.133") == 1
	})
	if err := l.Kill(ctx, "no-such-node"); err == nil {
		t.Error("killing an unknown node was accepted")
	}
}

// TestE2ELinks checks lab impair (netem delay both ways, then removed)
// and lab link (down: no traffic on that leg; up: back).
func TestE2ELinks(t *testing.T) {
	const name = "e2e-links"
	l := up(t, "../topologies/minimal.yaml", name)
	ctx := context.Background()
	rtt := func() (time.Duration, bool) {
		out, code := execOut(t, l, "client1", "ping", "-c3", "-i0.2", "-W2", "-q", "192.0.2.2")
		if code != 0 {
			return 0, false
		}
		// rtt min/avg/max/mdev = 100.2/150.4/200.5/50.1 ms
		var mn float64
		if i := strings.Index(out, "= "); i >= 0 {
			fmt.Sscanf(out[i+2:], "%g", &mn)
		}
		return time.Duration(mn * float64(time.Millisecond)), true
	}
	if err := l.Impair(ctx, "client1", "edge", lab.Impairment{Delay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if d, ok := rtt(); !ok || d < 95*time.Millisecond {
		t.Errorf("with 50ms on both ends of client1's edge link, min RTT %s (ok %v), want >= 100ms", d, ok)
	}
	if err := l.Impair(ctx, "client1", "edge", lab.Impairment{}); err != nil {
		t.Fatal(err)
	}
	if d, ok := rtt(); !ok || d > 50*time.Millisecond {
		t.Errorf("after removing the delay, min RTT %s (ok %v), want < 50ms", d, ok)
	}
	if err := l.SetLink(ctx, "client1", "edge", false); err != nil {
		t.Fatal(err)
	}
	if _, ok := rtt(); ok {
		t.Error("ping crossed a link that is down")
	}
	if err := l.SetLink(ctx, "client1", "edge", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := rtt(); !ok {
		t.Error("ping fails after the link came back up")
	}
	if err := l.SetLink(ctx, "client1", "nowhere", false); err == nil {
		t.Error("a link that does not exist was accepted")
	}
}

// TestE2EReference brings the 37-node reference lab up and sends requests
// to its four VIPs (two Maglev, two source hashing) from 20 of its 200
// client addresses.
func TestE2EReference(t *testing.T) {
	const name = "e2e-reference"
	l := up(t, "../topologies/reference.yaml", name)
	st := status(t, l)
	if len(st.Nodes) != 37 {
		t.Errorf("%d nodes, want 37", len(st.Nodes))
	}
	// Up returns at the first moment every node is ready; in a starved VM
	// late health checks may still flip a few LB7s. Requests are made once
	// the event log has been still for 5s.
	waitQuiet(t, l, 5*time.Second, 3*time.Minute)
	for i, vip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"} {
		srcs := sourceRange("203.0.113", 1+i*50, 5+i*50) // 5 sources per VIP, 20 in all
		lb7s, servers := curlFrom(t, l, "users", "http://"+vip+"/", srcs)
		t.Logf("%s: LB7s %v, backends %v", vip, lb7s, servers)
	}
}

// waitQuiet waits until the lab's event log has not grown for quiet.
func waitQuiet(t *testing.T, l *lab.Lab, quiet, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	n, since := -1, time.Now()
	testenv.EventuallyEvery(t, timeout, 500*time.Millisecond, "event log still for "+quiet.String(), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		evs, err := l.Events(ctx)
		cancel()
		if err == nil && len(evs) != n {
			n, since = len(evs), time.Now()
		}
		if time.Since(since) < quiet {
			return fmt.Errorf("%d events, the last change %s ago", n, time.Since(since).Round(time.Second))
		}
		return nil
	})
	t.Logf("event log still for %s after %s", quiet, time.Since(start).Round(time.Second))
}
