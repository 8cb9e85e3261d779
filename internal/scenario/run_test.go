package scenario

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/traffic"
)

const crashScenario = `
name: lb4-crash
claim: kill one LB4 (crash)
load: {workers: 4, vips: [www]}
steps:
  - load: start
  - sleep: 5s
  - kill: lb4-2
  - wait: {vip: www, next-hops: 1}
  - revive: lb4-2
  - wait: {converged: true}
  - sleep: 2s
  - load: stop
assert:
  - {broken: 0, vip: www, after: kill lb4-2}
`

// TestRun checks the order of the calls, the steps' times and the load's
// configuration on a run where everything works.
func TestRun(t *testing.T) {
	clk := newFakeClock()
	lab := &fakeLab{clk: clk, vips: []VIP{vipWWW}, doTakes: ms(10), checks: map[string][]answer{
		"wait www next-hops 1": {{why: "r1 has 2 next hops"}, {why: "r1 has 2 next hops"}, {ok: true}},
	}, conns: []traffic.Conn{conn(1, vipWWW, 100, 7000, "lb7-1", traffic.OutcomeOK)}}
	s := mustParse(t, crashScenario)
	res, err := run(t.Context(), lab, s, nil, clk)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	wantCalls := []string{"vips", "start", "do kill lb4-2",
		"check wait www next-hops 1", "check wait www next-hops 1", "check wait www next-hops 1",
		"do revive lb4-2", "check wait converged", "stop"}
	if diff := cmp.Diff(lab.calls, wantCalls); diff != "" {
		t.Errorf("calls (-got +want):\n%s", diff)
	}
	var got []string
	for _, s := range res.Steps {
		got = append(got, stepLine(s))
	}
	want := []string{
		"+0.000s load start 0s",
		"+0.000s sleep 5s 5s",
		"+5.000s kill lb4-2 10ms",
		"+5.010s wait www next-hops 1 200ms",
		"+5.210s revive lb4-2 10ms",
		"+5.220s wait converged 0s",
		"+5.220s sleep 2s 2s",
		"+7.220s load stop 0s",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("steps (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(lab.loads, []Load{{Workers: 4, VIPs: []string{"www"}}}); diff != "" {
		t.Errorf("load (-got +want):\n%s", diff)
	}
	if !res.Passed() || res.Err != nil || res.Report == nil || len(res.Report.Conns) != 1 {
		t.Errorf("result: passed %v, err %v, report %v; want a pass with one connection", res.Passed(), res.Err, res.Report)
	}
	if res.End.Sub(res.Start) != ms(7220) || res.Claim != "kill one LB4 (crash)" {
		t.Errorf("result: span %s, claim %q", res.End.Sub(res.Start), res.Claim)
	}
}

// TestRunFailures checks that a failed step ends the steps, stops the load
// (on a live context) and fails the result, which Run still returns.
func TestRunFailures(t *testing.T) {
	const base = `
name: failures
steps:
  - load: start
  - kill: lb4-2
  - wait: {vip: www, next-hops: 1, timeout: 350ms}
  - revive: lb4-2
assert:
  - {broken: 0, after: revive lb4-2}
`
	boom := errors.New("boom")
	cases := []struct {
		name string
		// setup changes the lab and returns the context of the run.
		setup     func(*fakeLab, context.CancelFunc)
		wantCalls []string
		wantSteps []string
		wantErr   []error // what Result.Err must match
		wantText  string  // in Result.Err's message
	}{
		{
			name: "wait times out",
			setup: func(l *fakeLab, _ context.CancelFunc) {
				l.checks = map[string][]answer{"wait www next-hops 1": {{why: "r1 has 2 next hops"}}}
			},
			wantCalls: []string{"vips", "start", "do kill lb4-2",
				"check wait www next-hops 1", "check wait www next-hops 1", "check wait www next-hops 1",
				"check wait www next-hops 1", "check wait www next-hops 1", "stop"},
			wantSteps: []string{
				"+0.000s load start 0s",
				"+0.000s kill lb4-2 0s",
				"+0.000s wait www next-hops 1 350ms: condition not met in time (350ms): r1 has 2 next hops",
				"- revive lb4-2",
				"+0.350s load stop 0s (implied)",
			},
			wantErr:  []error{ErrWaitTimeout},
			wantText: `step "wait www next-hops 1": condition not met in time (350ms): r1 has 2 next hops`,
		},
		{
			name: "check fails",
			setup: func(l *fakeLab, _ context.CancelFunc) {
				l.checks = map[string][]answer{"wait www next-hops 1": {{err: boom}}}
			},
			wantCalls: []string{"vips", "start", "do kill lb4-2", "check wait www next-hops 1", "stop"},
			wantSteps: []string{
				"+0.000s load start 0s",
				"+0.000s kill lb4-2 0s",
				"+0.000s wait www next-hops 1 0s: check: boom",
				"- revive lb4-2",
				"+0.000s load stop 0s (implied)",
			},
			wantErr: []error{boom},
		},
		{
			name:      "injection fails",
			setup:     func(l *fakeLab, _ context.CancelFunc) { l.doErr = map[string]error{"kill lb4-2": boom} },
			wantCalls: []string{"vips", "start", "do kill lb4-2", "stop"},
			wantSteps: []string{
				"+0.000s load start 0s",
				"+0.000s kill lb4-2 0s: boom",
				"- wait www next-hops 1",
				"- revive lb4-2",
				"+0.000s load stop 0s (implied)",
			},
			wantErr:  []error{boom},
			wantText: `step "kill lb4-2": boom`,
		},
		{
			name:      "load does not start",
			setup:     func(l *fakeLab, _ context.CancelFunc) { l.startErr = boom },
			wantCalls: []string{"vips", "start"},
			wantSteps: []string{
				"+0.000s load start 0s: start the load: boom",
				"- kill lb4-2",
				"- wait www next-hops 1",
				"- revive lb4-2",
			},
			wantErr: []error{boom},
		},
		{
			name:      "load does not stop",
			setup:     func(l *fakeLab, _ context.CancelFunc) { l.stopErr = boom },
			wantCalls: []string{"vips", "start", "do kill lb4-2", "check wait www next-hops 1", "do revive lb4-2", "stop"},
			wantSteps: []string{
				"+0.000s load start 0s",
				"+0.000s kill lb4-2 0s",
				"+0.000s wait www next-hops 1 0s",
				"+0.000s revive lb4-2 0s",
				"+0.000s load stop 0s: stop the load: boom",
			},
			wantErr: []error{boom},
		},
		{
			name: "ctrl-c during an injection",
			setup: func(l *fakeLab, cancel context.CancelFunc) {
				l.onDo = func(Action) { cancel() }
			},
			wantCalls: []string{"vips", "start", "do kill lb4-2", "stop"},
			wantSteps: []string{
				"+0.000s load start 0s",
				"+0.000s kill lb4-2 0s",
				"- wait www next-hops 1",
				"- revive lb4-2",
				"+0.000s load stop 0s (implied)",
			},
			wantErr:  []error{context.Canceled},
			wantText: `interrupted before step "wait www next-hops 1": context canceled`,
		},
		{
			name: "ctrl-c during a wait",
			setup: func(l *fakeLab, cancel context.CancelFunc) {
				l.checks = map[string][]answer{"wait www next-hops 1": {{why: "not yet"}}}
				l.onCheck = func(Condition) { cancel() }
			},
			wantCalls: []string{"vips", "start", "do kill lb4-2", "check wait www next-hops 1", "stop"},
			wantSteps: []string{
				"+0.000s load start 0s",
				"+0.000s kill lb4-2 0s",
				"+0.000s wait www next-hops 1 0s: context canceled",
				"- revive lb4-2",
				"+0.000s load stop 0s (implied)",
			},
			wantErr: []error{context.Canceled},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			lab := &fakeLab{clk: clk, vips: []VIP{vipWWW}}
			ctx, cancel := context.WithCancel(t.Context())
			t.Cleanup(cancel)
			tc.setup(lab, cancel)
			res, err := run(ctx, lab, mustParse(t, base), nil, clk)
			if err != nil {
				t.Fatalf("run returned error %v, want a failed result", err)
			}
			if diff := cmp.Diff(lab.calls, tc.wantCalls); diff != "" {
				t.Errorf("calls (-got +want):\n%s", diff)
			}
			var got []string
			for _, s := range res.Steps {
				got = append(got, stepLine(s))
			}
			if diff := cmp.Diff(got, tc.wantSteps); diff != "" {
				t.Errorf("steps (-got +want):\n%s", diff)
			}
			if res.Passed() {
				t.Error("the result passed")
			}
			for _, e := range tc.wantErr {
				if !errors.Is(res.Err, e) {
					t.Errorf("Result.Err = %v, want it to match %v", res.Err, e)
				}
			}
			if tc.wantText != "" && (res.Err == nil || res.Err.Error() != tc.wantText) {
				t.Errorf("Result.Err = %v, want %q", res.Err, tc.wantText)
			}
			if slices.Contains(lab.calls, "stop") && !lab.stopCtxOK {
				t.Error("the load was stopped with a dead context")
			}
			if len(res.Assertions) != 1 || res.Assertions[0].Passed || res.Assertions[0].Note == "" {
				t.Errorf("assertions = %+v, want one failed with a note", res.Assertions)
			}
		})
	}
}

