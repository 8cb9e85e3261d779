package lab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/scenario"
)

// Scenario is a parsed, validated scenario file (see `lab help test` and
// the README): a load, steps that disturb the lab, and assertions on what
// broke. It comes from LoadScenario or CheckScenario; the steps and
// assertions are the file's and are shown here as written, while Name,
// Claim and Load may be changed before Lab.RunScenario.
type Scenario struct {
	// Name names the scenario in reports (letters, digits and '-');
	// Description says what it shows.
	Name        string
	Description string
	// Claim is its row in the claims table (WriteClaims); empty means
	// Name.
	Claim string
	// File is the file it was read from.
	File string
	// Topology is the topology file it is written for, relative to the
	// working directory; empty for a scenario for any lab.
	Topology string
	// Load is the traffic its load-start steps start.
	Load LoadConfig
	// Steps are its steps, in order.
	Steps []ScenarioStep
	// Assertions are its assertions as text, such as "broken <= 0 [vip
	// www, after kill lb4-2]".
	Assertions []string

	raw *scenario.Scenario
}

// ScenarioStep is one step of a scenario.
type ScenarioStep struct {
	// Kind is what the step does: load-start, load-stop, sleep, wait,
	// kill, freeze, revive, maint, agent, link, impair, add, remove, exec.
	Kind string
	// Label names the step in reports and assertion scopes ("kill
	// lb4-2").
	Label string
	// Line is where the file has it.
	Line int
}

// scenarioFrom is the public form of a parsed scenario.
func scenarioFrom(s *scenario.Scenario) *Scenario {
	ld := s.Load
	return &Scenario{
		Name: s.Name, Description: s.Description, Claim: s.Claim, File: s.File, Topology: s.Topology,
		Load: LoadConfig{
			Mode: LoadMode(ld.Mode), Rate: ld.Rate, KeepAlive: ld.KeepAlive,
			From: ld.From, VIPs: ld.VIPs, Names: ld.Names, Workers: ld.Workers, Path: ld.Path, ReadSize: ld.ReadSize,
			Pause: ld.Pause, ReadTimeout: ld.ReadTimeout, StallThreshold: ld.StallThreshold,
			EarlyStop: ld.EarlyStop, Seed: ld.Seed,
		},
		Steps: convert(s.Steps, func(st scenario.Step) ScenarioStep {
			return ScenarioStep{Kind: string(st.Kind), Label: st.Label, Line: st.Line}
		}),
		Assertions: convert(s.Assert, scenario.Assertion.String),
		raw:        s,
	}
}

// scenario is the parsed scenario with the fields s lets a caller change.
func (s *Scenario) scenario() *scenario.Scenario {
	raw := *s.raw
	raw.Name, raw.Description, raw.Claim, raw.Topology = s.Name, s.Description, s.Claim, s.Topology
	ld := s.Load
	raw.Load = scenario.Load{
		Mode: string(ld.Mode), Rate: ld.Rate, KeepAlive: ld.KeepAlive,
		From: ld.From, VIPs: ld.VIPs, Names: ld.Names, Workers: ld.Workers, Path: ld.Path, ReadSize: ld.ReadSize,
		Pause: ld.Pause, ReadTimeout: ld.ReadTimeout, StallThreshold: ld.StallThreshold,
		EarlyStop: ld.EarlyStop, Seed: ld.Seed,
	}
	return &raw
}

// ErrWaitTimeout is the error of a wait step whose condition did not hold
// in time (ScenarioStepResult.Err matches it with errors.Is).
var ErrWaitTimeout = scenario.ErrWaitTimeout

// ScenarioResult is what a scenario run did and measured, and its
// verdict. Times are offsets from Start. Its writers (WriteText, WritePNG,
// WriteSVG, WriteJUnit, WriteClaims...) and its JSON (`lab test -o json`)
// are those of the run as it was measured: changing the fields changes
// none of them.
type ScenarioResult struct {
	// Name, Description, Claim and File are the scenario's.
	Name, Description, Claim, File string
	// Start and End bound the run.
	Start, End time.Time
	// VIPs are the lab's VIPs, which scopes and reports name.
	VIPs []ScenarioVIP
	// Steps holds every step of the scenario in order, run or not, then
	// the implied load stop when the steps left the load running.
	Steps []ScenarioStepResult
	// Report is what the load measured; nil when it never ran.
	Report *Report
	// Failovers holds one entry per injection step that ran.
	Failovers []Failover
	// Repairs is, for a request load, the latency of its steady part and
	// after each injection step, and the time to repair; nil otherwise.
	Repairs *Repairs
	// Assertions holds every assertion, checked.
	Assertions []AssertionResult
	// Err is why the run failed before its end (a step error, a VIP the
	// lab lacks, a cancelled context); nil when every step ran.
	Err error

	raw *scenario.Result
}

