package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

// portRange is the client's local port range in TestE2EPortExhaustion:
// 200 ports, so that one source address runs out of them in seconds at
// the test's rate instead of minutes at the kernel's 28,232.
const portRange = "40000 40199"

// TestE2EPortExhaustion shows the distributed load balancer's warning:
// a client that opens a new connection per request, and closes it first,
// leaves each port in TIME_WAIT for 60 s; from one source address it runs
// out of ports once it has used them all, and every later request fails
// as "exhausted". The same load with keep-alive, or spread over many
// source addresses, runs out of nothing.
func TestE2EPortExhaustion(t *testing.T) {
	const name = "e2e-ports"
	requireE2E(t)
	_ = lab.Down(context.Background(), name, nil)
	l := up(t, "../topologies/minimal.yaml", name)
	ctx := context.Background()

	// The range is the client's own: its network namespace has its copy.
	execOK(t, l, "client1", "sh", "-c", "echo "+portRange+" > /proc/sys/net/ipv4/ip_local_port_range")

	src := func(first, last int) []netip.Addr {
		var out []netip.Addr
		for i := first; i <= last; i++ {
			out = append(out, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
		}
		return out
	}
	run := func(label string, sources []netip.Addr, keepAlive bool) *lab.Report {
		t.Helper()
		ld, err := l.StartLoad(ctx, lab.LoadConfig{
			Mode: lab.LoadRequests, From: "client1", VIPs: []string{"198.51.100.1"},
			Rate: 40, Workers: 4, KeepAlive: keepAlive, Sources: sources, Seed: 5,
		})
		if err != nil {
			t.Fatalf("%s: start load: %v", label, err)
		}
		// 300 requests: 100 more than the ports of one source.
		testenv.EventuallyEvery(t, time.Minute, 500*time.Millisecond, label+": 300 requests done", func() error {
			p, err := ld.Progress(ctx)
			if err != nil {
				return err
			}
			if done := p.OK + p.Broken + p.DNSFailed; done < 300 {
				return fmt.Errorf("%d requests done", done)
			}
			return nil
		})
		rep, err := ld.Stop(ctx)
		if err != nil {
			t.Fatalf("%s: stop load: %v", label, err)
		}
		var b bytes.Buffer
		for _, s := range rep.Requests.Seconds {
			fmt.Fprintf(&b, "  +%s: %d requests, %d exhausted, %d other errors\n", s.Offset, s.Requests,
				s.Errors[lab.OutcomeExhausted], s.Requests-s.OK-s.Errors[lab.OutcomeExhausted])
		}
		t.Logf("%s: %d requests, %d exhausted, %d failed in all\n%s", label, rep.Requests.Requests,
			rep.ByOutcome[lab.OutcomeExhausted], rep.Requests.Errors, b.String())
		return rep
	}

	// One source, new connections: 40 a second use the 200 ports in 5 s.
	one := run("one source, a new connection per request", src(1, 1), false)
	exhausted := one.ByOutcome[lab.OutcomeExhausted]
	if exhausted == 0 {
		t.Errorf("one source: no request ran out of ports in %d (200 ports, TIME_WAIT 60 s)", one.Total)
	}
	// Every port was used once before the first exhaustion.
	ok := 0
	for _, c := range one.Conns {
		if c.Outcome == lab.OutcomeExhausted {
			break
		}
		if c.Outcome == lab.OutcomeOK {
			ok++
		}
	}
	if exhausted > 0 && (ok < 150 || ok > 200) {
		t.Errorf("one source: %d requests succeeded before the first ran out of ports, want about the 200 ports", ok)
	}
	if other := one.Requests.Errors - exhausted; other > 0 {
		t.Errorf("one source: %d errors besides exhaustion: %v", other, one.ByOutcome)
	}

	// Another source (the first's ports are all in TIME_WAIT), keep-alive:
	// a few connections, reused.
	kept := run("one source, keep-alive", src(2, 2), true)
	if n := kept.ByOutcome[lab.OutcomeExhausted]; n > 0 || kept.Requests.Errors > 0 {
		t.Errorf("keep-alive: %d exhausted, %d errors of %d requests, want none", n, kept.Requests.Errors, kept.Total)
	}
	// New connections over 48 sources: 8 ports each.
	many := run("48 sources, a new connection per request", src(3, 50), false)
	if n := many.ByOutcome[lab.OutcomeExhausted]; n > 0 || many.Requests.Errors > 0 {
		t.Errorf("48 sources: %d exhausted, %d errors of %d requests, want none", n, many.Requests.Errors, many.Total)
	}
}