// TestRunVIPs checks that a VIP the lab lacks fails the run before any
// action.
func TestRunVIPs(t *testing.T) {
	s := mustParse(t, `
name: vips
load: {vips: [www, api]}
steps:
  - load: start
  - wait: {vip: db, next-hops: 1}
assert:
  - {broken: 0, vip: api}
`)
	clk := newFakeClock()
	lab := &fakeLab{clk: clk, vips: []VIP{vipWWW}}
	res, err := run(t.Context(), lab, s, nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lab.calls, []string{"vips"}); diff != "" {
		t.Errorf("calls (-got +want):\n%s", diff)
	}
	const want = "the lab has no vip api (load), db (step wait db next-hops 1), api (assertion 1); it has www"
	if res.Err == nil || res.Err.Error() != want || res.Passed() {
		t.Errorf("Result.Err = %v, want %q", res.Err, want)
	}
}

// TestRunMisuse checks the errors Run returns instead of a result.
func TestRunMisuse(t *testing.T) {
	valid := mustParse(t, "name: ok\nsteps:\n  - sleep: 1s\n")
	cases := []struct {
		name string
		lab  Lab
		s    *Scenario
		want string
	}{
		{name: "no lab", s: valid, want: "run scenario: no lab or no scenario"},
		{name: "no scenario", lab: &fakeLab{}, want: "run scenario: no lab or no scenario"},
		{name: "invalid scenario", lab: &fakeLab{}, s: &Scenario{Name: "bad", Steps: []Step{{Kind: KindSleep}}},
			want: "run scenario bad: steps[0].sleep: want a positive duration such as 5s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Run(t.Context(), tc.lab, tc.s, nil)
			if err == nil || err.Error() != tc.want || res != nil {
				t.Errorf("Run = %v, %v; want nil, %q", res, err, tc.want)
			}
		})
	}
}

