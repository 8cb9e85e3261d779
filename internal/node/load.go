package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/traffic"
)

// LoadRequest is the body of POST /load: a traffic.Config in JSON, with
// durations as Go duration strings ("3s", "500ms"). Omitted fields take
// traffic's defaults.
type LoadRequest struct {
	// Mode is traffic.ModeDownloads (empty) or traffic.ModeRequests, with
	// its Rate (per worker and second) and KeepAlive.
	Mode      traffic.Mode     `json:"mode,omitempty"`
	Rate      float64          `json:"rate,omitempty"`
	KeepAlive bool             `json:"keepalive,omitempty"`
	Targets   []netip.AddrPort `json:"targets"`
	// Names are service names, looked up through the lab's name servers
	// before every connection.
	Names          []traffic.NameTarget `json:"names,omitempty"`
	Sources        []netip.Addr         `json:"sources,omitempty"`
	Workers        int                  `json:"workers,omitempty"`
	Path           string               `json:"path,omitempty"`
	ReadSize       int                  `json:"read_size,omitempty"`
	Pause          string               `json:"pause,omitempty"`
	EarlyStop      float64              `json:"early_stop,omitempty"`
	ReadTimeout    string               `json:"read_timeout,omitempty"`
	StallThreshold string               `json:"stall_threshold,omitempty"`
	ConnectTimeout string               `json:"connect_timeout,omitempty"`
	Seed           int64                `json:"seed,omitempty"`
	// Lease, when set, stops the load once nobody has asked for its
	// progress for that long: a load whose owner died (a `lab load` killed
	// with SIGKILL) does not run on for ever. Owners keep it with
	// GET /load/{id}.
	Lease string `json:"lease,omitempty"`
}

// NewLoadRequest returns the request that starts c.
func NewLoadRequest(c traffic.Config) LoadRequest {
	d := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	return LoadRequest{
		Mode:           c.Mode,
		Rate:           c.Rate,
		KeepAlive:      c.KeepAlive,
		Targets:        c.Targets,
		Names:          c.Names,
		Sources:        c.Sources,
		Workers:        c.Workers,
		Path:           c.Path,
		ReadSize:       c.ReadSize,
		Pause:          d(c.Pause),
		EarlyStop:      c.EarlyStop,
		ReadTimeout:    d(c.ReadTimeout),
		StallThreshold: d(c.StallThreshold),
		ConnectTimeout: d(c.ConnectTimeout),
		Seed:           c.Seed,
	}
}

// Config returns the traffic configuration of r and its lease; it reports
// the durations that do not parse. The configuration itself is checked by
// traffic.Start.
func (r LoadRequest) Config() (traffic.Config, time.Duration, error) {
	c := traffic.Config{
		Mode:      r.Mode,
		Rate:      r.Rate,
		KeepAlive: r.KeepAlive,
		Targets:   r.Targets,
		Names:     r.Names,
		Sources:   r.Sources,
		Workers:   r.Workers,
		Path:      r.Path,
		ReadSize:  r.ReadSize,
		EarlyStop: r.EarlyStop,
		Seed:      r.Seed,
	}
	var lease time.Duration
	var errs []error
	for _, f := range []struct {
		name string
		s    string
		d    *time.Duration
	}{
		{"pause", r.Pause, &c.Pause},
		{"read_timeout", r.ReadTimeout, &c.ReadTimeout},
		{"stall_threshold", r.StallThreshold, &c.StallThreshold},
		{"connect_timeout", r.ConnectTimeout, &c.ConnectTimeout},
		{"lease", r.Lease, &lease},
	} {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
			continue
		}
		*f.d = d
	}
	if lease < 0 {
		errs = append(errs, fmt.Errorf("lease: %s is negative", lease))
	}
	if err := errors.Join(errs...); err != nil {
		return traffic.Config{}, 0, fmt.Errorf("load request: %w", err)
	}
	return c, lease, nil
}

// LoadStarted is the answer of POST /load.
type LoadStarted struct {
	ID string `json:"id"`
}

