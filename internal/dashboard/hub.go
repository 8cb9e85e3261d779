package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/lab"
)

// pollTimeout bounds one poll of the lab: a busy VM may take seconds to
// answer, and the next poll of that kind waits for this one.
const pollTimeout = 15 * time.Second

// loadTimeout bounds starting or stopping a load (stopping returns the
// report of every connection).
const loadTimeout = time.Minute

// maxBacklog is how many events a page that connects gets at once.
const maxBacklog = 2000

// subscriberBuffer is how many messages a page may lag behind; a page
// further behind is dropped, and its browser reconnects and starts afresh.
const subscriberBuffer = 256

// SSE event names.
const (
	msgStatus = "status"
	msgEvents = "events"
	msgLoad   = "load"
	msgLoads  = "loads"
)

// maxEnded is how many loads that ended the page keeps charting.
const maxEnded = 3

// errStopped answers what comes after the server has stopped.
var errStopped = errors.New("the page's server is stopping")

// errLoadBusy refuses a start while a load runs, or a stop while none does.
var errLoadBusy = errors.New("load busy")

// message is one server-sent event.
type message struct {
	event string
	data  []byte
}

// subscriber is an open page.
type subscriber struct{ ch chan message }

// loadReq asks the hub to start (with workers) or stop the page's load.
type loadReq struct {
	start   bool
	workers int
	reply   chan error // buffered: the asker may be gone
}

type statusResult struct {
	st   *control.Status
	err  error
	took time.Duration
	gen  int // the readiness poll's number, from 1
}

type eventsResult struct {
	evs  []control.Event
	err  error
	took time.Duration
}

type loadStarted struct {
	ld  Load
	err error
	at  time.Time
}

type loadStopped struct {
	rep *lab.Report
	err error
}

type loadsResult struct {
	lds  []control.LoadInfo
	err  error
	took time.Duration
}

type progressResult struct {
	key loadKey
	p   *lab.LoadProgress
	err error
	at  time.Time
}

// loadKey names a load in the lab.
type loadKey struct{ node, id string }

// charted is a load the page charts, and its polling.
type charted struct {
	view  loadView
	busy  bool      // a progress poll is under way
	ended time.Time // when it left the lab's list; zero while it runs
}

// hub is the goroutine that owns the polling state: it polls the lab,
// keeps the last picture of it, and sends what changed to every page.
// Everything else talks to it through its channels; the polls themselves
// run in goroutines of their own (one at a time of each kind), so that a
// slow answer delays nothing else.
type hub struct {
	lab  Lab
	opts Options
	log  *slog.Logger

	subscribe   chan *subscriber
	unsubscribe chan *subscriber
	loadReqs    chan loadReq
	kick        chan struct{} // poll the nodes now: the page changed something
	done        chan struct{}

	// Results of the polls, each buffered for the one poll in flight.
	readiness chan statusResult
	tiers     chan statusResult
	events    chan eventsResult
	loads     chan loadsResult
	progress  chan progressResult
	started   chan loadStarted
	stopped   chan loadStopped

	// roles is the nodes of the last status and their roles, for the
	// handlers to check requests against; written by the hub only.
	roles atomic.Pointer[map[string]string]
}

func newHub(l Lab, opts Options) *hub {
	return &hub{
		lab: l, opts: opts, log: opts.Log,
		subscribe:   make(chan *subscriber),
		unsubscribe: make(chan *subscriber),
		loadReqs:    make(chan loadReq),
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		readiness:   make(chan statusResult, 1),
		tiers:       make(chan statusResult, 1),
		events:      make(chan eventsResult, 1),
		loads:       make(chan loadsResult, 1),
		progress:    make(chan progressResult, 16),
		started:     make(chan loadStarted, 1),
		stopped:     make(chan loadStopped, 1),
	}
}

