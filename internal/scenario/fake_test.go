package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/traffic"
)

// t0 is the start of every fake run.
var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// ms returns n milliseconds.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// The VIPs of the fake lab.
var (
	vipWWW = VIP{Name: "www", Target: netip.MustParseAddrPort("192.0.2.1:80"), Scheduler: "mh"}
	vipAPI = VIP{Name: "api", Target: netip.MustParseAddrPort("192.0.2.2:80"), Scheduler: "wlc"}
)

// conn returns a connection to vip from start to end (milliseconds from
// t0), served by lb7, with its outcome.
func conn(id int, vip VIP, startMS, endMS int, lb7 string, o traffic.Outcome) traffic.Conn {
	c := traffic.Conn{
		ID: id, Source: netip.MustParseAddr("203.0.113.1"), SourcePort: uint16(40000 + id), Target: vip.Target,
		LB7: lb7, Start: t0.Add(ms(startMS)), End: t0.Add(ms(endMS)), Outcome: o,
	}
	if lb7 != "" {
		c.Status = 200
	}
	if o != traffic.OutcomeOK {
		c.Err = "read body: " + string(o)
	}
	return c
}

// interrupted marks c as interrupted.
func interrupted(c traffic.Conn) traffic.Conn {
	c.Interrupted = true
	c.LongestStall = 1500 * time.Millisecond
	return c
}

// fakeClock is a clock that moves only when slept on: runs take no time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.advance(d)
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// answer is one reply of fakeLab.Check.
type answer struct {
	ok  bool
	why string
	err error
}

// fakeLab records what a run asks and answers from a script.
type fakeLab struct {
	clk  *fakeClock
	vips []VIP
	// doTakes is how long every Do takes on the fake clock.
	doTakes time.Duration
	// doErr fails the Do of an action, by its default label.
	doErr map[string]error
	// checks scripts the answers per condition, by the wait step's
	// default label; the last answer repeats. A condition without a
	// script holds.
	checks map[string][]answer
	// onDo and onCheck run before Do and Check answer.
	onDo    func(Action)
	onCheck func(Condition)
	// conns are the connections the load reports.
	conns    []traffic.Conn
	startErr error
	stopErr  error

	// roles lists the nodes of each role, for Nodes.
	roles map[string][]string

	mu        sync.Mutex // guards calls: a step into several nodes calls Do at once
	calls     []string
	stopCtxOK bool // the context given to Stop was live
	loads     []Load
}

func (l *fakeLab) Nodes(_ context.Context, role string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, "nodes "+role)
	return l.roles[role], nil
}

func (l *fakeLab) VIPs(context.Context) ([]VIP, error) {
	l.calls = append(l.calls, "vips")
	return l.vips, nil
}

func (l *fakeLab) Do(ctx context.Context, a Action) error {
	label := Step{Kind: a.Kind, Action: a}.DefaultLabel()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, "do "+label)
	if l.onDo != nil {
		l.onDo(a)
	}
	l.clk.advance(l.doTakes)
	return l.doErr[label]
}

func (l *fakeLab) Check(ctx context.Context, c Condition) (bool, string, error) {
	label := Step{Kind: KindWait, Wait: c}.DefaultLabel()
	l.calls = append(l.calls, "check "+label)
	if l.onCheck != nil {
		l.onCheck(c)
	}
	script := l.checks[label]
	if len(script) == 0 {
		return true, "", nil
	}
	a := script[0]
	if len(script) > 1 {
		l.checks[label] = script[1:]
	}
	return a.ok, a.why, a.err
}

func (l *fakeLab) StartLoad(ctx context.Context, ld Load) (LoadRun, error) {
	l.calls = append(l.calls, "start")
	l.loads = append(l.loads, ld)
	if l.startErr != nil {
		return nil, l.startErr
	}
	return &fakeLoad{lab: l, start: l.clk.Now(), mode: traffic.Mode(ld.Mode)}, nil
}

// fakeLoad is the load of a fakeLab.
type fakeLoad struct {
	lab     *fakeLab
	start   time.Time
	mode    traffic.Mode
	stopped bool
}

func (f *fakeLoad) Stop(ctx context.Context) (*traffic.Report, error) {
	f.lab.calls = append(f.lab.calls, "stop")
	f.lab.stopCtxOK = ctx.Err() == nil
	if f.stopped {
		return nil, errors.New("stopped twice")
	}
	f.stopped = true
	if f.lab.stopErr != nil {
		return nil, f.lab.stopErr
	}
	rep := &traffic.Report{
		Mode: f.mode, Start: f.start, End: f.lab.clk.Now(), ReadTimeout: 3 * time.Second, StallThreshold: time.Second,
		Conns: f.lab.conns,
	}
	if f.mode == traffic.ModeRequests {
		q := &traffic.RequestReport{Workers: 10, Rate: 10, Requests: len(rep.Conns)}
		for _, c := range rep.Conns {
			if c.Outcome != traffic.OutcomeOK {
				q.Errors++
			}
		}
		q.ErrorRatio = float64(q.Errors) / float64(max(q.Requests, 1))
		rep.Requests = q
	}
	return rep, nil
}

// stepLine summarises a StepResult for comparisons.
func stepLine(s StepResult) string {
	switch {
	case !s.Ran:
		return "- " + s.Step.Label
	case s.Err != nil:
		return fmt.Sprintf("%s %s %s: %v", offset(s.At), s.Step.Label, formatDuration(s.Took), s.Err)
	default:
		implied := ""
		if s.Implied {
			implied = " (implied)"
		}
		return fmt.Sprintf("%s %s %s%s", offset(s.At), s.Step.Label, formatDuration(s.Took), implied)
	}
}

// mustParse parses a scenario written in a test.
func mustParse(t *testing.T, yaml string) *Scenario {
	t.Helper()
	s, err := Parse("test.yaml", []byte(strings.TrimLeft(yaml, "\n")))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return s
}
