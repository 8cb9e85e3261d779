package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/lab"
)

// fakeLab is a lab in memory: it answers from what the test set and
// records every call that changes something.
type fakeLab struct {
	mu     sync.Mutex
	status control.Status
	tiers  map[string]json.RawMessage // full status of LB4s and LB7s
	events []control.Event
	seq    uint64   // the last event's number
	sinces []uint64 // the since of every events poll
	calls  []string
	load   *fakeLoad
	// running are the loads the lab lists, progress what each reports.
	running  []control.LoadInfo
	progress map[string]*lab.LoadProgress // by node/id
	err      error                        // what the next action returns
	// hold, when set, holds every readiness answer until it is closed;
	// held then gets a value when a poll is held.
	hold, held chan struct{}
	// readinessPolls and tierPolls count the readiness and tier polls.
	readinessPolls, tierPolls int
}

func (f *fakeLab) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	err := f.err
	f.err = nil
	return err
}

func (f *fakeLab) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeLab) setAgent(name string, as control.AgentStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.status.Nodes {
		if f.status.Nodes[i].Name == name {
			f.status.Nodes[i].Agent = as
		}
	}
}

// addEvents adds evs to the log, numbered as they come, as the lab does.
func (f *fakeLab) addEvents(evs ...control.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range evs {
		f.seq++
		e.Seq = f.seq
		f.events = append(f.events, e)
	}
	slices.SortStableFunc(f.events, func(a, b control.Event) int { return a.Time.Compare(b.Time) })
}

func (f *fakeLab) Readiness(context.Context) (*control.Status, error) {
	f.mu.Lock()
	f.readinessPolls++
	st := f.status
	st.Nodes = slices.Clone(st.Nodes)
	hold, held := f.hold, f.held
	f.mu.Unlock()
	if hold != nil {
		select {
		case held <- struct{}{}:
		default:
		}
		<-hold
	}
	return &st, nil
}

func (f *fakeLab) StatusOf(_ context.Context, roles ...topology.Role) (*control.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tierPolls++
	st := f.status
	st.Nodes = nil
	for _, n := range f.status.Nodes {
		if slices.Contains(roles, topology.Role(n.Role)) {
			if n.Agent.State == "running" {
				n.Agent.Tier = f.tiers[n.Name]
			}
			st.Nodes = append(st.Nodes, n)
		}
	}
	return &st, nil
}

func (f *fakeLab) Events(_ context.Context, since uint64) ([]control.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sinces = append(f.sinces, since)
	var out []control.Event
	for _, e := range f.events {
		if e.Seq > since {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeLab) Loads(context.Context) ([]control.LoadInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.running), nil
}

func (f *fakeLab) WatchLoad(_ context.Context, node, id string) (*lab.LoadProgress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.progress[node+"/"+id]
	if p == nil {
		return nil, &control.APIError{Method: "GET", Path: "/v1/nodes/" + node + "/load/" + id, Code: 404, Message: fmt.Sprintf("no load %q", id)}
	}
	return p, nil
}

// setLoad makes load node/id run with progress p; nil p stops it.
func (f *fakeLab) setLoad(li control.LoadInfo, p *lab.LoadProgress) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = slices.DeleteFunc(f.running, func(o control.LoadInfo) bool { return o.Node == li.Node && o.ID == li.ID })
	if f.progress == nil {
		f.progress = map[string]*lab.LoadProgress{}
	}
	f.progress[li.Node+"/"+li.ID] = p
	if p != nil {
		f.running = append(f.running, li)
	}
}

func (f *fakeLab) Kill(_ context.Context, n string) error   { return f.record("kill %s", n) }
func (f *fakeLab) Freeze(_ context.Context, n string) error { return f.record("freeze %s", n) }
func (f *fakeLab) Revive(_ context.Context, n string) error { return f.record("revive %s", n) }
func (f *fakeLab) Maint(_ context.Context, n string, on bool) error {
	return f.record("maint %s %v", n, on)
}
func (f *fakeLab) SetLink(_ context.Context, n, other string, up bool) error {
	return f.record("link %s %s up=%v", n, other, up)
}