// join subscribes a page.
func (h *hub) join(ctx context.Context) (*subscriber, error) {
	sub := &subscriber{ch: make(chan message, subscriberBuffer)}
	select {
	case h.subscribe <- sub:
		return sub, nil
	case <-h.done:
		return nil, errStopped
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// leave unsubscribes a page.
func (h *hub) leave(sub *subscriber) {
	select {
	case h.unsubscribe <- sub:
	case <-h.done:
	}
}

// askLoad hands a start or stop of the page's load to the hub and waits
// for its outcome.
func (h *hub) askLoad(ctx context.Context, start bool, workers int) error {
	req := loadReq{start: start, workers: workers, reply: make(chan error, 1)}
	select {
	case h.loadReqs <- req:
	case <-h.done:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poke asks for a poll of the nodes' state now (or as soon as the polls
// under way are over), after an action that changed it.
func (h *hub) poke() {
	select {
	case h.kick <- struct{}{}:
	default: // one is pending already
	}
}

// roleOf returns the role of node in the last status; known is false when
// there is a status and it has no such node; ok is false before the first
// status.
func (h *hub) roleOf(node string) (role string, known, ok bool) {
	m := h.roles.Load()
	if m == nil {
		return "", false, false
	}
	role, known = (*m)[node]
	return role, known, true
}

// state is the hub's own: only its goroutine touches it.
type state struct {
	subs map[*subscriber]struct{}

	readinessPoll, tiersPoll, eventsPoll, loadsPoll *poller
	// idle is set while no page is open: nothing is polled then.
	idle bool
	// readinessPolls counts the readiness polls started, eventPolls the
	// event polls done.
	readinessPolls, eventPolls int

	// injected holds what the event log said of a node (killed, frozen,
	// revived) since the last readiness poll that started after it.
	injected map[string]injected

	// last is the last readiness answer that worked, tiers what the LB4s'
	// and LB7s' full status said of each that was running.
	last      *control.Status
	lastErr   string
	tiers     map[string]tierInfo
	statusMsg []byte // the last status message sent

	// since is the number of the last event seen.
	since   uint64
	backlog []control.Event

	load        loadMsg
	ld          Load
	pendingLoad chan error // the reply to the start or stop under way
	// loads are the loads charted: running in the lab, or ended lately.
	loads map[loadKey]*charted
}

// poller paces one kind of poll: one at a time, every interval. A paced
// poller, after a poll that took longer than half the interval, waits as
// long again before the next, so that it keeps the lab busy half of the
// time at most: in a VM whose one CPU a load already keeps busy,
// back-to-back polls of every agent stall the load's connections. The
// event log is not paced: it is where an injection shows first.
type poller struct {
	interval time.Duration
	paced    bool
	timer    *time.Timer
	busy     bool
	again    bool // poll again as soon as the poll under way is over
}

func newPoller(interval time.Duration, paced bool) *poller {
	return &poller{interval: interval, paced: paced, timer: time.NewTimer(0)}
}

// begin reports whether a poll may start now; when one is under way, the
// next starts as soon as it is over.
func (p *poller) begin() bool {
	if p.busy {
		p.again = true
		return false
	}
	p.busy, p.again = true, false
	p.timer.Stop()
	return true
}

// end records a poll that took took, and reports whether to poll again at
// once; otherwise it arms the timer for the next poll.
func (p *poller) end(took time.Duration) bool {
	p.busy = false
	if p.again {
		return true
	}
	p.timer.Reset(pause(p.interval, took, p.paced))
	return false
}

// pause is how long to wait after a poll that took took before the next,
// of a kind polled every interval: what is left of the interval; when
// paced, at least as long as the poll took.
func pause(interval, took time.Duration, paced bool) time.Duration {
	if paced {
		return max(interval-took, took)
	}
	return max(interval-took, 0)
}

// injected is what an injection seen in the event log makes of a node
// until a readiness poll that started after it says otherwise: the
// supervisor marks a node killed or frozen as it logs the injection, so
// the page can show it as soon as the log does, while the readiness
// poll under way may still say ready.
type injected struct {
	state, detail string
	gen           int // readiness polls started when it was seen
}

func (h *hub) run(ctx context.Context) {
	defer close(h.done)
	st := &state{
		subs:          map[*subscriber]struct{}{},
		tiers:         map[string]tierInfo{},
		injected:      map[string]injected{},
		load:          loadMsg{State: LoadIdle},
		loads:         map[loadKey]*charted{},
		readinessPoll: newPoller(h.opts.StatusInterval, true),
		tiersPoll:     newPoller(h.opts.TierInterval, true),
		eventsPoll:    newPoller(h.opts.EventInterval, false),
		loadsPoll:     newPoller(h.opts.LoadListInterval, true),
	}
	defer st.readinessPoll.timer.Stop()
	defer st.tiersPoll.timer.Stop()
	defer st.eventsPoll.timer.Stop()
	defer st.loadsPoll.timer.Stop()
	loadTick := time.NewTicker(h.opts.LoadInterval)
	defer loadTick.Stop()

	for {
		select {
		case <-ctx.Done():
			h.shutdown(st)
			return
		case sub := <-h.subscribe:
			st.subs[sub] = struct{}{}
			h.greet(st, sub)
			if st.idle {
				// What happened meanwhile is history: the readiness
				// poll made now tells the nodes' state.
				st.idle, st.eventPolls = false, 0
				h.pollReadiness(ctx, st)
				h.pollTiers(ctx, st)
				h.pollEvents(ctx, st)
				h.pollLoads(ctx, st)
			}
		case sub := <-h.unsubscribe:
			if _, ok := st.subs[sub]; ok {
				delete(st.subs, sub)
				close(sub.ch)
			}

		case <-st.readinessPoll.timer.C:
			h.pollReadiness(ctx, st)
		case r := <-h.readiness:
			h.applyReadiness(st, r)
			if st.readinessPoll.end(r.took) {
				h.pollReadiness(ctx, st)
			}
		case <-st.tiersPoll.timer.C:
			h.pollTiers(ctx, st)
		case r := <-h.tiers:
			h.applyTiers(st, r)
			if st.tiersPoll.end(r.took) {
				h.pollTiers(ctx, st)
			}
		case <-h.kick:
			h.pollReadiness(ctx, st)
			h.pollTiers(ctx, st)
		case <-st.eventsPoll.timer.C:
			h.pollEvents(ctx, st)
		case r := <-h.events:
			h.applyEvents(ctx, st, r)
			if st.eventsPoll.end(r.took) {
				h.pollEvents(ctx, st)
			}

		case req := <-h.loadReqs:
			h.handleLoadReq(ctx, st, req)
		case r := <-h.started:
			h.applyStarted(st, r)
		case r := <-h.stopped:
			h.applyStopped(st, r)
		case <-st.loadsPoll.timer.C:
			h.pollLoads(ctx, st)
		case r := <-h.loads:
			h.applyLoads(st, r)
			if st.loadsPoll.end(r.took) {
				h.pollLoads(ctx, st)
			}
		case <-loadTick.C:
			h.pollProgress(ctx, st)
		case r := <-h.progress:
			h.applyProgress(st, r)
		}
	}
}

// greet sends a page that just connected the whole picture.
func (h *hub) greet(st *state, sub *subscriber) {
	if st.statusMsg != nil {
		sub.ch <- message{msgStatus, st.statusMsg}
	}
	sub.ch <- message{msgEvents, mustJSON(eventsMsg{Replace: true, Events: nonNil(st.backlog)})}
	sub.ch <- message{msgLoad, mustJSON(st.load)}
	sub.ch <- message{msgLoads, mustJSON(loadsOf(st))}
}

// broadcast sends v to every page.
func (h *hub) broadcast(st *state, event string, v any) {
	h.send(st, message{event, mustJSON(v)})
}

// send sends m to every page; a page too far behind is dropped.
func (h *hub) send(st *state, m message) {
	for sub := range st.subs {
		select {
		case sub.ch <- m:
		default:
			h.log.Warn("dropping a page that lags behind", "buffered", subscriberBuffer)
			delete(st.subs, sub)
			close(sub.ch)
		}
	}
}

// polling reports whether to poll: only while a page is open.
func (h *hub) polling(st *state) bool {
	if len(st.subs) == 0 {
		st.idle = true
	}
	return !st.idle
}

func (h *hub) pollReadiness(ctx context.Context, st *state) {
	if !h.polling(st) || !st.readinessPoll.begin() {
		return
	}
	st.readinessPolls++
	gen := st.readinessPolls
	go func() {
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		defer cancel()
		start := time.Now()
		s, err := h.lab.Readiness(pctx)
		h.readiness <- statusResult{s, err, time.Since(start), gen}
	}()
}

func (h *hub) pollTiers(ctx context.Context, st *state) {
	if !h.polling(st) || !st.tiersPoll.begin() {
		return
	}
	go func() {
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		defer cancel()
		start := time.Now()
		s, err := h.lab.StatusOf(pctx, topology.RoleLB4, topology.RoleLB7)
		h.tiers <- statusResult{s, err, time.Since(start), 0}
	}()
}

func (h *hub) pollEvents(ctx context.Context, st *state) {
	if !h.polling(st) || !st.eventsPoll.begin() {
		return
	}
	since := st.since
	go func() {
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		defer cancel()
		start := time.Now()
		evs, err := h.lab.Events(pctx, since)
		h.events <- eventsResult{evs, err, time.Since(start)}
	}()
}

// slowPoll is how long a poll may take before the log says so.
const slowPoll = time.Second

func (h *hub) logPoll(what string, took time.Duration) {
	if took > slowPoll {
		h.log.Debug("slow poll", "what", what, "took", took.Round(time.Millisecond))
	}
}

func (h *hub) applyReadiness(st *state, r statusResult) {
	h.logPoll("readiness", r.took)
	if r.err != nil {
		if st.lastErr == "" {
			h.log.Warn("lab status", "err", r.err)
		}
		st.lastErr = fmt.Sprintf("lab status: %v", r.err)
	} else {
		st.last, st.lastErr = r.st, ""
		for name, in := range st.injected {
			if r.gen > in.gen {
				delete(st.injected, name)
			}
		}
		roles := make(map[string]string, len(r.st.Nodes))
		for _, n := range r.st.Nodes {
			roles[n.Name] = n.Role
		}
		h.roles.Store(&roles)
	}
	h.sendStatus(st)
}

func (h *hub) applyTiers(st *state, r statusResult) {
	h.logPoll("lb4 and lb7 status", r.took)
	if r.err != nil {
		h.log.Debug("lab status of lb4 and lb7", "err", r.err)
		return
	}
	for _, n := range r.st.Nodes {
		if n.Agent.State == "running" {
			st.tiers[n.Name] = tierOf(n.Role, n.Agent)
		} else {
			delete(st.tiers, n.Name)
		}
	}
	h.sendStatus(st)
}

// sendStatus sends the lab's picture to every page, when it changed.
func (h *hub) sendStatus(st *state) {
	m := statusMsg{Nodes: []nodeView{}, DownLinks: []control.LinkStatus{}, Error: st.lastErr}
	if s := st.last; s != nil {
		m.Name, m.Mode, m.Phase, m.VIPs = s.Name, s.Mode, s.Phase, s.VIPs
		m.DownLinks = nonNil(s.DownLinks)
		for _, n := range s.Nodes {
			v := viewOf(n, st.tiers[n.Name])
			if in, ok := st.injected[n.Name]; ok {
				v.State, v.Detail = in.state, in.detail
			}
			m.Nodes = append(m.Nodes, v)
		}
	}
	b := mustJSON(m)
	if bytes.Equal(b, st.statusMsg) {
		return
	}
	st.statusMsg = b
	h.send(st, message{msgStatus, b})
}

// applyEvents sends the events after the last one seen. The lab numbers
// its events as it first sees them, so one that shows up late (a node
// that did not answer in time, a frozen node revived) has a higher number
// than those before it, though an older time.
func (h *hub) applyEvents(ctx context.Context, st *state, r eventsResult) {
	h.logPoll("events", r.took)
	if r.err != nil {
		h.log.Debug("lab events", "err", r.err)
		return
	}
	var fresh []control.Event
	for _, e := range r.evs {
		if e.Seq > st.since {
			fresh = append(fresh, e)
		}
	}
	for _, e := range fresh {
		st.since = max(st.since, e.Seq)
	}
	st.eventPolls++
	if len(fresh) == 0 {
		return
	}
	// The log at the first poll is history: the readiness poll made at
	// the same time tells the nodes' state.
	if st.eventPolls > 1 {
		if h.applyInjections(st, fresh) {
			h.sendStatus(st)
		}
		if tierChanged(st.last, fresh) {
			h.pollTiers(ctx, st)
		}
	}
	st.backlog = append(st.backlog, fresh...)
	if over := len(st.backlog) - maxBacklog; over > 0 {
		st.backlog = append([]control.Event(nil), st.backlog[over:]...)
	}
	h.broadcast(st, msgEvents, eventsMsg{Events: fresh})
}

// applyInjections notes the kills, freezes and revivals among evs, and
// reports whether there were any.
func (h *hub) applyInjections(st *state, evs []control.Event) bool {
	changed := false
	for _, e := range evs {
		if e.Kind != control.EventInject {
			continue
		}
		var in injected
		switch verb, _, _ := strings.Cut(e.Msg, ":"); verb {
		case "kill":
			in.state = StateKilled
		case "freeze":
			in.state = StateFrozen
		case "revive":
			in.state, in.detail = StateWaiting, "revived: converging"
		default:
			continue
		}
		in.gen = st.readinessPolls
		st.injected[e.Node] = in
		changed = true
	}
	return changed
}

// tierChanged reports whether evs say that an LB4 or LB7 may have changed
// what the tier poll reads: a maintenance file written or removed, VIPs
// announced or withdrawn ("announce VIPs", "withdraw VIPs").
func tierChanged(last *control.Status, evs []control.Event) bool {
	if last == nil {
		return false
	}
	for _, e := range evs {
		// Not BGP session changes: they come in bursts when a VM is
		// starved, and each would poll at once.
		if e.Kind != "maintenance" && (e.Kind != "bgp" || !strings.HasSuffix(e.Msg, " VIPs")) {
			continue
		}
		for _, n := range last.Nodes {
			if n.Name == e.Node && (n.Role == string(topology.RoleLB4) || n.Role == string(topology.RoleLB7)) {
				return true
			}
		}
	}
	return false
}

// firstClient returns the first client node of the last status, where a
// load from the page runs ("" before the first status: the lab chooses).
func firstClient(s *control.Status) string {
	if s == nil {
		return ""
	}
	for _, n := range s.Nodes {
		if n.Role == string(topology.RoleClient) {
			return n.Name
		}
	}
	return ""
}

func (h *hub) handleLoadReq(ctx context.Context, st *state, req loadReq) {
	if req.start {
		if st.load.State != LoadIdle {
			req.reply <- fmt.Errorf("%w: a load is %s", errLoadBusy, st.load.State)
			return
		}
		cfg := lab.LoadConfig{From: firstClient(st.last), Workers: req.workers}
		st.load = loadMsg{State: LoadStarting, From: cfg.From, Workers: cfg.Workers}
		st.pendingLoad = req.reply
		h.log.Info("starting a load", "from", cfg.From, "workers", cfg.Workers)
		go func() {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
			defer cancel()
			ld, err := h.lab.StartLoad(lctx, cfg)
			h.started <- loadStarted{ld, err, time.Now()}
		}()
		h.broadcast(st, msgLoad, st.load)
		return
	}
	if st.load.State != LoadRunning {
		req.reply <- fmt.Errorf("%w: no load is running (it is %s)", errLoadBusy, st.load.State)
		return
	}
	st.load.State = LoadStopping
	st.pendingLoad = req.reply
	h.stopLoad(ctx, st)
	h.broadcast(st, msgLoad, st.load)
}

// stopLoad stops the page's running load in the background.
func (h *hub) stopLoad(ctx context.Context, st *state) {
	ld := st.ld
	st.ld = nil
	h.log.Info("stopping the load", "from", st.load.From)
	go func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		rep, err := ld.Stop(lctx)
		h.stopped <- loadStopped{rep, err}
	}()
}

func (h *hub) reply(st *state, err error) {
	if st.pendingLoad != nil {
		st.pendingLoad <- err
		st.pendingLoad = nil
	}
}

func (h *hub) applyStarted(st *state, r loadStarted) {
	if r.err != nil {
		h.log.Warn("start a load", "err", r.err)
		st.load = loadMsg{State: LoadIdle, Error: r.err.Error()}
	} else {
		st.ld = r.ld
		li := r.ld.Info()
		st.load.State, st.load.Node, st.load.ID = LoadRunning, li.Node, li.ID
		li.Workers = st.load.Workers
		// Charted at once, not at the next look at the lab's loads.
		c := h.chart(st, li)
		c.view.Own = true
		h.broadcast(st, msgLoads, loadsOf(st))
	}
	h.reply(st, r.err)
	h.broadcast(st, msgLoad, st.load)
}

func (h *hub) applyStopped(st *state, r loadStopped) {
	st.load.State = LoadIdle
	if r.err != nil {
		h.log.Warn("stop the load", "err", r.err)
		st.load.Error = r.err.Error()
	} else {
		st.load.Error = ""
		st.load.Report = &reportView{Total: r.rep.Total, OK: r.rep.OK, Broken: r.rep.Broken, Interrupted: r.rep.Interrupted}
	}
	if c := st.loads[loadKey{st.load.Node, st.load.ID}]; c != nil {
		h.end(st, c)
		h.broadcast(st, msgLoads, loadsOf(st))
	}
	h.reply(st, r.err)
	h.broadcast(st, msgLoad, st.load)
}

// chart returns the charted load li, charting it when it is new.
func (h *hub) chart(st *state, li control.LoadInfo) *charted {
	k := loadKey{li.Node, li.ID}
	c := st.loads[k]
	if c == nil || !c.ended.IsZero() {
		// A load id is used again after the node's agent restarted.
		c = &charted{view: loadView{
			Node: li.Node, ID: li.ID, Running: true, Workers: li.Workers, Targets: li.Targets, Names: li.Names,
		}}
		c.view.setProgress(&lab.LoadProgress{}, h.vips(st))
		st.loads[k] = c
		h.log.Info("charting a load", "node", li.Node, "id", li.ID, "targets", len(li.Targets), "names", len(li.Names))
	}
	return c
}

// end marks c ended, and forgets the oldest loads that ended beyond
// maxEnded.
func (h *hub) end(st *state, c *charted) {
	if !c.ended.IsZero() {
		return
	}
	c.ended, c.view.Running = time.Now(), false
	var ended []*charted
	for _, o := range st.loads {
		if !o.ended.IsZero() {
			ended = append(ended, o)
		}
	}
	slices.SortFunc(ended, func(a, b *charted) int { return b.ended.Compare(a.ended) })
	for _, o := range ended[min(len(ended), maxEnded):] {
		delete(st.loads, loadKey{o.view.Node, o.view.ID})
	}
}

// vips returns the lab's VIPs, as the last status had them.
func (h *hub) vips(st *state) []control.VIPStatus {
	if st.last == nil {
		return nil
	}
	return st.last.VIPs
}

// loadsOf returns the loads charted, oldest first.
func loadsOf(st *state) loadsMsg {
	m := loadsMsg{Loads: []loadView{}}
	for _, c := range st.loads {
		m.Loads = append(m.Loads, c.view)
	}
	slices.SortFunc(m.Loads, func(a, b loadView) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
	return m
}

// pollLoads asks the lab which loads run.
func (h *hub) pollLoads(ctx context.Context, st *state) {
	if !h.polling(st) || !st.loadsPoll.begin() {
		return
	}
	go func() {
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		defer cancel()
		start := time.Now()
		lds, err := h.lab.Loads(pctx)
		h.loads <- loadsResult{lds, err, time.Since(start)}
	}()
}

// applyLoads charts the loads that started, and marks ended those that
// left the list (the page's own ends when it stops).
func (h *hub) applyLoads(st *state, r loadsResult) {
	h.logPoll("loads", r.took)
	if r.err != nil {
		h.log.Debug("lab loads", "err", r.err)
		return
	}
	running := map[loadKey]bool{}
	for _, li := range r.lds {
		running[loadKey{li.Node, li.ID}] = true
		h.chart(st, li)
	}
	for k, c := range st.loads {
		if !running[k] && !c.view.Own {
			h.end(st, c)
		}
	}
	h.broadcast(st, msgLoads, loadsOf(st))
}

// pollProgress asks for the progress of every running load charted.
func (h *hub) pollProgress(ctx context.Context, st *state) {
	if !h.polling(st) {
		return
	}
	for k, c := range st.loads {
		if c.busy || !c.ended.IsZero() {
			continue
		}
		c.busy = true
		go func() {
			pctx, cancel := context.WithTimeout(ctx, pollTimeout)
			defer cancel()
			p, err := h.lab.WatchLoad(pctx, k.node, k.id)
			h.progress <- progressResult{k, p, err, time.Now()}
		}()
	}
}

func (h *hub) applyProgress(st *state, r progressResult) {
	c := st.loads[r.key]
	if c == nil || !c.busy {
		return // forgotten meanwhile
	}
	c.busy = false
	if !c.ended.IsZero() {
		return
	}
	v := &c.view
	if r.err != nil {
		if ae, ok := errors.AsType[*control.APIError](r.err); ok && ae.Code == http.StatusNotFound && !v.Own {
			h.end(st, c) // it stopped between two looks at the list
		} else {
			v.Error = r.err.Error()
		}
	} else {
		v.Error = ""
		if v.Start.IsZero() {
			// The load's own clock started in the node; place it on ours
			// once, so that the chart does not jitter.
			v.Start = r.at.Add(-r.p.Elapsed)
		}
		v.setProgress(r.p, h.vips(st))
	}
	h.broadcast(st, msgLoads, loadsOf(st))
}

// shutdown ends every page's stream and stops the load started from the
// page, waiting for a start or stop under way.
func (h *hub) shutdown(st *state) {
	for sub := range st.subs {
		close(sub.ch)
	}
	st.subs = nil
	switch st.load.State {
	case LoadStarting:
		r := <-h.started
		if r.err != nil {
			break
		}
		st.ld = r.ld
		h.stopLoad(context.Background(), st)
		<-h.stopped
	case LoadRunning:
		h.stopLoad(context.Background(), st)
		<-h.stopped
	case LoadStopping:
		<-h.stopped
	}
	h.reply(st, errStopped)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err)) // the page's own types always encode
	}
	return b
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
