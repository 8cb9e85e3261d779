package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/traffic"
)

// Lab is what a scenario acts on, implemented over a running lab by the
// caller.
type Lab interface {
	// VIPs lists the lab's VIPs; Run calls it once, first.
	VIPs(ctx context.Context) ([]VIP, error)
	// Do performs an injection step into one node (or none: a VIP's
	// maintenance).
	Do(ctx context.Context, a Action) error
	// Nodes lists the lab's nodes of role, for the steps that pick a share
	// of them.
	Nodes(ctx context.Context, role string) ([]string, error)
	// Check tells whether c holds now, and why not when it does not. Run
	// polls it until it holds or c.Timeout has passed; an error ends the
	// wait at once.
	Check(ctx context.Context, c Condition) (ok bool, why string, err error)
	// StartLoad starts the scenario's traffic.
	StartLoad(ctx context.Context, l Load) (LoadRun, error)
}

// Rerouter is a Lab that can tell, from its event log, when the routers
// stopped using a node. Run asks it after the steps, for every injection
// step into one node.
type Rerouter interface {
	// Rerouted returns how long after its first injection at or after
	// since every router had dropped node from the routes that went
	// through it then; ok is false when the lab saw no injection into
	// node, no router routed through it, or a router still does.
	Rerouted(ctx context.Context, node string, since time.Time) (d time.Duration, ok bool, err error)
}

// LoadRun is a load in progress.
type LoadRun interface {
	// Stop ends the load and returns what it measured.
	Stop(ctx context.Context) (*traffic.Report, error)
}

// ErrWaitTimeout is the error of a wait step whose condition did not hold
// in time.
var ErrWaitTimeout = errors.New("condition not met in time")

// pollInterval is the pause between two checks of a wait step.
const pollInterval = 100 * time.Millisecond

// stopTimeout bounds stopping the load, which also happens after the
// context is cancelled.
const stopTimeout = 30 * time.Second

// clock is the time source of a run, faked in tests.
type clock interface {
	Now() time.Time
	// Sleep waits for d, or returns ctx's error when ctx ends first.
	Sleep(ctx context.Context, d time.Duration) error
}

// realClock is the system's clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run plays s on lab and judges it: it runs the steps in order, stops the
// load when the steps are over if no step did, then checks every
// assertion. log (nil discards) gets one line per step.
//
// A failed step (an injection error, a wait that timed out, a load that
// did not start) ends the steps, stops the load and is recorded in the
// Result, which does not pass; so is a VIP the scenario names that the lab
// does not have. Cancelling ctx (Ctrl-C) does the same: Result.Err then
// matches context.Canceled, and the Result holds what was measured. The
// error is non-nil only for misuse: no lab, no scenario, or an invalid one.
func Run(ctx context.Context, lab Lab, s *Scenario, log *slog.Logger) (*Result, error) {
	return run(ctx, lab, s, log, realClock{})
}

// runner is one run of a scenario.
type runner struct {
	lab  Lab
	s    *Scenario
	log  *slog.Logger
	clk  clock
	res  *Result
	load LoadRun
}

func run(ctx context.Context, lab Lab, s *Scenario, log *slog.Logger, clk clock) (*Result, error) {
	if lab == nil || s == nil {
		return nil, errors.New("run scenario: no lab or no scenario")
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("run scenario %s: %w", s.Name, err)
	}
	s = s.clone()
	s.fillDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("scenario", s.Name)
	r := &runner{lab: lab, s: s, log: log, clk: clk, res: &Result{
		Name:        s.Name,
		Description: s.Description,
		Claim:       s.Claim,
		File:        s.File,
		Start:       clk.Now(),
	}}
	for _, st := range s.Steps {
		r.res.Steps = append(r.res.Steps, StepResult{Step: st})
	}
	if vips, err := lab.VIPs(ctx); err != nil {
		r.res.Err = fmt.Errorf("list the lab's vips: %w", err)
	} else {
		r.res.VIPs = slices.Clone(vips)
		r.res.Err = checkVIPs(s, vips)
	}
	if r.res.Err == nil {
		r.steps(ctx)
	}
	if r.load != nil {
		st := StepResult{Step: Step{Kind: KindLoadStop, Label: "load stop"}, Implied: true}
		r.do(ctx, &st)
		r.res.Steps = append(r.res.Steps, st)
	}
	r.res.End = clk.Now()
	r.reroutes(ctx)
	if r.res.Err != nil {
		log.Warn("scenario failed", "err", r.res.Err)
	}
	r.res.evaluate(s.Assert)
	return r.res, nil
}

// reroutes asks the lab, when it can tell, when the routers dropped the
// node of each injection step that ran.
func (r *runner) reroutes(ctx context.Context) {
	rr, ok := r.lab.(Rerouter)
	if !ok {
		return
	}
	ctx = context.WithoutCancel(ctx) // what was measured is the point
	for i := range r.res.Steps {
		sr := &r.res.Steps[i]
		if !sr.Ran || sr.Implied || !sr.Step.Kind.Inject() || sr.Step.Action.Node == "" {
			continue
		}
		d, ok, err := rr.Rerouted(ctx, sr.Step.Action.Node, r.res.Start.Add(sr.At))
		if err != nil {
			r.log.Warn("reroute time", "step", sr.Step.Label, "err", err)
			continue
		}
		if ok {
			sr.Reroute = &d
		}
	}
}

