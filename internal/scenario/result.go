package scenario

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/traffic"
)

// Result is what a run did and measured, and its verdict. Times are
// offsets from Start, so that a Result writes the same reports whenever
// it ran.
type Result struct {
	Name        string
	Description string
	Claim       string
	File        string
	Start, End  time.Time
	// VIPs are the lab's VIPs, as Lab.VIPs listed them.
	VIPs []VIP
	// Steps holds every step of the scenario in order, run or not, then
	// the implied load stop when the steps left the load running.
	Steps []StepResult
	// Report is what the load measured; nil when it never ran.
	Report *traffic.Report
	// Failovers holds one entry per injection step that ran.
	Failovers []Failover
	// Repairs is, for a request load, the latency of its steady part and
	// after each injection step, and the time to repair; nil otherwise.
	Repairs *traffic.Repairs `json:",omitempty"`
	// Assertions holds every assertion, checked.
	Assertions []AssertionResult
	// Err is why the run failed before its end (a step error, a VIP the
	// lab lacks, a cancelled context); nil when every step ran.
	Err error
}

// StepResult is one step and what became of it.
type StepResult struct {
	Step Step
	// Ran is false for steps after a failure.
	Ran bool
	// Implied is set on the load stop that Run added.
	Implied bool
	// At is when the step began, from Result.Start; Took how long it ran.
	At, Took time.Duration
	Err      error
	// Reroute is how long after the step every router had dropped its
	// node (see Rerouter); nil when the lab did not tell.
	Reroute *time.Duration `json:",omitempty"`
	// Nodes are the nodes a step into several acted on (a list, or those
	// picked from a role).
	Nodes []string `json:",omitempty"`
}

// Failover is how long failures went on after an injection step: the
// latest failure moment, minus the step's time, among the broken
// connections that ended at or after the step and failed before the next
// injection step. A connection's failure moment is its end, except for a
// timeout: the end minus the read timeout, the moment data stopped.
type Failover struct {
	Step string
	// At is the step's time, from Result.Start.
	At time.Duration
	// Failover is 0 when no connection broke.
	Failover time.Duration
	// Reroute is the step's StepResult.Reroute.
	Reroute *time.Duration `json:",omitempty"`
	// Broken counts the broken connections taken into account.
	Broken int
	// ByVIP holds the same figures per VIP of Result.VIPs, in order.
	ByVIP []VIPFailover
}

// VIPFailover is a Failover restricted to one VIP.
type VIPFailover struct {
	VIP      string
	Failover time.Duration
	Broken   int
}

// AssertionResult is an assertion and what was measured.
type AssertionResult struct {
	Assertion Assertion
	// Conns counts the connections in scope.
	Conns int
	// Measured is the metric's value, in the unit of Assertion.Limit.
	Measured float64
	Passed   bool
	// Note says why the assertion could not be measured (a step that did
	// not run, no connection in scope), which fails it.
	Note string
}

// Message describes the outcome, such as "broken 2 > 0 of 40 connections
// [vip www]".
func (a AssertionResult) Message() string {
	m := a.Assertion.Metric
	if a.Note != "" {
		return fmt.Sprintf("%s: %s", a.Assertion, a.Note)
	}
	op := "<="
	if !a.Passed {
		op = ">"
	}
	return fmt.Sprintf("%s %s %s %s of %d connections [%s]", m, m.format(a.Measured), op,
		m.format(a.Assertion.Limit), a.Conns, a.Assertion.Scope)
}

// Passed reports whether every step ran and every assertion passed.
func (r *Result) Passed() bool {
	if r.Err != nil {
		return false
	}
	for _, s := range r.Steps {
		if !s.Ran || s.Err != nil {
			return false
		}
	}
	for _, a := range r.Assertions {
		if !a.Passed {
			return false
		}
	}
	return true
}

// Totals is the count of connections to one VIP.
type Totals struct {
	// VIP is the VIP's name; "other" for connections to no known VIP,
	// "total" for all of them.
	VIP       string
	Scheduler string
	// Started counts every connection; OK the ones that ended well
	// (Interrupted ones included), Broken the others.
	Started, OK, Broken, Interrupted int
}

// Totals returns the count of connections per VIP of r.VIPs in order,
// then "other" when some connections went to no known VIP, then "total".
func (r *Result) Totals() []Totals {
	var out []Totals
	for _, v := range r.VIPs {
		out = append(out, Totals{VIP: v.Name, Scheduler: v.Scheduler})
	}
	other := Totals{VIP: "other"}
	total := Totals{VIP: "total"}
	for _, c := range r.conns() {
		t := &other
		if i := r.vipIndex(c); i >= 0 {
			t = &out[i]
		}
		for _, t := range []*Totals{t, &total} {
			t.Started++
			switch {
			case c.Outcome.Broken():
				t.Broken++
			case c.Interrupted:
				t.OK++
				t.Interrupted++
			default:
				t.OK++
			}
		}
	}
	if other.Started > 0 {
		out = append(out, other)
	}
	return append(out, total)
}

