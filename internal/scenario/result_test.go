package scenario

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/traffic"
)

// sampleResult is a 15-second run over two VIPs: kill at 5 s, revive at
// 10 s, read timeout 3 s. The comment on each connection gives its failure
// moment when it broke.
func sampleResult() *Result {
	const (
		ok      = traffic.OutcomeOK
		reset   = traffic.OutcomeReset
		timeout = traffic.OutcomeTimeout
	)
	conns := []traffic.Conn{
		conn(1, vipWWW, 0, 4000, "lb7-1", ok),
		conn(2, vipWWW, 1000, 6000, "lb7-2", reset),   // 6.0 s
		conn(3, vipWWW, 2000, 9000, "lb7-1", timeout), // 6.0 s
		conn(4, vipAPI, 3000, 7500, "lb7-2", reset),   // 7.5 s
		interrupted(conn(5, vipAPI, 4000, 12000, "lb7-1", ok)),
		conn(6, vipWWW, 8000, 9500, "lb7-1", ok),
		conn(7, vipWWW, 11000, 12500, "lb7-2", reset), // 12.5 s
		conn(8, vipAPI, 4500, 4800, "lb7-1", timeout), // 4.5 s (its start)
		conn(9, vipAPI, 9000, 14000, "", timeout),     // 11.0 s
		conn(10, vipWWW, 12000, 15000, "lb7-1", ok),
	}
	conns[9].Stopped = true
	step := func(kind Kind, label string, at int) StepResult {
		return StepResult{Step: Step{Kind: kind, Label: label}, Ran: true, At: ms(at)}
	}
	return &Result{
		Name:  "sample",
		Start: t0,
		End:   t0.Add(15 * time.Second),
		VIPs:  []VIP{vipWWW, vipAPI},
		Steps: []StepResult{
			step(KindLoadStart, "load start", 0),
			step(KindSleep, "sleep 5s", 0),
			step(KindKill, "kill lb4-2", 5000),
			step(KindSleep, "sleep 5s", 5000),
			step(KindRevive, "revive lb4-2", 10000),
			{Step: Step{Kind: KindWait, Label: "wait converged"}},
			step(KindLoadStop, "load stop", 15000),
		},
		Report: &traffic.Report{Start: t0, End: t0.Add(15 * time.Second), ReadTimeout: 3 * time.Second,
			StallThreshold: time.Second, Conns: conns},
	}
}

// TestFailovers checks the failover of each injection step: failures
// after the next injection belong to that one.
func TestFailovers(t *testing.T) {
	r := sampleResult()
	r.evaluate(nil)
	want := []Failover{
		{Step: "kill lb4-2", At: ms(5000), Failover: ms(2500), Broken: 3, ByVIP: []VIPFailover{
			{VIP: "www", Failover: ms(1000), Broken: 2},
			{VIP: "api", Failover: ms(2500), Broken: 1},
		}},
		{Step: "revive lb4-2", At: ms(10000), Failover: ms(2500), Broken: 2, ByVIP: []VIPFailover{
			{VIP: "www", Failover: ms(2500), Broken: 1},
			{VIP: "api", Failover: ms(1000), Broken: 1},
		}},
	}
	if diff := cmp.Diff(r.Failovers, want); diff != "" {
		t.Errorf("failovers (-got +want):\n%s", diff)
	}
}