func (f *fakeLab) StartLoad(_ context.Context, cfg lab.LoadConfig) (Load, error) {
	if err := f.record("load from=%s workers=%d", cfg.From, cfg.Workers); err != nil {
		return nil, err
	}
	li := control.LoadInfo{Node: cfg.From, ID: "1", Targets: []string{"198.51.100.1:80", "198.51.100.2:80"}}
	f.setLoad(li, ownProgress)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.load = &fakeLoad{lab: f, info: li}
	return f.load, nil
}

// ownProgress is what the load started from the page reports: two VIPs,
// the second with a broken connection in its second second.
var ownProgress = &lab.LoadProgress{
	Elapsed: 3500 * time.Millisecond, Started: 30, Active: 20, OK: 9, Broken: 1,
	Seconds: []lab.LoadSecond{{Started: 20, OK: 3}, {Started: 5, OK: 4, Broken: 1}},
	ByTarget: map[string][]lab.LoadSecond{
		"198.51.100.1:80": {{OK: 2}, {OK: 2}},
		"198.51.100.2:80": {{OK: 1}, {OK: 2, Broken: 1}},
	},
}

type fakeLoad struct {
	lab  *fakeLab
	info control.LoadInfo
}

func (l *fakeLoad) Info() control.LoadInfo { return l.info }

func (l *fakeLoad) Stop(context.Context) (*lab.Report, error) {
	if err := l.lab.record("stop load"); err != nil {
		return nil, err
	}
	l.lab.setLoad(l.info, nil)
	return &lab.Report{Total: 40, OK: 39, Broken: 1, Interrupted: 2}, nil
}

func mustRaw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var t0 = time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)

func newFake(t *testing.T) *fakeLab {
	running := control.AgentStatus{State: "running", Ready: true}
	nodes := []control.NodeStatus{
		{Name: "client1", Role: "client", Interfaces: []control.InterfaceStatus{{Name: "edge", Segment: "edge", Addresses: []string{"192.0.2.1/27"}}}},
		{Name: "r1", Role: "router", Interfaces: []control.InterfaceStatus{{Name: "edge", Segment: "edge"}, {Name: "infra", Segment: "infra"}}},
		{Name: "lb4-1", Role: "lb4", Interfaces: []control.InterfaceStatus{{Name: "infra", Segment: "infra"}}},
		{Name: "lb4-2", Role: "lb4", Interfaces: []control.InterfaceStatus{{Name: "infra", Segment: "infra"}}},
		{Name: "lb7-1", Role: "lb7", Interfaces: []control.InterfaceStatus{{Name: "infra", Segment: "infra"}, {Name: "servers", Segment: "servers"}}},
		{Name: "server-1", Role: "server", Interfaces: []control.InterfaceStatus{{Name: "servers", Segment: "servers"}}},
	}
	for i := range nodes {
		nodes[i].Agent = running
	}
	f := &fakeLab{
		status: control.Status{Name: "minimal", Mode: control.ModeVM, Phase: "ready", Nodes: nodes, VIPs: []control.VIPStatus{
			{Name: "vip-1", Address: "198.51.100.1:80", Protocol: "tcp", Scheduler: "mh"},
			{Name: "vip-2", Address: "198.51.100.2:80", Protocol: "tcp", Scheduler: "sh"},
		}},
		tiers: map[string]json.RawMessage{
			"lb4-1": mustRaw(t, node.LB4Status{Announced: true}),
			"lb4-2": mustRaw(t, node.LB4Status{Announced: true}),
			"lb7-1": mustRaw(t, node.LB7Status{Enabler: []haproxy.ServerState{{Name: "enabler", Operational: "UP", Admin: "READY"}}}),
		},
	}
	f.addEvents(
		control.Event{Time: t0, Node: "r1", Kind: "bgp", Msg: "session with 192.0.2.130 established"},
		control.Event{Time: t0.Add(time.Second), Node: "lb4-1", Kind: "health", Msg: "lb7-1 healthy"},
	)
	return f
}

// fast polls every 10 ms.
var fast = Options{StatusInterval: 10 * time.Millisecond, TierInterval: 10 * time.Millisecond, EventInterval: 10 * time.Millisecond, LoadInterval: 10 * time.Millisecond, LoadListInterval: 10 * time.Millisecond}

