package lab_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

// BenchmarkFailover measures, on the minimal lab, how fast each tier
// reacts to each failure, from the lab's event log (one clock, the
// lab's; not the status polling of a test):
//
//   - /etc/lb/disable on lb4-2 until r1's route drops its next hop;
//   - agent-check down on lb7-2 until every LB4 gives it weight 0;
//   - under load, lb4-2 crashed (lab kill), frozen (lab kill --freeze)
//     and cut off by a dark link (lab link lb4-2 infra down): until every
//     router's route drops it, and until every request succeeds again
//     (the last failure of a connection, 0 when none broke); see
//     lb4Failures.
//
// Run with make bench; one run is one measurement of each.
func BenchmarkFailover(b *testing.B) {
	l := benchLab(b, "../topologies/minimal.yaml", "bench-failover")
	ctx := context.Background()
	vip := netip.MustParsePrefix("198.51.100.1/32")
	routeHops := func(e lab.Event) int {
		if e.Node != "r1" || e.Route == nil || e.Route.Prefix != vip {
			return -1
		}
		return len(e.Route.NextHops)
	}
	for b.Loop() {
		// Graceful withdraw.
		t0 := mark(b, l)
		must(b, l.Maint(ctx, "lb4-2", true))
		d := reaction(b, l, t0, func(e lab.Event) bool { return e.Node == "lb4-2" && e.Kind == "maintenance" },
			func(e lab.Event) bool { return routeHops(e) == 1 }, 1)
		b.ReportMetric(d.Seconds(), "s/disable-to-withdrawn")
		must(b, l.Maint(ctx, "lb4-2", false))
		reaction(b, l, t0, func(e lab.Event) bool { return e.Node == "lb4-2" && e.Kind == "maintenance" },
			func(e lab.Event) bool { return routeHops(e) == 2 }, 1)

		// LB7 out of every LB4.
		t0 = mark(b, l)
		must(b, l.Maint(ctx, "lb7-2", true))
		d = reaction(b, l, t0, func(e lab.Event) bool { return e.Node == "lb7-2" && e.Kind == "maintenance" },
			func(e lab.Event) bool {
				return e.Kind == "ipvs" && strings.Contains(e.Msg, "192.0.2.133 weight 0")
			}, 2)
		b.ReportMetric(d.Seconds(), "s/agent-down-to-weight0")
		must(b, l.Maint(ctx, "lb7-2", false))
		reaction(b, l, t0, func(e lab.Event) bool { return e.Node == "lb7-2" && e.Kind == "maintenance" },
			func(e lab.Event) bool { return e.Kind == "ipvs" && strings.Contains(e.Msg, "192.0.2.133 weight 1") }, 2)

		lb4Failures(b, l, "lb4-2", 40)
	}
}

// BenchmarkFailoverReference measures the LB4 failures of
// BenchmarkFailover on the reference lab: two routers, route reflectors,
// seven LB4s, under 96 workers (make claims' load).
func BenchmarkFailoverReference(b *testing.B) {
	l := benchLab(b, "../topologies/reference.yaml", "bench-failover-ref")
	for b.Loop() {
		lb4Failures(b, l, "lb4-2", 96)
	}
}

// lb4Failures crashes, freezes and cuts off (dark link) lb4 in turn, each
// under a load of workers, and reports for each how long until every
// router had dropped it (from the lab's event log), how many connections
// broke and when the last one failed; then it restores lb4 and waits
// until every router routes through it again.
func lb4Failures(b *testing.B, l *lab.Lab, lb4 string, workers int) {
	ctx := context.Background()
	type failure struct {
		name            string
		inject, restore func() error
	}
	for _, f := range []failure{
		{"kill", func() error { return l.Kill(ctx, lb4) }, func() error { return l.Revive(ctx, lb4) }},
		{"freeze", func() error { return l.Freeze(ctx, lb4) }, func() error { return l.Revive(ctx, lb4) }},
		{"link-dark", func() error { return l.SetLink(ctx, lb4, "infra", false) }, func() error { return l.SetLink(ctx, lb4, "infra", true) }},
	} {
		ld, err := l.StartLoad(ctx, lab.LoadConfig{Workers: workers})
		must(b, err)
		waitStarted(b, ld, 100)
		since := time.Now()
		must(b, f.inject())
		var d time.Duration
		testenv.EventuallyEvery(b, time.Minute, 200*time.Millisecond, lb4+" out of every router's routes", func() error {
			var ok bool
			if d, ok, err = l.Rerouted(ctx, lb4, since); err != nil || !ok {
				return fmt.Errorf("not yet (%v)", err)
			}
			return nil
		})
		b.ReportMetric(d.Seconds(), "s/"+f.name+"-to-out-of-route")
		p, err := ld.Progress(ctx)
		must(b, err)
		waitStarted(b, ld, p.Started+300)
		rep, err := ld.Stop(ctx)
		must(b, err)
		at := injectTime(b, l, since.Add(-time.Second))
		b.ReportMetric(lastFailure(rep, at).Seconds(), "s/"+f.name+"-to-all-requests-ok")
		b.ReportMetric(float64(rep.Broken), "broken/"+f.name)
		b.Logf("%s %s under load: out of every route in %s; %d connections, %d broken (%s), %d interrupted",
			f.name, lb4, d.Round(time.Millisecond), rep.Total, rep.Broken, brokenByScheduler(b, l, rep), rep.Interrupted)
		must(b, f.restore())
		waitAllLB4s(b, l)
	}
}