// LoadProgress is traffic.Progress in JSON, the answer of GET /load/{id}.
type LoadProgress struct {
	Elapsed     time.Duration `json:"elapsed_ns"`
	Started     int           `json:"started"`
	Active      int           `json:"active"`
	OK          int           `json:"ok"`
	Broken      int           `json:"broken"`
	Interrupted int           `json:"interrupted"`
	DNSFailed   int           `json:"dns_failed,omitempty"`
	Seconds     []LoadSecond  `json:"seconds"`
	// ByTarget is traffic.Progress.ByTarget: the seconds per VIP:port (or
	// per service name, for failed lookups).
	ByTarget map[string][]LoadSecond `json:"by_target,omitempty"`
}

// LoadSecond is traffic.Second in JSON.
type LoadSecond struct {
	Started     int `json:"started"`
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
	DNSFailed   int `json:"dns_failed,omitempty"`
	// P50 and P99 are the latencies of a request load's successful
	// requests in the second.
	P50 time.Duration `json:"p50_ns,omitempty"`
	P99 time.Duration `json:"p99_ns,omitempty"`
}

// NewLoadProgress returns p in its JSON form.
func NewLoadProgress(p traffic.Progress) LoadProgress {
	lp := LoadProgress{
		Elapsed: p.Elapsed, Started: p.Started, Active: p.Active,
		OK: p.OK, Broken: p.Broken, Interrupted: p.Interrupted, DNSFailed: p.DNSFailed,
		Seconds: make([]LoadSecond, len(p.Seconds)),
	}
	for i, s := range p.Seconds {
		lp.Seconds[i] = LoadSecond(s)
	}
	if len(p.ByTarget) > 0 {
		lp.ByTarget = make(map[string][]LoadSecond, len(p.ByTarget))
		for k, ss := range p.ByTarget {
			lp.ByTarget[k] = make([]LoadSecond, len(ss))
			for i, s := range ss {
				lp.ByTarget[k][i] = LoadSecond(s)
			}
		}
	}
	return lp
}

// Progress returns p as a traffic.Progress.
func (p LoadProgress) Progress() traffic.Progress {
	tp := traffic.Progress{
		Elapsed: p.Elapsed, Started: p.Started, Active: p.Active,
		OK: p.OK, Broken: p.Broken, Interrupted: p.Interrupted, DNSFailed: p.DNSFailed,
		Seconds: make([]traffic.Second, len(p.Seconds)),
	}
	for i, s := range p.Seconds {
		tp.Seconds[i] = traffic.Second(s)
	}
	if len(p.ByTarget) > 0 {
		tp.ByTarget = make(map[string][]traffic.Second, len(p.ByTarget))
		for k, ss := range p.ByTarget {
			tp.ByTarget[k] = make([]traffic.Second, len(ss))
			for i, s := range ss {
				tp.ByTarget[k][i] = traffic.Second(s)
			}
		}
	}
	return tp
}

// maxLoadRequest bounds the body of POST /load.
const maxLoadRequest = 1 << 20

// loadRegistry holds the loads running from a node. They live as long as
// the registry's context (the agent's), not as long as the request that
// started them; when that context ends, every load stops. A load with a
// lease also stops, and is forgotten, when its owner stops asking for it.
type loadRegistry struct {
	ctx context.Context
	log *slog.Logger

	// newResolver returns a resolver for the names of a new load (each
	// load starts with a cold cache, as a new client does); nil when the
	// lab has no name server.
	newResolver func() traffic.Resolver

	mu      sync.Mutex
	within  func(func() error) error
	next    int
	runs    map[string]*loadEntry
	expired map[string]time.Duration // ids of loads whose lease ran out
}

// loadEntry is a running load and its lease.
type loadEntry struct {
	run   *traffic.Run
	info  control.LoadInfo // what GET /load says of it
	lease time.Duration    // 0: none
	timer *time.Timer
	seen  time.Time // last request for the load
}

// newLoadRegistry returns an empty registry whose loads run until ctx is
// done, dialling through within (the node's namespace).
func newLoadRegistry(ctx context.Context, log *slog.Logger, within func(func() error) error) *loadRegistry {
	g := &loadRegistry{ctx: ctx, log: log, within: within, runs: map[string]*loadEntry{}, expired: map[string]time.Duration{}}
	context.AfterFunc(ctx, g.stopAll)
	return g
}

// routes registers the load API on mux.
func (g *loadRegistry) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /load", g.start)
	mux.HandleFunc("GET /load", g.list)
	mux.HandleFunc("GET /load/{id}", g.progress)
	mux.HandleFunc("POST /load/{id}/stop", g.stop)
}