// start serves a page of f with fast polling until the test ends.
func start(t *testing.T, f *fakeLab) (*httptest.Server, context.CancelFunc) {
	t.Helper()
	return startWith(t, f, fast)
}

// startWith serves a page of f with opts until the test ends.
func startWith(t *testing.T, f *fakeLab, opts Options) (*httptest.Server, context.CancelFunc) {
	t.Helper()
	s := New(f, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return srv, cancel
}

type sse struct {
	event string
	data  string
}

// stream is a page's stream, its messages sorted by kind.
type stream map[string]chan sse

// subscribe opens the page's stream and returns its messages.
func subscribe(t *testing.T, srv *httptest.Server) stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream Content-Type %q, want text/event-stream", ct)
	}
	ch := stream{}
	for _, k := range []string{msgStatus, msgEvents, msgLoad, msgLoads} {
		ch[k] = make(chan sse, 1000)
	}
	go func() {
		defer resp.Body.Close()
		defer func() {
			for _, c := range ch {
				close(c)
			}
		}()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var m sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if c, ok := ch[m.event]; ok {
					c <- m
				}
				m = sse{}
			case strings.HasPrefix(line, "event: "):
				m.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				m.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

// waitFor returns the first message of kind event that ok accepts.
func waitFor[T any](t *testing.T, s stream, event string, ok func(T) bool) T {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m, open := <-s[event]:
			if !open {
				t.Fatalf("stream ended while waiting for a %s message", event)
			}
			var v T
			if err := json.Unmarshal([]byte(m.data), &v); err != nil {
				t.Fatalf("%s message %q: %v", event, m.data, err)
			}
			if ok(v) {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %s message as wanted within 5s", event)
			return zero
		}
	}
}

func states(m statusMsg) map[string]string {
	out := map[string]string{}
	for _, n := range m.Nodes {
		out[n.Name] = n.State
	}
	return out
}

func TestStreamDeliversStatusAndNewEvents(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	ch := subscribe(t, srv)

	st := waitFor(t, ch, msgStatus, func(m statusMsg) bool { return len(m.Nodes) == 6 && m.Nodes[2].State == StateReady })
	if st.Name != "minimal" || st.Mode != control.ModeVM {
		t.Errorf("status names lab %q mode %q", st.Name, st.Mode)
	}
	if diff := cmp.Diff([]string{"infra", "servers"}, st.Nodes[4].Links); diff != "" {
		t.Errorf("links of lb7-1 (-want +got):\n%s", diff)
	}
	// The greeting has the log so far, which may be empty when the page
	// came before the first poll: then the log follows.
	first := waitFor(t, ch, msgEvents, func(eventsMsg) bool { return true })
	if !first.Replace {
		t.Fatalf("first events message does not replace the page's log")
	}
	evs := first.Events
	for len(evs) < 2 {
		evs = append(evs, waitFor(t, ch, msgEvents, func(eventsMsg) bool { return true }).Events...)
	}
	if len(evs) != 2 {
		t.Fatalf("first events: %d, want the whole log of 2", len(evs))
	}

	// A kill, an LB4 in maintenance, an LB7 whose agent says down, a slow
	// agent: the picture changes, and only the new event comes.
	f.setAgent("lb4-2", control.AgentStatus{State: "killed"})
	f.mu.Lock()
	f.tiers["lb4-1"] = mustRaw(t, node.LB4Status{Disabled: true})
	f.tiers["lb7-1"] = mustRaw(t, node.LB7Status{Enabler: []haproxy.ServerState{{Name: "enabler", Operational: "DOWN", Admin: "READY"}}})
	f.mu.Unlock()
	f.setAgent("r1", control.AgentStatus{State: "running", Ready: false, Waiting: "198.51.100.1/32 has 1 of 2 next hops"})
	f.setAgent("server-1", control.AgentStatus{State: "unreachable", Error: "dial: no such file"})
	kill := control.Event{Time: t0.Add(2 * time.Second), Node: "lb4-2", Kind: control.EventInject, Msg: "kill: every process of the node killed, links up"}
	f.addEvents(kill)

	want := map[string]string{
		"client1": StateReady, "r1": StateWaiting, "lb4-1": StateMaintenance, "lb4-2": StateKilled,
		"lb7-1": StateMaintenance, "server-1": StateUnreachable,
	}
	st = waitFor(t, ch, msgStatus, func(m statusMsg) bool { return cmp.Equal(states(m), want) })
	if st.Nodes[1].Detail != "198.51.100.1/32 has 1 of 2 next hops" {
		t.Errorf("r1's detail %q, want what it waits for", st.Nodes[1].Detail)
	}
	ev := waitFor(t, ch, msgEvents, func(eventsMsg) bool { return true })
	if ev.Replace || len(ev.Events) != 1 || !ev.Events[0].Time.Equal(kill.Time) || ev.Events[0].Msg != kill.Msg {
		t.Errorf("events after the kill: %+v, want the kill alone", ev)
	}

	// An event that shows up late, older than the last one sent (a node
	// that answered late), still comes, once.
	late := control.Event{Time: t0.Add(1500 * time.Millisecond), Node: "lb7-1", Kind: "health", Msg: "late"}
	f.addEvents(late)
	ev = waitFor(t, ch, msgEvents, func(eventsMsg) bool { return true })
	if len(ev.Events) != 1 || ev.Events[0].Msg != "late" {
		t.Errorf("late event: got %+v", ev)
	}

	// A page that connects now gets the whole picture at once.
	ch2 := subscribe(t, srv)
	st2 := waitFor(t, ch2, msgStatus, func(statusMsg) bool { return true })
	if !cmp.Equal(states(st2), want) {
		t.Errorf("second page's status %v, want %v", states(st2), want)
	}
	ev2 := waitFor(t, ch2, msgEvents, func(eventsMsg) bool { return true })
	if !ev2.Replace || len(ev2.Events) != 4 {
		t.Errorf("second page's events: replace %v, %d events, want the 4 so far", ev2.Replace, len(ev2.Events))
	}
}