// conns returns the measured connections.
func (r *Result) conns() []traffic.Conn {
	if r.Report == nil {
		return nil
	}
	return r.Report.Conns
}

// vipIndex returns the index in r.VIPs of c's VIP, -1 when none.
func (r *Result) vipIndex(c traffic.Conn) int {
	for i, v := range r.VIPs {
		if v.Target == c.Target {
			return i
		}
	}
	return -1
}

// stepTime returns the time of the step labelled label, false when no
// such step ran.
func (r *Result) stepTime(label string) (time.Time, bool) {
	for _, s := range r.Steps {
		if s.Step.Label == label && !s.Implied {
			return r.Start.Add(s.At), s.Ran
		}
	}
	return time.Time{}, false
}

// reroute is the reroute time of the step with that label, nil when the
// lab did not tell.
func (r *Result) reroute(label string) *time.Duration {
	for _, s := range r.Steps {
		if s.Step.Label == label && !s.Implied {
			return s.Reroute
		}
	}
	return nil
}

// failureMoment returns when c failed: its end, or for a timeout the
// moment data stopped (never before its start).
func failureMoment(c traffic.Conn, readTimeout time.Duration) time.Time {
	if c.Outcome != traffic.OutcomeTimeout {
		return c.End
	}
	t := c.End.Add(-readTimeout)
	if t.Before(c.Start) {
		return c.Start
	}
	return t
}

// evaluate computes the failovers and checks the assertions.
func (r *Result) evaluate(asserts []Assertion) {
	var readTimeout time.Duration
	if r.Report != nil {
		readTimeout = r.Report.ReadTimeout
	}
	r.Failovers = nil
	for i, s := range r.Steps {
		if !s.Ran || s.Implied || !s.Step.Kind.Inject() {
			continue
		}
		at := r.Start.Add(s.At)
		until := time.Time{}
		for _, next := range r.Steps[i+1:] {
			if next.Ran && !next.Implied && next.Step.Kind.Inject() {
				until = r.Start.Add(next.At)
				break
			}
		}
		f := Failover{Step: s.Step.Label, At: s.At, Reroute: s.Reroute}
		for _, v := range r.VIPs {
			f.ByVIP = append(f.ByVIP, VIPFailover{VIP: v.Name})
		}
		for _, c := range r.conns() {
			if !c.Outcome.Broken() || c.End.Before(at) {
				continue
			}
			m := failureMoment(c, readTimeout)
			if !until.IsZero() && !m.Before(until) {
				continue
			}
			d := max(m.Sub(at), 0)
			f.Broken++
			f.Failover = max(f.Failover, d)
			if j := r.vipIndex(c); j >= 0 {
				f.ByVIP[j].Broken++
				f.ByVIP[j].Failover = max(f.ByVIP[j].Failover, d)
			}
		}
		r.Failovers = append(r.Failovers, f)
	}
	r.Repairs = nil
	if r.Report != nil && r.Report.Requests != nil {
		rs := r.Report.Repairs(r.injections())
		r.Repairs = &rs
	}
	r.Assertions = nil
	for _, a := range asserts {
		r.Assertions = append(r.Assertions, r.check(a, readTimeout))
	}
}

// check measures one assertion.
func (r *Result) check(a Assertion, readTimeout time.Duration) AssertionResult {
	res := AssertionResult{Assertion: a}
	conns, from, note := r.scope(a.Scope)
	res.Conns = len(conns)
	switch {
	case note != "":
		res.Note = note
		return res
	case len(conns) == 0:
		res.Note = "no connection in scope"
		return res
	}
	var broken, interrupted, dnsFailed, fallbacks int
	var failover time.Duration
	var latencies []time.Duration
	for _, c := range conns {
		fallbacks += c.Fallbacks
		if c.Outcome == traffic.OutcomeOK && !c.Stopped {
			latencies = append(latencies, c.Latency)
		}
		switch {
		case c.Outcome == traffic.OutcomeDNS:
			dnsFailed++
		case c.Outcome.Broken():
			broken++
			failover = max(failover, failureMoment(c, readTimeout).Sub(from))
		case c.Interrupted:
			interrupted++
		}
	}
	switch a.Metric {
	case MetricBroken:
		res.Measured = float64(broken)
	case MetricInterrupted:
		res.Measured = float64(interrupted)
	case MetricDNSFailures:
		res.Measured = float64(dnsFailed)
	case MetricFallbacks:
		res.Measured = float64(fallbacks)
	case MetricBrokenRatio:
		res.Measured = float64(broken) / float64(len(conns))
	case MetricErrorRatio:
		res.Measured = float64(broken+dnsFailed) / float64(len(conns))
	case MetricP99:
		if len(latencies) == 0 {
			res.Note = "no request in scope succeeded"
			return res
		}
		res.Measured = float64(traffic.Summarize(latencies).P99)
	case MetricRepair:
		w, note := r.repair(a.Scope)
		if note != "" {
			res.Note = note
			return res
		}
		res.Measured = float64(w.Repaired)
	case MetricFailover:
		res.Measured = float64(failover)
	case MetricReroute:
		d := r.reroute(a.Scope.After)
		if d == nil {
			res.Note = fmt.Sprintf("the lab did not tell when the routers dropped the node of %q", a.Scope.After)
			return res
		}
		res.Measured = float64(*d)
	}
	res.Passed = res.Measured <= a.Limit
	return res
}