// ScenarioVIP is a VIP of the lab a scenario ran on.
type ScenarioVIP struct {
	// Name names the VIP in reports and scopes: the topology's name, with
	// "/v4" or "/v6" when the name has a VIP of each family. Service is
	// the topology's name.
	Name    string
	Service string
	// Target is the address and port the load connects to.
	Target netip.AddrPort
	// Scheduler is the IPVS scheduler of the VIP (mh, sh, wlc, rr).
	Scheduler string
}

// ScenarioStepResult is one step of a run and what became of it.
type ScenarioStepResult struct {
	// Kind, Label and Line are the step's (ScenarioStep).
	Kind, Label string
	Line        int
	// Ran is false for the steps after a failure; Implied is set on the
	// load stop the run added.
	Ran, Implied bool
	// At is when the step began, from ScenarioResult.Start; Took how long
	// it ran; Err why it failed.
	At, Took time.Duration
	Err      error
	// Reroute is how long after the step every router had dropped its
	// node; nil when the lab did not tell.
	Reroute *time.Duration
	// Nodes are the nodes a step into several acted on (a list, or those
	// picked from a role's share).
	Nodes []string
}

// Failover is how long failures went on after an injection step: the
// latest failure moment, minus the step's time, among the broken
// connections that ended after the step and failed before the next
// injection.
type Failover struct {
	// Step is the step's label, At its time from ScenarioResult.Start.
	Step string
	At   time.Duration
	// Failover is 0 when no connection broke.
	Failover time.Duration
	// Reroute is the step's ScenarioStepResult.Reroute.
	Reroute *time.Duration
	// Broken counts the broken connections taken into account.
	Broken int
	// ByVIP holds the same figures per VIP of ScenarioResult.VIPs.
	ByVIP []VIPFailover
}

// VIPFailover is a Failover restricted to one VIP.
type VIPFailover struct {
	// VIP is the VIP's name (ScenarioVIP.Name); Failover and Broken are
	// as in Failover, for its connections only.
	VIP      string
	Failover time.Duration
	Broken   int
}

// AssertionResult is an assertion of a scenario and what was measured.
type AssertionResult struct {
	// Assertion is the assertion as text ("broken <= 0 [vip www]"); Metric
	// and Limit its metric and limit (a count; a fraction for
	// broken-ratio; nanoseconds for failover and reroute); Line where the
	// file has it.
	Assertion string
	Metric    string
	Limit     float64
	Line      int
	// Conns counts the connections in scope; Measured is the metric's
	// value, in the unit of Limit.
	Conns    int
	Measured float64
	Passed   bool
	// Note says why the assertion could not be measured, which fails it.
	Note string
	// Message describes the outcome: "broken 2 > 0 of 40 connections [vip
	// www]".
	Message string
}

// VIPTotals counts the connections of a run to one VIP.
type VIPTotals struct {
	// VIP is the VIP's name; "other" for connections to no known VIP,
	// "total" for all of them.
	VIP       string
	Scheduler string
	// Started counts every connection; OK those that ended well
	// (Interrupted ones included), Broken the others.
	Started, OK, Broken, Interrupted int
}