// TestInjectionShownBeforeReadiness: a kill shows as soon as the event log
// has it, while the readiness poll under way (asked before the kill) still
// says ready; the next readiness poll decides.
func TestInjectionShownBeforeReadiness(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return states(m)["lb4-2"] == StateReady })
	waitFor(t, ch, msgEvents, func(m eventsMsg) bool { return len(m.Events) > 0 })

	hold, held := make(chan struct{}), make(chan struct{}, 1)
	f.mu.Lock()
	f.hold, f.held = hold, held
	f.mu.Unlock()
	select { // a readiness poll is now held
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no readiness poll within 10s")
	}
	f.addEvents(control.Event{Time: t0.Add(time.Minute), Node: "lb4-2", Kind: control.EventInject, Msg: "kill: every process of the node killed, links up"})
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return states(m)["lb4-2"] == StateKilled })

	// The held poll says ready, but it was asked before the kill: the page
	// keeps showing the kill until a poll asked after it answers (here
	// waiting, as a revived node would be), never ready in between.
	f.setAgent("lb4-2", control.AgentStatus{State: "running", Waiting: "VIPs not announced"})
	f.mu.Lock()
	f.hold = nil
	f.mu.Unlock()
	close(hold)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool {
		s := states(m)["lb4-2"]
		if s == StateReady {
			t.Errorf("lb4-2 shown ready by a poll asked before its kill")
		}
		return s == StateWaiting
	})
}