// injections returns the injection steps that ran, in order.
func (r *Result) injections() []traffic.Injection {
	var out []traffic.Injection
	for _, s := range r.Steps {
		if s.Ran && !s.Implied && s.Step.Kind.Inject() {
			out = append(out, traffic.Injection{Label: s.Step.Label, At: r.Start.Add(s.At)})
		}
	}
	return out
}

// repair returns the repair window of the After step of sc over the
// requests of sc's VIPs and scheduler, or a note saying why there is none.
func (r *Result) repair(sc Scope) (traffic.RepairWindow, string) {
	conns, _, note := r.scope(Scope{VIP: sc.VIP, Scheduler: sc.Scheduler, ExceptLB7: sc.ExceptLB7})
	if note != "" {
		return traffic.RepairWindow{}, note
	}
	sub := *r.Report
	sub.Conns = conns
	for _, w := range sub.Repairs(r.injections()).After {
		if w.Label != sc.After {
			continue
		}
		if w.Unrepaired {
			return w, fmt.Sprintf("not repaired %s after %q: still degraded at the next injection or the end",
				formatDuration(w.Repaired), sc.After)
		}
		return w, ""
	}
	return traffic.RepairWindow{}, fmt.Sprintf("step %q is not an injection that ran", sc.After)
}

// scope returns the connections in sc and the time of its After step (the
// start of the run when it has none), or a note saying why sc cannot be
// measured.
func (r *Result) scope(sc Scope) (conns []traffic.Conn, from time.Time, note string) {
	from = r.Start
	var before time.Time
	if sc.After != "" {
		t, ok := r.stepTime(sc.After)
		if !ok {
			return nil, from, fmt.Sprintf("step %q did not run", sc.After)
		}
		from = t
	}
	if sc.Before != "" {
		t, ok := r.stepTime(sc.Before)
		if !ok {
			return nil, from, fmt.Sprintf("step %q did not run", sc.Before)
		}
		before = t
	}
	vipTargets := map[netip.AddrPort]bool{}
	if sc.VIP != "" {
		for _, v := range r.VIPs {
			if v.Name == sc.VIP || v.Service == sc.VIP {
				vipTargets[v.Target] = true
			}
		}
		if len(vipTargets) == 0 {
			return nil, from, fmt.Sprintf("the lab has no vip %s", sc.VIP)
		}
	}
	schedTargets := map[netip.AddrPort]bool{}
	if sc.Scheduler != "" {
		for _, v := range r.VIPs {
			if v.Scheduler == sc.Scheduler {
				schedTargets[v.Target] = true
			}
		}
		if len(schedTargets) == 0 {
			return nil, from, fmt.Sprintf("the lab has no vip with scheduler %s", sc.Scheduler)
		}
	}
	if r.Report == nil {
		return nil, from, "no traffic was measured"
	}
	for _, c := range r.Report.Conns {
		switch {
		case sc.VIP != "" && !vipTargets[c.Target]:
		case sc.Scheduler != "" && !schedTargets[c.Target]:
		case sc.After != "" && c.End.Before(from):
		case sc.Settled > 0 && c.Start.Before(from.Add(sc.Settled)):
		case sc.Before != "" && !c.Start.Before(before):
		case sc.Before != "" && c.Outcome != traffic.OutcomeOK && !failureMoment(c, r.Report.ReadTimeout).Before(before):
		case sc.ExceptLB7 != "" && (c.LB7 == sc.ExceptLB7 || c.LB7 == "" && c.Outcome == traffic.OutcomeRefused):
		default:
			conns = append(conns, c)
		}
	}
	return conns, from, ""
}