// TestAssertions checks scoping and measures against hand-computed
// figures.
func TestAssertions(t *testing.T) {
	cases := []struct {
		name   string
		a      Assertion
		conns  int
		value  float64
		passed bool
		note   string
	}{
		{name: "every connection", a: Assertion{Metric: MetricBroken},
			conns: 10, value: 6},
		{name: "one vip", a: Assertion{Metric: MetricBroken, Limit: 3, Scope: Scope{VIP: "www"}},
			conns: 6, value: 3, passed: true},
		{name: "one scheduler", a: Assertion{Metric: MetricBroken, Limit: 3, Scope: Scope{Scheduler: "wlc"}},
			conns: 4, value: 3, passed: true},
		{name: "ended at or after a step", a: Assertion{Metric: MetricBroken, Scope: Scope{After: "kill lb4-2"}},
			conns: 8, value: 5},
		{name: "settled after a step", a: Assertion{Metric: MetricBroken, Scope: Scope{After: "kill lb4-2", Settled: 2 * time.Second}},
			conns: 4, value: 2},
		{name: "between two steps", a: Assertion{Metric: MetricBroken, Scope: Scope{After: "kill lb4-2", Before: "revive lb4-2"}},
			conns: 5, value: 3}, // 9 failed after the revive
		{name: "before a step, without what it broke", a: Assertion{Metric: MetricBroken, Limit: 1, Scope: Scope{Before: "kill lb4-2"}},
			conns: 3, value: 1, passed: true}, // 1, 5 and 8; 2, 3 and 4 failed after the kill
		{name: "ratio except an lb7", a: Assertion{Metric: MetricBrokenRatio, Limit: 0.01, Scope: Scope{After: "kill lb4-2", ExceptLB7: "lb7-2"}},
			conns: 5, value: 0.4},
		{name: "ratio within its limit", a: Assertion{Metric: MetricBrokenRatio, Limit: 0.6, Scope: Scope{VIP: "www"}},
			conns: 6, value: 0.5, passed: true},
		{name: "failover", a: Assertion{Metric: MetricFailover, Limit: float64(time.Second), Scope: Scope{After: "kill lb4-2"}},
			conns: 8, value: float64(7500 * time.Millisecond)},
		{name: "failover before the next step", a: Assertion{Metric: MetricFailover, Limit: float64(6 * time.Second),
			Scope: Scope{VIP: "api", After: "kill lb4-2", Before: "revive lb4-2"}},
			conns: 2, value: float64(2500 * time.Millisecond), passed: true},
		{name: "failover of a timeout counts from when data stopped", a: Assertion{Metric: MetricFailover,
			Limit: float64(time.Second), Scope: Scope{VIP: "www", After: "kill lb4-2", Before: "revive lb4-2"}},
			conns: 3, value: float64(time.Second), passed: true},
		{name: "interrupted", a: Assertion{Metric: MetricInterrupted, Limit: 1, Scope: Scope{VIP: "api"}},
			conns: 4, value: 1, passed: true},
		{name: "interrupted over the limit", a: Assertion{Metric: MetricInterrupted, Scope: Scope{After: "kill lb4-2"}},
			conns: 8, value: 1},
		{name: "empty scope fails", a: Assertion{Metric: MetricBroken, Scope: Scope{After: "revive lb4-2", Settled: 5 * time.Second}},
			note: "no connection in scope"},
		{name: "step that did not run", a: Assertion{Metric: MetricBroken, Scope: Scope{After: "wait converged"}},
			note: `step "wait converged" did not run`},
		{name: "vip the lab lacks", a: Assertion{Metric: MetricBroken, Scope: Scope{VIP: "db"}},
			note: "the lab has no vip db"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleResult()
			r.evaluate([]Assertion{tc.a})
			got := r.Assertions[0]
			want := AssertionResult{Assertion: tc.a, Conns: tc.conns, Measured: tc.value, Passed: tc.passed, Note: tc.note}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestFailoverOfTimeout checks the failure moment of timeouts: the end
// minus the read timeout, never before the start.
func TestFailoverOfTimeout(t *testing.T) {
	cases := []struct {
		name string
		c    traffic.Conn
		want time.Time
	}{
		{name: "reset", c: conn(1, vipWWW, 0, 5000, "", traffic.OutcomeReset), want: t0.Add(ms(5000))},
		{name: "timeout", c: conn(1, vipWWW, 0, 5000, "", traffic.OutcomeTimeout), want: t0.Add(ms(2000))},
		{name: "short timeout", c: conn(1, vipWWW, 1000, 3000, "", traffic.OutcomeTimeout), want: t0.Add(ms(1000))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := failureMoment(tc.c, 3*time.Second); !got.Equal(tc.want) {
				t.Errorf("failureMoment = %s, want %s", got.Sub(t0), tc.want.Sub(t0))
			}
		})
	}
}

func TestTotals(t *testing.T) {
	r := sampleResult()
	r.Report.Conns = append(r.Report.Conns, traffic.Conn{Target: netip.MustParseAddrPort("192.0.2.9:80"), Outcome: traffic.OutcomeOK})
	want := []Totals{
		{VIP: "www", Scheduler: "mh", Started: 6, OK: 3, Broken: 3},
		{VIP: "api", Scheduler: "wlc", Started: 4, OK: 1, Broken: 3, Interrupted: 1},
		{VIP: "other", Started: 1, OK: 1},
		{VIP: "total", Started: 11, OK: 5, Broken: 6, Interrupted: 1},
	}
	if diff := cmp.Diff(r.Totals(), want); diff != "" {
		t.Errorf("Totals (-got +want):\n%s", diff)
	}
}

func TestPassed(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Result)
		want   bool
	}{
		{name: "all well", change: func(r *Result) { r.Steps = r.Steps[:5] }, want: true},
		{name: "a step did not run", change: func(*Result) {}},
		{name: "an error", change: func(r *Result) { r.Steps = r.Steps[:5]; r.Err = context.Canceled }},
		{name: "an assertion failed", change: func(r *Result) {
			r.Steps = r.Steps[:5]
			r.Assertions = []AssertionResult{{Passed: true}, {}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleResult()
			tc.change(r)
			if got := r.Passed(); got != tc.want {
				t.Errorf("Passed = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExceptLB7Refused: with except-lb7, a connection refused at connect
// (no LB7 known: the dead LB7's kernel refused it) is that LB7's share,
// while other broken connections without an LB7 still count.
func TestExceptLB7Refused(t *testing.T) {
	r := sampleResult()
	r.Report.Conns = append(r.Report.Conns,
		conn(11, vipWWW, 6000, 6000, "", traffic.OutcomeRefused),
		conn(12, vipWWW, 6000, 6100, "", traffic.OutcomeReset),
	)
	r.evaluate([]Assertion{{Metric: MetricBroken, Limit: 4, Scope: Scope{ExceptLB7: "lb7-2"}}})
	// Of the sample's 10, lb7-2 served 2, 4 and 7; 3, 8 and 9 broke. Then
	// 11 is left out and 12 counts.
	if got := r.Assertions[0]; got.Conns != 8 || got.Measured != 4 || !got.Passed {
		t.Errorf("got %d connections, %v broken, passed %v; want 8, 4, true", got.Conns, got.Measured, got.Passed)
	}
}

// TestScopeDualStack scopes connections to a VIP name that has a VIP of
// each family: the name covers both, the label one.
func TestScopeDualStack(t *testing.T) {
	www4 := VIP{Name: "www/v4", Service: "www", Target: netip.MustParseAddrPort("198.51.100.1:80"), Scheduler: "mh"}
	www6 := VIP{Name: "www/v6", Service: "www", Target: netip.MustParseAddrPort("[2001:db8:100::1]:80"), Scheduler: "mh"}
	r := &Result{
		Name: "dual", Start: t0, End: t0.Add(5 * time.Second), VIPs: []VIP{www4, www6},
		Report: &traffic.Report{Start: t0, End: t0.Add(5 * time.Second), Conns: []traffic.Conn{
			conn(1, www4, 0, 1000, "lb7-1", traffic.OutcomeOK),
			conn(2, www6, 0, 1000, "lb7-1", traffic.OutcomeReset),
			conn(3, www6, 1000, 2000, "lb7-2", traffic.OutcomeOK),
		}},
	}
	for _, tc := range []struct {
		vip           string
		conns, broken int
	}{{"www", 3, 1}, {"www/v4", 1, 0}, {"www/v6", 2, 1}} {
		r.evaluate([]Assertion{{Metric: MetricBroken, Limit: 5, Scope: Scope{VIP: tc.vip}}})
		if got := r.Assertions[0]; got.Conns != tc.conns || got.Measured != float64(tc.broken) || !got.Passed {
			t.Errorf("vip %s: %d connections, %v broken, passed %v; want %d, %d, true (%s)", tc.vip, got.Conns, got.Measured, got.Passed, tc.conns, tc.broken, got.Note)
		}
	}
	if totals := r.Totals(); totals[0].VIP != "www/v4" || totals[1].VIP != "www/v6" || totals[1].Broken != 1 {
		t.Errorf("totals %+v, want a row per family, labelled", totals)
	}
}