// TestRunRealClock runs a short scenario on the real clock: sleeps and
// polls take their time, and a context that ends cuts a sleep short.
func TestRunRealClock(t *testing.T) {
	s := mustParse(t, `
name: real
steps:
  - load: start
  - sleep: 20ms
  - wait: {converged: true, timeout: 2s}
  - sleep: 1h
`)
	lab := &fakeLab{clk: newFakeClock(), vips: []VIP{vipWWW}, checks: map[string][]answer{
		"wait converged": {{why: "not yet"}, {ok: true}},
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	t.Cleanup(cancel)
	begin := time.Now()
	res, err := Run(ctx, lab, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Run took %s: the end of the context did not cut the sleep", took)
	}
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("Result.Err = %v, want the context's deadline", res.Err)
	}
	wait := res.Steps[2]
	if !wait.Ran || wait.Err != nil || wait.Took < pollInterval {
		t.Errorf("wait step = %+v, want a success after one poll interval", wait)
	}
	if sleep := res.Steps[1]; sleep.Took < 20*time.Millisecond || wait.At < sleep.At+sleep.Took {
		t.Errorf("sleep step = %+v, want 20ms before the wait at %s", sleep, wait.At)
	}
	if last := res.Steps[len(res.Steps)-1]; !last.Implied || !strings.Contains(strings.Join(lab.calls, " "), "stop") {
		t.Errorf("last step = %+v, calls %v: want the implied load stop", last, lab.calls)
	}
}

// rerouteLab is a fakeLab that tells when the routers dropped a node.
type rerouteLab struct {
	*fakeLab
	reroutes map[string]time.Duration // by node; absent: the lab cannot tell
	asked    []string
}

func (l *rerouteLab) Rerouted(_ context.Context, node string, since time.Time) (time.Duration, bool, error) {
	l.asked = append(l.asked, fmt.Sprintf("%s +%s", node, since.Sub(t0)))
	d, ok := l.reroutes[node]
	return d, ok, nil
}

// TestRunReroute checks the reroute metric: measured by the lab for each
// injection step into a node, judged against the limit, and failed with
// a note when the lab cannot tell.
func TestRunReroute(t *testing.T) {
	const src = `
name: lb4-freeze
load: {workers: 4}
steps:
  - load: start
  - sleep: 5s
  - freeze: lb4-2
  - sleep: 2s
  - kill: lb7-1
  - sleep: 2s
  - load: stop
  - revive: lb4-2
assert:
  - {reroute: 1s, after: freeze lb4-2}
  - {reroute: 1s, after: kill lb7-1}
`
	cases := []struct {
		name     string
		reroutes map[string]time.Duration
		want     []string // the two assertions: measured or note
		pass     []bool
	}{
		{"fast", map[string]time.Duration{"lb4-2": ms(640)}, []string{"640ms", "the lab did not tell"}, []bool{true, false}},
		{"slow", map[string]time.Duration{"lb4-2": ms(2500)}, []string{"2.5s", "the lab did not tell"}, []bool{false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			lab := &rerouteLab{fakeLab: &fakeLab{clk: clk, vips: []VIP{vipWWW},
				conns: []traffic.Conn{conn(1, vipWWW, 100, 7000, "lb7-1", traffic.OutcomeOK)}}, reroutes: tc.reroutes}
			res, err := run(t.Context(), lab, mustParse(t, src), nil, clk)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"lb4-2 +5s", "lb7-1 +7s", "lb4-2 +9s"}; !slices.Equal(lab.asked, want) {
				t.Errorf("asked %v, want %v", lab.asked, want)
			}
			for i, a := range res.Assertions {
				got := a.Note
				if got == "" {
					got = formatDuration(time.Duration(a.Measured))
				}
				if !strings.HasPrefix(got, tc.want[i]) || a.Passed != tc.pass[i] {
					t.Errorf("%s: %q passed %v, want %q passed %v", a.Assertion, got, a.Passed, tc.want[i], tc.pass[i])
				}
			}
			if f := res.Failovers[0]; f.Reroute == nil || *f.Reroute != tc.reroutes["lb4-2"] {
				t.Errorf("failover of %s: reroute %v, want %v", f.Step, f.Reroute, tc.reroutes["lb4-2"])
			}
		})
	}
}
