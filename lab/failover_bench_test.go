package lab_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/traffic"
	"github.com/lab-lb/lab/lab"
)

// BenchmarkFailover measures, on the minimal lab, how fast each tier
// reacts to each failure, from the lab's event log (one clock, the
// lab's; not the status polling of a test):
//
//   - /etc/lb/disable on lb4-2 until r1's route drops its next hop;
//   - agent-check down on lb7-2 until every LB4 gives it weight 0;
//   - lab kill lb4-2 (crash) and lab kill --freeze lb4-2 (silent) until
//     r1's route drops it, and, under load, until every request succeeds
//     again (the last failure of a connection, 0 when none broke).
//
// Run with make bench; one run is one measurement of each.
func BenchmarkFailover(b *testing.B) {
	l := benchLab(b, "../topologies/minimal.yaml", "bench-failover")
	ctx := context.Background()
	const vip = "198.51.100.1/32"
	routeHops := func(e control.Event) int {
		if e.Node != "r1" || e.Kind != "route" || !strings.HasPrefix(e.Msg, vip+" via [") {
			return -1
		}
		return len(strings.Fields(strings.TrimSuffix(strings.TrimPrefix(e.Msg, vip+" via ["), "]")))
	}
	for b.Loop() {
		// Graceful withdraw.
		t0 := mark(b, l)
		must(b, l.Maint(ctx, "lb4-2", true))
		d := reaction(b, l, t0, func(e control.Event) bool { return e.Node == "lb4-2" && e.Kind == "maintenance" },
			func(e control.Event) bool { return routeHops(e) == 1 }, 1)
		b.ReportMetric(d.Seconds(), "s/disable-to-withdrawn")
		must(b, l.Maint(ctx, "lb4-2", false))
		reaction(b, l, t0, func(e control.Event) bool { return e.Node == "lb4-2" && e.Kind == "maintenance" },
			func(e control.Event) bool { return routeHops(e) == 2 }, 1)

		// LB7 out of every LB4.
		t0 = mark(b, l)
		must(b, l.Maint(ctx, "lb7-2", true))
		d = reaction(b, l, t0, func(e control.Event) bool { return e.Node == "lb7-2" && e.Kind == "maintenance" },
			func(e control.Event) bool {
				return e.Kind == "ipvs" && strings.Contains(e.Msg, "192.0.2.133 weight 0")
			}, 2)
		b.ReportMetric(d.Seconds(), "s/agent-down-to-weight0")
		must(b, l.Maint(ctx, "lb7-2", false))
		reaction(b, l, t0, func(e control.Event) bool { return e.Node == "lb7-2" && e.Kind == "maintenance" },
			func(e control.Event) bool { return e.Kind == "ipvs" && strings.Contains(e.Msg, "192.0.2.133 weight 1") }, 2)

		// Crash and freeze under load.
		for _, freeze := range []bool{false, true} {
			what := map[bool]string{false: "kill", true: "freeze"}[freeze]
			ld, err := l.StartLoad(ctx, lab.LoadConfig{Workers: 40})
			must(b, err)
			waitStarted(b, ld, 100)
			t0 = mark(b, l)
			if freeze {
				must(b, l.Freeze(ctx, "lb4-2"))
			} else {
				must(b, l.Kill(ctx, "lb4-2"))
			}
			d = reaction(b, l, t0, func(e control.Event) bool { return e.Node == "lb4-2" && e.Kind == "inject" },
				func(e control.Event) bool { return routeHops(e) == 1 }, 1)
			b.ReportMetric(d.Seconds(), "s/"+what+"-to-out-of-route")
			waitStarted(b, ld, 400)
			rep, err := ld.Stop(ctx)
			must(b, err)
			at := injectTime(b, l, t0)
			b.ReportMetric(lastFailure(rep, at).Seconds(), "s/"+what+"-to-all-requests-ok")
			b.ReportMetric(float64(rep.Broken), "broken/"+what)
			b.Logf("%s lb4-2 under load: %d connections, %d broken, %d interrupted", what, rep.Total, rep.Broken, rep.Interrupted)
			must(b, l.Revive(ctx, "lb4-2"))
			reaction(b, l, t0, func(e control.Event) bool { return e.Node == "lb4-2" && e.Kind == "inject" },
				func(e control.Event) bool { return routeHops(e) == 2 }, 1)
		}
	}
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
func reaction(b *testing.B, l *lab.Lab, mark time.Time, cause, effect func(control.Event) bool, n int) time.Duration {
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
		if e.Kind == "inject" && e.Time.After(mark) {
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
		if c.Outcome == traffic.OutcomeOK || c.End.Before(at) {
			continue
		}
		moment := c.End
		if c.Outcome == traffic.OutcomeTimeout {
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