// post sends an action as the page does (with its header, unless header
// is false) and returns the status code and body.
func post(t *testing.T, srv *httptest.Server, path string, header bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
	if header {
		req.Header.Set(ActionHeader, "1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestActions(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	// The handlers check nodes against the first status.
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return len(m.Nodes) == 6 })

	for _, tc := range []struct {
		path   string
		noHdr  bool
		code   int
		call   string
		inBody string
	}{
		{path: "/api/nodes/lb4-2/kill", code: 204, call: "kill lb4-2"},
		{path: "/api/nodes/lb4-2/freeze", code: 204, call: "freeze lb4-2"},
		{path: "/api/nodes/lb4-2/revive", code: 204, call: "revive lb4-2"},
		{path: "/api/nodes/lb4-1/maint?state=on", code: 204, call: "maint lb4-1 true"},
		{path: "/api/nodes/lb7-1/maint?state=off", code: 204, call: "maint lb7-1 false"},
		{path: "/api/nodes/lb4-1/links/infra?state=down", code: 204, call: "link lb4-1 infra up=false"},
		{path: "/api/nodes/r1/links/edge?state=up", code: 204, call: "link r1 edge up=true"},

		{path: "/api/nodes/lb4-1/maint", code: 400, inBody: "want on or off"},
		{path: "/api/nodes/lb4-1/maint?state=sideways", code: 400, inBody: "want on or off"},
		{path: "/api/nodes/server-1/maint?state=on", code: 400, inBody: "server"},
		{path: "/api/nodes/lb4-1/explode", code: 400, inBody: "want kill"},
		{path: "/api/nodes/LB4_1/kill", code: 400, inBody: "not a node name"},
		{path: "/api/nodes/lb4-1/links/infra?state=off", code: 400, inBody: "want up or down"},
		{path: "/api/nodes/lb4-1/links/In%20fra?state=down", code: 400, inBody: "not a segment"},
		{path: "/api/load/start?workers=many", code: 400, inBody: "workers"},
		{path: "/api/load/start?workers=0", code: 400, inBody: "workers"},
		{path: "/api/load/pause", code: 400, inBody: "want start or stop"},
		{path: "/api/nodes/lb9-9/kill", code: 404, inBody: "no node lb9-9"},
		{path: "/api/nodes/lb4-2/kill", noHdr: true, code: 403, inBody: ActionHeader},
	} {
		code, body := post(t, srv, tc.path, !tc.noHdr)
		if code != tc.code || !strings.Contains(body, tc.inBody) {
			t.Errorf("POST %s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.inBody)
		}
		var want []string
		if tc.call != "" {
			want = []string{tc.call}
		}
		if diff := cmp.Diff(want, f.takeCalls()); diff != "" {
			t.Errorf("POST %s: calls (-want +got):\n%s", tc.path, diff)
		}
	}

	// The lab's refusal comes through with its code and message.
	f.err = &control.APIError{Method: "POST", Path: "/v1/nodes/lb4-2/revive", Code: 409, Message: "lb4-2 is not killed"}
	if code, body := post(t, srv, "/api/nodes/lb4-2/revive", true); code != 409 || !strings.Contains(body, "lb4-2 is not killed") {
		t.Errorf("refused revive: %d %q", code, body)
	}
	f.err = errors.New("connection refused")
	if code, _ := post(t, srv, "/api/nodes/lb4-2/kill", true); code != http.StatusBadGateway {
		t.Errorf("failed kill: %d, want 502", code)
	}
	f.takeCalls()
}

// TestActionPollsAtOnce: after an action, the page does not wait for the
// next tier poll (here an hour away) to show its effect.
func TestActionPollsAtOnce(t *testing.T) {
	f := newFake(t)
	opts := fast
	opts.TierInterval = time.Hour
	srv, _ := startWith(t, f, opts)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return states(m)["lb4-1"] == StateReady })
	f.waitTierPoll(t) // the first tier poll is over
	f.mu.Lock()
	f.tiers["lb4-1"] = mustRaw(t, node.LB4Status{Disabled: true})
	f.mu.Unlock()
	if code, body := post(t, srv, "/api/nodes/lb4-1/maint?state=on", true); code != 204 {
		t.Fatalf("maint on: %d %q", code, body)
	}
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return states(m)["lb4-1"] == StateMaintenance })
}

// TestPollsOnlyForPages: with no page open, the lab is left alone.
func TestPollsOnlyForPages(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	time.Sleep(100 * time.Millisecond)
	f.mu.Lock()
	n := f.readinessPolls
	f.mu.Unlock()
	if n != 0 {
		t.Errorf("%d readiness polls with no page open", n)
	}
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return len(m.Nodes) == 6 })
}

func TestPause(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		interval, took time.Duration
		paced          bool
		want           time.Duration
	}{
		{500 * ms, 10 * ms, true, 490 * ms}, // a quick lab: every 500 ms
		{500 * ms, 250 * ms, true, 250 * ms},
		{500 * ms, 2000 * ms, true, 2000 * ms}, // a busy lab: busy half of the time
		{250 * ms, 10 * ms, false, 240 * ms},
		{250 * ms, 2000 * ms, false, 0}, // the event log: at once
	} {
		if got := pause(tc.interval, tc.took, tc.paced); got != tc.want {
			t.Errorf("pause(%s, %s, %v) = %s, want %s", tc.interval, tc.took, tc.paced, got, tc.want)
		}
	}
}

