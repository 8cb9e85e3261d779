package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/cli"
	"github.com/lab-lb/lab/internal/vm/vmtest"
	"github.com/lab-lb/lab/lab"
)

// Benchmarks print the figures of ../shared/docs/targets.md: bring-up time
// of the ready topologies and the request rate through the VIP. Run them
// with `make bench` (each is one full run: -benchtime=1x).

func benchUp(b *testing.B, topo, name string, mode lab.VMMode) {
	requireE2E(b)
	for b.Loop() {
		_ = lab.Down(context.Background(), name, nil)
		start := time.Now()
		l, err := lab.Up(context.Background(), topo, lab.Options{Name: name, VM: mode})
		if err != nil {
			b.Fatalf("up %s: %v", topo, err)
		}
		up := time.Since(start)
		b.Cleanup(func() { _ = lab.Down(context.Background(), name, nil) })
		client, url := firstClient(b, l)
		res, err := l.Get(context.Background(), client, url, "", 10*time.Second)
		if err != nil || res.Error != "" || res.Status != 200 {
			b.Fatalf("first request: %v %+v", err, res)
		}
		first := time.Since(start)
		b.ReportMetric(up.Seconds(), "s/up")
		b.ReportMetric(first.Seconds(), "s/first-answer")
		b.Logf("%s (%s mode): up %.1fs, first answer through the VIP after %.1fs", topo, l.Mode, up.Seconds(), first.Seconds())
		if err := l.Down(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// firstClient returns the lab's first client node and the URL of its
// first VIP.
func firstClient(b *testing.B, l *lab.Lab) (string, string) {
	t, err := l.Topology()
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + netip.AddrPortFrom(t.VIPs[0].Address, t.VIPs[0].Port).String() + "/"
	for _, n := range t.Nodes {
		if n.Role == "client" {
			return n.Name, url
		}
	}
	b.Fatal("no client")
	return "", ""
}

func BenchmarkUpMinimal(b *testing.B) {
	benchUp(b, "../topologies/minimal.yaml", "bench-minimal", lab.VMAuto)
}
func BenchmarkUpReference(b *testing.B) {
	benchUp(b, "../topologies/reference.yaml", "bench-reference", lab.VMAuto)
}

// The same bring-ups natively, in a user-mode Linux guest that plays a
// stock host (as TestE2ENative): the figures are the guest's, beside the
// VM mode's above on the same machine. The first one loads the modules.
func BenchmarkUpNative(b *testing.B) {
	requireE2E(b)
	if !vmtest.InStockHost() {
		vmtest.Run(b, "^BenchmarkUpNative$", vmtest.StockHost(), vmtest.Bench(), vmtest.Memory("2G"), vmtest.Timeout(15*time.Minute))
		return
	}
	b.Run("minimal", func(b *testing.B) { benchUp(b, "../topologies/minimal.yaml", "bench-minimal", lab.VMNever) })
	b.Run("reference", func(b *testing.B) { benchUp(b, "../topologies/reference.yaml", "bench-reference", lab.VMNever) })
}

// BenchmarkRequestRate compares, in one run on the minimal topology, the
// rate of new connections a client gets through the VIP (router ECMP, IPVS
// Maglev, IPIP, HAProxy, backend, direct return) with the same client
// hitting one LB7's HAProxy directly, and an LB7 hitting a backend.
func BenchmarkRequestRate(b *testing.B) {
	requireE2E(b)
	const name = "bench-rate"
	_ = lab.Down(context.Background(), name, nil)
	l, err := lab.Up(context.Background(), "../topologies/minimal.yaml", lab.Options{Name: name})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Down(context.Background()) })
	var sources []netip.Addr
	for i := 1; i <= 50; i++ {
		sources = append(sources, netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", i)))
	}
	const n, c = 2000, 16
	for b.Loop() {
		run := func(what, from, addr string, srcs []netip.Addr) float64 {
			res, err := l.Bench(context.Background(), from, netip.MustParseAddrPort(addr), n, c, srcs)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors > 0 {
				b.Errorf("%s: %d of %d requests failed: %s", what, res.Errors, res.Requests, res.FirstErr)
			}
			b.Logf("%-34s %7.0f requests/s (%d requests, %d at a time, %.1fs)", what, res.PerSec, res.Requests, c, res.Elapsed.Seconds())
			return res.PerSec
		}
		vip := run("client1 -> VIP (all tiers)", "client1", "198.51.100.1:80", sources)
		lb7 := run("client1 -> lb7-1 HAProxy directly", "client1", "192.0.2.132:80", sources)
		srv := run("lb7-1 -> server-1 directly", "lb7-1", "192.0.2.67:80", nil)
		b.ReportMetric(vip, "req/s-vip")
		b.ReportMetric(lb7, "req/s-lb7")
		b.ReportMetric(srv, "req/s-backend")
		b.ReportMetric(vip/lb7, "vip/lb7-ratio")
	}
}

// BenchmarkCPU says where the lab kernel's CPU goes (in VM mode, the VM's
// one CPU) for the reference lab: during its bring-up (since boot: each
// process still running since it started, the rest as "other") and at
// rest once converged (over 20 s), by kind of process, as `lab cpu`
// prints it.
func BenchmarkCPU(b *testing.B) {
	requireE2E(b)
	const name = "bench-cpu"
	for b.Loop() {
		_ = lab.Down(context.Background(), name, nil)
		start := time.Now()
		l, err := lab.Up(context.Background(), "../topologies/reference.yaml", lab.Options{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		up := time.Since(start)
		b.Cleanup(func() { _ = lab.Down(context.Background(), name, nil) })
		ctx := context.Background()
		boot, err := l.CPU(ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		var text bytes.Buffer
		cli.PrintCPU(&text, boot)
		b.Logf("reference lab up in %.1fs (%s mode); where the CPU went since boot:\n%s", up.Seconds(), l.Mode, text.String())
		rest, err := l.CPU(ctx, 20*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		text.Reset()
		cli.PrintCPU(&text, rest)
		b.Logf("at rest:\n%s", text.String())
		b.ReportMetric(up.Seconds(), "s/up")
		b.ReportMetric(100*(1-rest.Busy), "%idle-at-rest")
		if err := l.Down(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// benchUpRepeated brings a topology up and down b.N times (make bench
// runs it with -benchtime 20x for the minimal lab, 5x for the reference
// one) and reports the slowest bring-up: every one must converge in
// bounded time, with no BGP session left cycling.
func benchUpRepeated(b *testing.B, topo, name string) {
	requireE2E(b)
	var slowest, total time.Duration
	runs := 0
	for b.Loop() {
		_ = lab.Down(context.Background(), name, nil)
		start := time.Now()
		l, err := lab.Up(context.Background(), topo, lab.Options{Name: name})
		if err != nil {
			b.Fatalf("up %s, run %d: %v", topo, runs+1, err)
		}
		up := time.Since(start)
		runs++
		total += up
		slowest = max(slowest, up)
		b.Logf("run %d: up in %.1fs", runs, up.Seconds())
		if err := l.Down(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(slowest.Seconds(), "s/slowest-up")
	b.ReportMetric(total.Seconds()/float64(runs), "s/mean-up")
}

func BenchmarkUpRepeatedMinimal(b *testing.B) {
	benchUpRepeated(b, "../topologies/minimal.yaml", "bench-repeat")
}

func BenchmarkUpRepeatedReference(b *testing.B) {
	benchUpRepeated(b, "../topologies/reference.yaml", "bench-repeat-ref")
}