// scenarioResultFrom is the public form of a run's result.
func scenarioResultFrom(r *scenario.Result) *ScenarioResult {
	return &ScenarioResult{
		Name: r.Name, Description: r.Description, Claim: r.Claim, File: r.File, Start: r.Start, End: r.End,
		VIPs: convert(r.VIPs, func(v scenario.VIP) ScenarioVIP { return ScenarioVIP(v) }),
		Steps: convert(r.Steps, func(s scenario.StepResult) ScenarioStepResult {
			return ScenarioStepResult{
				Kind: string(s.Step.Kind), Label: s.Step.Label, Line: s.Step.Line,
				Ran: s.Ran, Implied: s.Implied, At: s.At, Took: s.Took, Err: s.Err, Reroute: s.Reroute,
				Nodes: s.Nodes,
			}
		}),
		Report:  reportFrom(r.Report),
		Repairs: repairsOf(r.Repairs),
		Failovers: convert(r.Failovers, func(f scenario.Failover) Failover {
			return Failover{
				Step: f.Step, At: f.At, Failover: f.Failover, Reroute: f.Reroute, Broken: f.Broken,
				ByVIP: convert(f.ByVIP, func(v scenario.VIPFailover) VIPFailover { return VIPFailover(v) }),
			}
		}),
		Assertions: convert(r.Assertions, func(a scenario.AssertionResult) AssertionResult {
			return AssertionResult{
				Assertion: a.Assertion.String(), Metric: string(a.Assertion.Metric), Limit: a.Assertion.Limit,
				Line: a.Assertion.Line, Conns: a.Conns, Measured: a.Measured, Passed: a.Passed, Note: a.Note,
				Message: a.Message(),
			}
		}),
		Err: r.Err,
		raw: r,
	}
}

// Passed reports whether every step ran and every assertion passed.
func (r *ScenarioResult) Passed() bool { return r.raw != nil && r.raw.Passed() }

// Totals counts the connections per VIP of r.VIPs in order, then "other"
// when some went to no known VIP, then "total".
func (r *ScenarioResult) Totals() []VIPTotals {
	if r.raw == nil {
		return nil
	}
	return convert(r.raw.Totals(), func(t scenario.Totals) VIPTotals { return VIPTotals(t) })
}

// WriteText writes the run's report as `lab test` prints it.
func (r *ScenarioResult) WriteText(w io.Writer) error { return r.rawResult().WriteText(w) }

// WritePNG draws the run's timeline as a PNG image: the load per second,
// with the steps marked (`lab test --png`).
func (r *ScenarioResult) WritePNG(w io.Writer) error { return r.rawResult().WritePNG(w) }

// WriteSVG draws the timeline of WritePNG as an SVG image.
func (r *ScenarioResult) WriteSVG(w io.Writer) error { return r.rawResult().WriteSVG(w) }

// MarshalJSON writes the result as `lab test -o json` prints it.
func (r *ScenarioResult) MarshalJSON() ([]byte, error) { return marshalRaw(r.raw) }

// rawResult is the run's result as package scenario has it; an empty one
// for a ScenarioResult that no run made.
func (r *ScenarioResult) rawResult() *scenario.Result {
	if r.raw == nil {
		return &scenario.Result{Name: r.Name, Err: fmt.Errorf("scenario %s: no run made this result", r.Name)}
	}
	return r.raw
}

// rawResults are the results as package scenario has them.
func rawResults(results []*ScenarioResult) []*scenario.Result {
	return convert(results, (*ScenarioResult).rawResult)
}

// WriteJUnit writes results as JUnit XML, one test suite per scenario and
// one test case per assertion.
func WriteJUnit(w io.Writer, results []*ScenarioResult) error {
	return scenario.WriteJUnit(w, rawResults(results))
}

// WriteClaims writes the table of broken connections per scenario and VIP
// (scheduler), as `lab test` prints it after several scenarios.
func WriteClaims(w io.Writer, results []*ScenarioResult) error {
	return scenario.WriteClaims(w, rawResults(results))
}

// WriteClaimsMarkdown writes the table of WriteClaims as Markdown.
func WriteClaimsMarkdown(w io.Writer, results []*ScenarioResult) error {
	return scenario.WriteClaimsMarkdown(w, rawResults(results))
}

// WriteClaimsPNG draws the claims table as grouped bars: broken
// connections per scenario and scheduler.
func WriteClaimsPNG(w io.Writer, results []*ScenarioResult) error {
	return scenario.WriteClaimsPNG(w, rawResults(results))
}

// WriteClaimsSVG draws the bars of WriteClaimsPNG as an SVG image.
func WriteClaimsSVG(w io.Writer, results []*ScenarioResult) error {
	return scenario.WriteClaimsSVG(w, rawResults(results))
}

// marshalRaw is the JSON of v, an internal value whose JSON a public type
// writes as its own. HTML is left unescaped here: the encoder that asked
// for it escapes it or not, as it does for every other value.
func marshalRaw(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