// TestTiersPolledOnEvents: a maintenance file written behind the page's
// back (lab maint in a terminal) shows as soon as the log has it, not at
// the next tier poll (here an hour away).
func TestTiersPolledOnEvents(t *testing.T) {
	f := newFake(t)
	opts := fast
	opts.TierInterval = time.Hour
	srv, _ := startWith(t, f, opts)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return states(m)["lb7-1"] == StateReady })
	waitFor(t, ch, msgEvents, func(m eventsMsg) bool { return len(m.Events) > 0 })
	f.waitTierPoll(t) // the first tier poll is over
	f.mu.Lock()
	f.tiers["lb7-1"] = mustRaw(t, node.LB7Status{Enabler: []haproxy.ServerState{{Name: "enabler", Operational: "DOWN", Admin: "READY"}}})
	f.mu.Unlock()
	f.addEvents(control.Event{Time: t0.Add(time.Minute), Node: "lb7-1", Kind: "maintenance", Msg: `/etc/lb/agent-check: "down #lab maint\n"`})
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return states(m)["lb7-1"] == StateMaintenance })
}

func TestHostChecked(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Host = "attacker.example:8080" // a name rebound to 127.0.0.1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET / with Host attacker.example: %d, want 403", resp.StatusCode)
	}
	s := &Server{}
	for host, want := range map[string]bool{"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:80": true, "10.1.2.3:8080": false, "example.org": false} {
		if got := s.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// ownView finds the page's own load in a loads message.
func ownView(m loadsMsg) (loadView, bool) {
	for _, v := range m.Loads {
		if v.Own {
			return v, true
		}
	}
	return loadView{}, false
}

// goldenLoads compares a loads message with a golden file, its loads'
// start times (this host's clock) left out.
func goldenLoads(t *testing.T, path string, m loadsMsg) {
	t.Helper()
	for i := range m.Loads {
		m.Loads[i].Start = time.Time{}
	}
	slices.SortFunc(m.Loads, func(a, b loadView) int { return strings.Compare(a.Node+"/"+a.ID, b.Node+"/"+b.ID) })
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, path, append(b, '\n'))
}

func TestLoadFromThePage(t *testing.T) {
	f := newFake(t)
	srv, cancel := start(t, f)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return len(m.Nodes) == 6 })
	waitFor(t, ch, msgLoad, func(m loadMsg) bool { return m.State == LoadIdle })

	if code, body := post(t, srv, "/api/load/start", true); code != 204 {
		t.Fatalf("start load: %d %q", code, body)
	}
	if diff := cmp.Diff([]string{"load from=client1 workers=20"}, f.takeCalls()); diff != "" {
		t.Errorf("start load: calls (-want +got):\n%s", diff)
	}
	lm := waitFor(t, ch, msgLoad, func(m loadMsg) bool { return m.State == LoadRunning })
	if lm.From != "client1" || lm.Node != "client1" || lm.ID != "1" {
		t.Errorf("load message %+v, want the load 1 of client1", lm)
	}
	// One series per VIP, named after the lab's VIPs, 3 complete seconds.
	m := waitFor(t, ch, msgLoads, func(m loadsMsg) bool {
		v, ok := ownView(m)
		return ok && v.Elapsed > 0
	})
	if v, _ := ownView(m); v.Start.IsZero() || len(m.Loads) != 1 {
		t.Errorf("loads %+v, want the page's own alone, with its start", m)
	}
	goldenLoads(t, "testdata/own-load.json", m)

	if code, body := post(t, srv, "/api/load/start", true); code != http.StatusConflict {
		t.Errorf("second start: %d %q, want 409", code, body)
	}
	if code, body := post(t, srv, "/api/load/stop", true); code != 204 {
		t.Fatalf("stop load: %d %q", code, body)
	}
	lm = waitFor(t, ch, msgLoad, func(m loadMsg) bool { return m.State == LoadIdle && m.Report != nil })
	if *lm.Report != (reportView{Total: 40, OK: 39, Broken: 1, Interrupted: 2}) {
		t.Errorf("stopped load: %+v", lm)
	}
	// Its charts stay, marked ended.
	waitFor(t, ch, msgLoads, func(m loadsMsg) bool {
		v, ok := ownView(m)
		return ok && !v.Running && len(v.VIPs) == 2 && len(v.VIPs[0].Seconds) == 3
	})
	if code, _ := post(t, srv, "/api/load/stop", true); code != http.StatusConflict {
		t.Errorf("second stop: %d, want 409", code)
	}
	if diff := cmp.Diff([]string{"stop load"}, f.takeCalls()); diff != "" {
		t.Errorf("stop load: calls (-want +got):\n%s", diff)
	}

	// A load still running when the server stops is stopped with it.
	if code, body := post(t, srv, "/api/load/start?workers=7", true); code != 204 {
		t.Fatalf("start load: %d %q", code, body)
	}
	cancel()
	testenv.EventuallyEvery(t, 5*time.Second, 10*time.Millisecond, "the load stopped with the server", func() error {
		f.mu.Lock()
		calls := slices.Clone(f.calls)
		f.mu.Unlock()
		if !slices.Contains(calls, "stop load") {
			return fmt.Errorf("calls %v", calls)
		}
		if diff := cmp.Diff([]string{"load from=client1 workers=7", "stop load"}, calls); diff != "" {
			t.Errorf("calls as the server stops (-want +got):\n%s", diff)
		}
		return nil
	})
}