// steps runs the steps until one fails or ctx ends.
func (r *runner) steps(ctx context.Context) {
	for i := range r.res.Steps {
		sr := &r.res.Steps[i]
		if err := ctx.Err(); err != nil {
			r.res.Err = fmt.Errorf("interrupted before step %q: %w", sr.Step.Label, err)
			return
		}
		if r.do(ctx, sr); sr.Err != nil {
			return
		}
	}
}

// do runs one step and records it in sr, and in the result when it fails.
func (r *runner) do(ctx context.Context, sr *StepResult) {
	st := sr.Step
	sr.Ran = true
	sr.At = r.clk.Now().Sub(r.res.Start)
	err := r.exec(ctx, sr)
	sr.Took = r.clk.Now().Sub(r.res.Start) - sr.At
	if err != nil {
		sr.Err = err
		if r.res.Err == nil {
			r.res.Err = fmt.Errorf("step %q: %w", st.Label, err)
		}
		r.log.Warn("step failed", "step", st.Label, "at", sr.At, "err", err)
		return
	}
	r.log.Info("step", "step", st.Label, "at", sr.At, "took", sr.Took)
}

func (r *runner) exec(ctx context.Context, sr *StepResult) error {
	st := sr.Step
	switch st.Kind {
	case KindLoadStart:
		l, err := r.lab.StartLoad(ctx, r.s.Load)
		if err != nil {
			return fmt.Errorf("start the load: %w", err)
		}
		r.load = l
		return nil
	case KindLoadStop:
		// The load stops even after a Ctrl-C: what it measured is the
		// point of the run.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		l := r.load
		r.load = nil
		rep, err := l.Stop(sctx)
		if err != nil {
			return fmt.Errorf("stop the load: %w", err)
		}
		r.res.Report = rep
		return nil
	case KindSleep:
		return r.clk.Sleep(ctx, st.Sleep)
	case KindWait:
		return r.wait(ctx, st.Wait)
	}
	a := st.Action
	if a.Role == "" && len(a.Nodes) == 0 {
		return r.lab.Do(ctx, a)
	}
	nodes := a.Nodes
	if a.Role != "" {
		all, err := r.lab.Nodes(ctx, a.Role)
		if err != nil {
			return fmt.Errorf("nodes of role %s: %w", a.Role, err)
		}
		if len(all) == 0 {
			return fmt.Errorf("the lab has no node of role %s", a.Role)
		}
		nodes = Pick(all, a.Share, a.Seed)
	}
	sr.Nodes = nodes
	return r.doEach(ctx, a, nodes)
}

// doEach performs a on every node at once, as one action each.
func (r *runner) doEach(ctx context.Context, a Action, nodes []string) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		one := a
		one.Node, one.Nodes, one.Role, one.Share, one.Seed = n, nil, "", 0, 0
		wg.Go(func() {
			if err := r.lab.Do(ctx, one); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Pick returns share (a fraction) of nodes, at least one, chosen at random
// with seed: the same nodes for the same seed and nodes, whatever their
// order. They come sorted.
func Pick(nodes []string, share float64, seed int64) []string {
	sorted := slices.Sorted(slices.Values(nodes))
	n := min(max(int(math.Ceil(share*float64(len(sorted))-1e-9)), 1), len(sorted))
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5ce9a10))
	rng.Shuffle(len(sorted), func(i, j int) { sorted[i], sorted[j] = sorted[j], sorted[i] })
	picked := sorted[:n]
	slices.Sort(picked)
	return picked
}

// wait polls c until it holds or its timeout has passed.
func (r *runner) wait(ctx context.Context, c Condition) error {
	deadline := r.clk.Now().Add(c.Timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, max(deadline.Sub(r.clk.Now()), pollInterval))
		ok, why, err := r.lab.Check(cctx, c)
		expired := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case ok && err == nil:
			return nil
		case err != nil && !expired:
			return fmt.Errorf("check: %w", err)
		case expired || !r.clk.Now().Before(deadline):
			if why != "" {
				why = ": " + why
			}
			return fmt.Errorf("%w (%s)%s", ErrWaitTimeout, formatDuration(c.Timeout), why)
		}
		if err := r.clk.Sleep(ctx, min(pollInterval, deadline.Sub(r.clk.Now()))); err != nil {
			return err
		}
	}
}

// checkVIPs reports the VIPs that s names and the lab does not have.
func checkVIPs(s *Scenario, vips []VIP) error {
	have := map[string]bool{}
	var names []string
	for _, v := range vips {
		have[v.Name], have[v.Service] = true, true
		names = append(names, v.Name)
	}
	var missing []string
	note := func(name, where string) {
		if name != "" && !have[name] {
			missing = append(missing, fmt.Sprintf("%s (%s)", name, where))
		}
	}
	for _, v := range s.Load.VIPs {
		note(v, "load")
	}
	for _, st := range s.Steps {
		note(st.Wait.VIP, "step "+st.Label)
	}
	for i, a := range s.Assert {
		note(a.Scope.VIP, fmt.Sprintf("assertion %d", i+1))
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("the lab has no vip %s; it has %s", strings.Join(missing, ", "), strings.Join(names, ", "))
}
