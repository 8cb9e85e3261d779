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

	"github.com/lab-lb/lab/internal/testenv"
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

func TestPick(t *testing.T) {
	lb7s := []string{"lb7-1", "lb7-2", "lb7-3", "lb7-4", "lb7-5", "lb7-6", "lb7-7", "lb7-8"}
	for _, tt := range []struct {
		share float64
		n     int
		of    []string
	}{
		{0.125, 1, lb7s}, {0.25, 2, lb7s}, {0.13, 2, lb7s}, {1, 8, lb7s},
		{0.125, 1, lb7s[:2]}, // at least one
		{0.5, 1, lb7s[:2]},
	} {
		got := Pick(tt.of, tt.share, 7)
		if len(got) != tt.n || !slices.IsSorted(got) {
			t.Errorf("Pick(%d nodes, %g) = %v, want %d sorted", len(tt.of), tt.share, got, tt.n)
		}
		for _, n := range got {
			if !slices.Contains(tt.of, n) {
				t.Errorf("Pick picked %s, not one of %v", n, tt.of)
			}
		}
	}
	// The same seed picks the same nodes whatever their order; seeds
	// differ in what they pick.
	reversed := slices.Clone(lb7s)
	slices.Reverse(reversed)
	if a, b := Pick(lb7s, 0.25, 3), Pick(reversed, 0.25, 3); !slices.Equal(a, b) {
		t.Errorf("seed 3 picked %v, then %v from the same nodes in another order", a, b)
	}
	picks := map[string]bool{}
	for seed := range int64(20) {
		picks[strings.Join(Pick(lb7s, 0.25, seed), ",")] = true
	}
	if len(picks) < 5 {
		t.Errorf("20 seeds picked only %d different pairs: %v", len(picks), picks)
	}
}

// TestRunSeveralNodes checks steps into several nodes: a list, and a share
// of a role picked with a seed, each node getting its own action, and the
// result naming them.
func TestRunSeveralNodes(t *testing.T) {
	clk := newFakeClock()
	lb7s := []string{"lb7-1", "lb7-2", "lb7-3", "lb7-4", "lb7-5", "lb7-6", "lb7-7", "lb7-8"}
	lab := &fakeLab{clk: clk, vips: []VIP{vipWWW}, roles: map[string][]string{"lb7": lb7s},
		doErr: map[string]error{"kill lb4-9": errors.New("no node lb4-9")}}
	s := mustParse(t, `
name: several
steps:
  - kill: {role: lb7, share: 25%, seed: 4}
  - freeze: [lb4-1, lb4-2]
  - kill: [lb4-3, lb4-9]
`)
	res, err := run(t.Context(), lab, s, nil, clk)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	picked := Pick(lb7s, 0.25, 4)
	if got := res.Steps[0].Nodes; !slices.Equal(got, picked) || res.Steps[0].Step.Label != "kill 25% of lb7" {
		t.Errorf("step %q acted on %v, want %v", res.Steps[0].Step.Label, got, picked)
	}
	calls := slices.Clone(lab.calls)
	slices.Sort(calls)
	want := []string{"do freeze lb4-1", "do freeze lb4-2", "do kill " + picked[0], "do kill " + picked[1],
		"do kill lb4-3", "do kill lb4-9", "nodes lb7", "vips"}
	slices.Sort(want)
	if diff := cmp.Diff(calls, want); diff != "" {
		t.Errorf("calls (-got +want):\n%s", diff)
	}
	if res.Passed() || res.Steps[2].Err == nil || !strings.Contains(res.Steps[2].Err.Error(), "lb4-9: no node lb4-9") {
		t.Errorf("step 3 error %v, want lb4-9's, failing the run", res.Steps[2].Err)
	}
}

// TestRequestMetrics checks error-ratio, p99 and repair on a request load
// whose requests fail and slow down after a kill.
func TestRequestMetrics(t *testing.T) {
	clk := newFakeClock()
	var conns []traffic.Conn
	for i := range 200 { // 20 a second for 10 s; the kill is at 4 s
		c := conn(i+1, vipWWW, i*50, i*50+10, "lb7-1", traffic.OutcomeOK)
		c.Latency = ms(10)
		switch {
		case i >= 80 && i < 84: // 4.0-4.2 s: refused
			c.Outcome, c.LB7, c.Latency = traffic.OutcomeRefused, "", ms(1)
		case i >= 84 && i < 100: // until 5 s: slow
			c.Latency = ms(400)
		}
		c.End = c.Start.Add(c.Latency)
		conns = append(conns, c)
	}
	lab := &fakeLab{clk: clk, vips: []VIP{vipWWW}, conns: conns}
	s := mustParse(t, `
name: requests
load: {mode: requests, rate: 20, workers: 2}
steps:
  - load: start
  - sleep: 4s
  - kill: lb7-1
  - sleep: 6s
assert:
  - {error-ratio: 1%, before: kill lb7-1}
  - error-ratio: 1%
  - {p99: 20ms, before: kill lb7-1}
  - p99: 20ms
  - {repair: 2s, after: kill lb7-1}
  - {repair: 500ms, after: kill lb7-1}
`)
	res, err := run(t.Context(), lab, s, nil, clk)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if diff := cmp.Diff(lab.loads[0], Load{Mode: "requests", Rate: 20, Workers: 2}); diff != "" {
		t.Errorf("load (-got +want):\n%s", diff)
	}
	var got []string
	for _, a := range res.Assertions {
		got = append(got, fmt.Sprintf("%v %s", a.Passed, a.Message()))
	}
	want := []string{
		"true error-ratio 0% <= 1% of 80 connections [before kill lb7-1]",
		"false error-ratio 2% > 1% of 200 connections [all connections]",
		"true p99 10ms <= 20ms of 80 connections [before kill lb7-1]",
		"false p99 400ms > 20ms of 200 connections [all connections]",
		"true repair 1.35s <= 2s of 120 connections [after kill lb7-1]", // request 99: 4.95 s + 400 ms
		"false repair 1.35s > 500ms of 120 connections [after kill lb7-1]",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("assertions (-got +want):\n%s", diff)
	}
	if res.Repairs == nil || len(res.Repairs.After) != 1 || res.Repairs.After[0].Errors != 4 {
		t.Errorf("repairs %+v, want one window with 4 errors", res.Repairs)
	}
	var b strings.Builder
	if err := res.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/requests-result.txt", []byte(b.String()))
	b.Reset()
	if err := WriteClaims(&b, []*Result{res}); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, "testdata/requests-claims.txt", []byte(b.String()))
}