// TestLoadsStartedElsewhere: loads that `lab load` or a scenario started
// are charted too, one series per VIP (a failed lookup's name has its
// own), and stay charted, ended, once they stop.
func TestLoadsStartedElsewhere(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgLoads, func(m loadsMsg) bool { return len(m.Loads) == 0 })

	byName := control.LoadInfo{Node: "client1", ID: "3", Names: []string{"www.lab.example.:80"}, Workers: 200}
	f.setLoad(byName, &lab.LoadProgress{
		Elapsed: 2200 * time.Millisecond, Started: 12, Active: 8, OK: 3, DNSFailed: 1,
		ByTarget: map[string][]lab.LoadSecond{
			"198.51.100.2:80":     {{OK: 1}, {OK: 1}},
			"198.51.100.1:80":     {{OK: 1}},
			"www.lab.example.:80": {{}, {DNSFailed: 1}},
		},
	})
	byVIP := control.LoadInfo{Node: "r1", ID: "1", Targets: []string{"198.51.100.2:80"}, Workers: 5}
	f.setLoad(byVIP, &lab.LoadProgress{
		Elapsed: 1100 * time.Millisecond, Started: 6, Active: 5, OK: 1, Interrupted: 1,
		ByTarget: map[string][]lab.LoadSecond{"198.51.100.2:80": {{OK: 1, Interrupted: 1}}},
	})
	m := waitFor(t, ch, msgLoads, func(m loadsMsg) bool {
		return len(m.Loads) == 2 && m.Loads[0].Elapsed > 0 && m.Loads[1].Elapsed > 0
	})
	goldenLoads(t, "testdata/loads.json", m)

	f.setLoad(byVIP, nil)
	waitFor(t, ch, msgLoads, func(m loadsMsg) bool {
		for _, v := range m.Loads {
			if v.Node == "r1" {
				return !v.Running && v.OK == 1
			}
		}
		return false
	})
}

// TestLinksFromStatus: the links shown down are those the lab's state
// says, not those the event log told of.
func TestLinksFromStatus(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgStatus, func(m statusMsg) bool { return len(m.Nodes) == 6 && len(m.DownLinks) == 0 })
	f.mu.Lock()
	f.status.DownLinks = []control.LinkStatus{{Node: "lb4-1", Link: "infra"}}
	f.mu.Unlock()
	// An event that says otherwise changes nothing.
	f.addEvents(control.Event{Time: t0.Add(time.Minute), Node: "lb4-2", Kind: control.EventInject, Msg: "link infra down"})
	m := waitFor(t, ch, msgStatus, func(m statusMsg) bool { return len(m.DownLinks) > 0 })
	if diff := cmp.Diff([]control.LinkStatus{{Node: "lb4-1", Link: "infra"}}, m.DownLinks); diff != "" {
		t.Errorf("links down (-want +got):\n%s", diff)
	}
}

