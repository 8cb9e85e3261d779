package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/lab"
)

// tier decodes a node's tier status from `lab status`.
func tier[T any](t *testing.T, st *control.Status, name string) T {
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

// TestE2EDataPath checks the three tiers on the minimal topology: the
// router's ECMP route has one next hop per LB4, every LB4 holds the same
// Maglev service with IPIP destinations in the same order, requests from
// 50 source addresses reach every LB7 and every backend, and the answers
// bypass the LB4s (direct return: IPVS counts no outgoing packets).
func TestE2EDataPath(t *testing.T) {
	requireE2E(t)
	const name = "e2e-datapath"
	_ = lab.Down(context.Background(), name, nil)
	l := up(t, "../topologies/minimal.yaml", name)

	// lab curl's default: the first VIP, answered with a backend's name.
	res, err := l.Get(context.Background(), "client1", "http://198.51.100.1/", "", 10*time.Second)
	if err != nil || res.Error != "" || res.Status != 200 {
		t.Fatalf("GET the VIP from client1: %v %+v", err, res)
	}
	if body := strings.TrimSpace(res.Body); body != "server-1" && body != "server-2" {
		t.Errorf("the VIP answered %q, want a backend's name", res.Body)
	}

	lb7s, servers := curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 50))
	t.Logf("50 sources: LB7s %v, backends %v", lb7s, servers)
	for _, want := range []string{"lb7-1", "lb7-2"} {
		if lb7s[want] == 0 {
			t.Errorf("no request went through %s: %v", want, lb7s)
		}
	}
	for _, want := range []string{"server-1", "server-2"} {
		if servers[want] == 0 {
			t.Errorf("no request reached %s: %v", want, servers)
		}
	}

	st := status(t, l)
	// Tier 1: one route per VIP, one next hop per LB4, in the kernel.
	rs := tier[node.RouterStatus](t, st, "r1")
	want := []netip.Addr{netip.MustParseAddr("192.0.2.130"), netip.MustParseAddr("192.0.2.131")}
	if got := rs.Routes["198.51.100.1/32"]; !slices.Equal(got, want) {
		t.Errorf("r1 routes 198.51.100.1/32 via %v, want %v", got, want)
	}
	out, code := execOut(t, l, "r1", "ip", "route", "show", "198.51.100.1")
	if code != 0 || strings.Count(out, "nexthop via") != 2 {
		t.Errorf("r1's kernel route to the VIP is not a 2-way multipath route:\n%s", out)
	}

	// Tier 2: the same service and destination order on both LB4s,
	// tunnel forwarding, and no packet out through IPVS (direct return).
	var order [][]string
	var in uint32
	for _, lb4 := range []string{"lb4-1", "lb4-2"} {
		s := tier[node.LB4Status](t, st, lb4)
		if !s.Announced || len(s.Services) != 1 {
			t.Fatalf("%s: announced %v, %d services", lb4, s.Announced, len(s.Services))
		}
		svc := s.Services[0]
		if svc.Service.Scheduler != "mh" {
			t.Errorf("%s schedules with %q, want mh", lb4, svc.Service.Scheduler)
		}
		var dests []string
		for _, d := range svc.Destinations {
			dests = append(dests, fmt.Sprintf("%s w%d", d.Address, d.Weight))
		}
		order = append(order, dests)
		if svc.Stats.PacketsOut != 0 {
			t.Errorf("%s: IPVS sent %d packets out: replies did not bypass it", lb4, svc.Stats.PacketsOut)
		}
		in += svc.Stats.PacketsIn
		out, _ := execOut(t, l, lb4, "ipvsadm", "-Ln")
		if strings.Count(out, "Tunnel") != 2 || !strings.Contains(out, "mh") {
			t.Errorf("%s: ipvsadm -Ln does not show an mh service with 2 tunnel destinations:\n%s", lb4, out)
		}
	}
	if !slices.Equal(order[0], order[1]) || len(order[0]) != 2 {
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
}

// TestE2EReference brings the 37-node reference lab up and sends requests
// to its four VIPs (two Maglev, two source hashing) from 20 of its 200
// client addresses.
func TestE2EReference(t *testing.T) {
	requireE2E(t)
	const name = "e2e-reference"
	_ = lab.Down(context.Background(), name, nil)
	l := up(t, "../topologies/reference.yaml", name)
	st := status(t, l)
	if len(st.Nodes) != 37 {
		t.Errorf("%d nodes, want 37", len(st.Nodes))
	}
	for i, vip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"} {
		srcs := sourceRange("203.0.113", 1+i*50, 5+i*50) // 5 sources per VIP, 20 in all
		lb7s, servers := curlFrom(t, l, "users", "http://"+vip+"/", srcs)
		t.Logf("%s: LB7s %v, backends %v", vip, lb7s, servers)
	}
}