// waitAllLB4s waits until every router routes every VIP through every
// LB4.
func waitAllLB4s(b *testing.B, l *lab.Lab) {
	b.Helper()
	testenv.EventuallyEvery(b, 3*time.Minute, time.Second, "every LB4 back in every route", func() error {
		st, err := l.Readiness(context.Background())
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if !n.Agent.Ready {
				return fmt.Errorf("%s: %s", n.Name, n.Agent.Waiting)
			}
		}
		return nil
	})
}

func benchLab(b *testing.B, topo, name string) *lab.Lab {
	b.Helper()
	requireE2E(b)
	_ = lab.Down(context.Background(), name, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, topo, lab.Options{Name: name})
	must(b, err)
	b.Cleanup(func() { _ = lab.Down(context.Background(), name, nil) })
	return l
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// mark returns the time of the lab's latest event: what follows is the
// reaction to the next change. (Times, not counts: a killed node's events
// leave the log with its agent.)
func mark(b *testing.B, l *lab.Lab) time.Time {
	b.Helper()
	evs, err := l.Events(context.Background())
	must(b, err)
	if len(evs) == 0 {
		return time.Time{}
	}
	return evs[len(evs)-1].Time
}

// reaction waits until, among the events after mark, the
// first matching cause is followed by n events matching effect, and
// returns the time from the cause to the last of them.
func reaction(b *testing.B, l *lab.Lab, mark time.Time, cause, effect func(lab.Event) bool, n int) time.Duration {
	b.Helper()
	var d time.Duration
	testenv.EventuallyEvery(b, time.Minute, 100*time.Millisecond, "reaction", func() error {
		evs, err := l.Events(context.Background())
		if err != nil {
			return err
		}
		var t0 time.Time
		got := 0
		for _, e := range evs {
			if !e.Time.After(mark) {
				continue
			}
			switch {
			case t0.IsZero() && cause(e):
				t0 = e.Time
			case !t0.IsZero() && effect(e):
				got++
				if got == n {
					d = e.Time.Sub(t0)
					return nil
				}
			}
		}
		return fmt.Errorf("cause seen: %v, %d of %d effects", !t0.IsZero(), got, n)
	})
	return d
}

// injectTime is the time of the first injection event after mark.
func injectTime(b *testing.B, l *lab.Lab, mark time.Time) time.Time {
	evs, err := l.Events(context.Background())
	must(b, err)
	for _, e := range evs {
		if e.Kind == lab.EventInject && e.Time.After(mark) {
			return e.Time
		}
	}
	b.Fatal("no injection event")
	return time.Time{}
}

// lastFailure is how long after at connections kept failing: the latest
// failure moment (end of a broken connection, or when its data stopped
// for a timeout) minus at; 0 when none broke after at.
func lastFailure(rep *lab.Report, at time.Time) time.Duration {
	var last time.Duration
	for _, c := range rep.Conns {
		if c.Outcome == lab.OutcomeOK || c.End.Before(at) {
			continue
		}
		moment := c.End
		if c.Outcome == lab.OutcomeTimeout {
			moment = c.End.Add(-rep.ReadTimeout)
		}
		if d := moment.Sub(at); d > last {
			last = d
		}
	}
	return last
}

func waitStarted(b *testing.B, ld *lab.Load, n int) {
	b.Helper()
	testenv.EventuallyEvery(b, 2*time.Minute, 200*time.Millisecond, fmt.Sprintf("%d connections started", n), func() error {
		p, err := ld.Progress(context.Background())
		if err != nil {
			return err
		}
		if p.Started < n {
			return fmt.Errorf("%d started", p.Started)
		}
		return nil
	})
}

// brokenByScheduler says how many of rep's connections broke, and of how
// many, per IPVS scheduler of their VIP: "mh 0/160, sh 2/150".
func brokenByScheduler(b *testing.B, l *lab.Lab, rep *lab.Report) string {
	b.Helper()
	topo, err := l.Topology()
	must(b, err)
	sched := map[netip.AddrPort]string{}
	for _, v := range topo.VIPs {
		sched[netip.AddrPortFrom(v.Address, v.Port)] = v.Scheduler
	}
	total, broken := map[string]int{}, map[string]int{}
	for _, c := range rep.Conns {
		s := sched[c.Target]
		total[s]++
		if c.Outcome.Broken() {
			broken[s]++
		}
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(total)) {
		parts = append(parts, fmt.Sprintf("%s %d/%d", s, broken[s], total[s]))
	}
	return strings.Join(parts, ", ")
}