// stopAll stops every load, keeping them for their reports.
func (g *loadRegistry) stopAll() {
	g.mu.Lock()
	runs := make([]*traffic.Run, 0, len(g.runs))
	for _, e := range g.runs {
		runs = append(runs, e.run)
	}
	g.mu.Unlock()
	for _, r := range runs {
		r.Stop()
	}
}

// start starts the load of the request body and answers its id.
func (g *loadRegistry) start(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoadRequest))
	dec.DisallowUnknownFields()
	var req LoadRequest
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("decode load request: %v", err), http.StatusBadRequest)
		return
	}
	cfg, lease, err := req.Config()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		http.Error(w, "agent is stopping", http.StatusServiceUnavailable)
		return
	}
	id := strconv.Itoa(g.next + 1)
	cfg.Within = g.within
	if len(cfg.Names) > 0 && g.newResolver != nil {
		cfg.Resolver = g.newResolver()
	}
	run, err := traffic.Start(g.ctx, cfg, g.log.With("load", id))
	if err != nil {
		// Start fails only on an invalid configuration.
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.next++
	e := &loadEntry{run: run, info: loadInfo(id, cfg), lease: lease, seen: time.Now()}
	if lease > 0 {
		e.timer = time.AfterFunc(lease, func() { g.expire(id, e) })
	}
	g.runs[id] = e
	writeLoadJSON(w, LoadStarted{ID: id})
}

// expire stops and forgets the load id when nobody asked for it during
// its lease, or waits for the rest of the lease.
func (g *loadRegistry) expire(id string, e *loadEntry) {
	g.mu.Lock()
	if g.runs[id] != e {
		g.mu.Unlock()
		return
	}
	if left := e.lease - time.Since(e.seen); left > 0 {
		e.timer.Reset(left)
		g.mu.Unlock()
		return
	}
	delete(g.runs, id)
	g.expired[id] = e.lease
	g.mu.Unlock()
	rep := e.run.Stop()
	g.log.Warn("load stopped: its owner did not ask for it during its lease",
		"load", id, "lease", e.lease, "connections", rep.Total)
}

// loadInfo describes the load id of configuration cfg, starting now.
func loadInfo(id string, cfg traffic.Config) control.LoadInfo {
	li := control.LoadInfo{ID: id, Workers: cfg.WithDefaults().Workers, Started: time.Now()}
	for _, t := range cfg.Targets {
		li.Targets = append(li.Targets, t.String())
	}
	for _, n := range cfg.Names {
		li.Names = append(li.Names, n.String())
	}
	return li
}

// list answers the loads running, oldest first.
func (g *loadRegistry) list(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	out := make([]control.LoadInfo, 0, len(g.runs))
	for _, e := range g.runs {
		out = append(out, e.info)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b control.LoadInfo) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	writeLoadJSON(w, out)
}

// entry returns the load id and, unless watch, marks it seen (which
// renews its lease); or it answers why there is none.
func (g *loadRegistry) entry(w http.ResponseWriter, id string, forget, watch bool) *loadEntry {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.runs[id]
	if e == nil {
		msg := fmt.Sprintf("no load %q", id)
		if lease, ok := g.expired[id]; ok {
			msg = fmt.Sprintf("load %q was stopped: nobody asked for it for %s", id, lease)
		}
		http.Error(w, msg, http.StatusNotFound)
		return nil
	}
	if !watch {
		e.seen = time.Now()
	}
	if forget {
		delete(g.runs, id)
		if e.timer != nil {
			e.timer.Stop()
		}
	}
	return e
}

// progress answers the live figures of a load.
func (g *loadRegistry) progress(w http.ResponseWriter, r *http.Request) {
	if e := g.entry(w, r.PathValue("id"), false, r.URL.Query().Has(control.LoadWatchParam)); e != nil {
		writeLoadJSON(w, NewLoadProgress(e.run.Snapshot()))
	}
}

// stop stops a load, forgets it and answers its report.
func (g *loadRegistry) stop(w http.ResponseWriter, r *http.Request) {
	if e := g.entry(w, r.PathValue("id"), true, false); e != nil {
		writeLoadJSON(w, e.run.Stop())
	}
}

// writeLoadJSON answers v as JSON.
func writeLoadJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