// TestEventsSince: after the first read, the page's server asks only for
// the events after the last one it has.
func TestEventsSince(t *testing.T) {
	f := newFake(t)
	srv, _ := start(t, f)
	ch := subscribe(t, srv)
	waitFor(t, ch, msgEvents, func(m eventsMsg) bool { return len(m.Events) == 2 })
	f.addEvents(control.Event{Time: t0.Add(time.Minute), Node: "lb4-2", Kind: "health", Msg: "third"})
	waitFor(t, ch, msgEvents, func(m eventsMsg) bool { return len(m.Events) == 1 && m.Events[0].Msg == "third" })
	testenv.EventuallyEvery(t, 5*time.Second, 5*time.Millisecond, "a poll after the third event", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.sinces[len(f.sinces)-1] != 3 {
			return fmt.Errorf("polls asked since %v", f.sinces)
		}
		return nil
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sinces[0] != 0 || !slices.IsSorted(f.sinces) {
		t.Errorf("polls asked since %v, want 0 first, then never back", f.sinces)
	}
}

func TestStaticFiles(t *testing.T) {
	srv, _ := start(t, newFake(t))
	for path, want := range map[string]string{"/": `id="lab"`, "/app.js": "EventSource", "/style.css": "--killed"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body without %q", path, resp.StatusCode, want)
		}
	}
}

func TestViewOf(t *testing.T) {
	lb4 := func(st node.LB4Status) json.RawMessage { return mustRaw(t, st) }
	for _, tc := range []struct {
		name  string
		role  string
		agent control.AgentStatus
		want  string
	}{
		{"ready", "router", control.AgentStatus{State: "running", Ready: true}, StateReady},
		{"waiting", "router", control.AgentStatus{State: "running", Waiting: "bgp"}, StateWaiting},
		{"killed", "lb4", control.AgentStatus{State: "killed"}, StateKilled},
		{"frozen", "lb4", control.AgentStatus{State: "frozen"}, StateFrozen},
		{"exited", "lb7", control.AgentStatus{State: "exited"}, StateExited},
		{"slow", "lb7", control.AgentStatus{State: "slow"}, StateSlow},
		{"odd state", "lb7", control.AgentStatus{State: "gone fishing"}, StateUnreachable},
		{"lb4 disabled", "lb4", control.AgentStatus{State: "running", Ready: true, Tier: lb4(node.LB4Status{Disabled: true})}, StateMaintenance},
		{"lb4 withdrawn", "lb4", control.AgentStatus{State: "running", Waiting: "VIPs not announced", Tier: lb4(node.LB4Status{})}, StateWithdrawn},
		{"lb4 announced", "lb4", control.AgentStatus{State: "running", Ready: true, Tier: lb4(node.LB4Status{Announced: true})}, StateReady},
		{"lb7 agent maint", "lb7", control.AgentStatus{State: "running", Tier: mustRaw(t, node.LB7Status{Enabler: []haproxy.ServerState{{Operational: "UP", Admin: "MAINT"}}})}, StateMaintenance},
		{"lb7 no tier", "lb7", control.AgentStatus{State: "running", Ready: true, Tier: mustRaw(t, node.LB7Status{})}, StateReady},
	} {
		n := control.NodeStatus{Name: "n", Role: tc.role, Agent: tc.agent}
		var ti tierInfo
		if tc.agent.State == "running" && (tc.role == "lb4" || tc.role == "lb7") {
			ti = tierOf(tc.role, tc.agent)
		}
		if got := viewOf(n, ti).State; got != tc.want {
			t.Errorf("%s: state %q, want %q", tc.name, got, tc.want)
		}
	}
}

// waitTierPoll waits until the server has polled the tiers once.
func (f *fakeLab) waitTierPoll(t *testing.T) {
	t.Helper()
	testenv.EventuallyEvery(t, 10*time.Second, 5*time.Millisecond, "a tier poll", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.tierPolls == 0 {
			return fmt.Errorf("no tier poll yet")
		}
		return nil
	})
}
