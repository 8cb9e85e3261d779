package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/traffic"
)

// LoadRequest is the body of POST /load: a traffic.Config in JSON, with
// durations as Go duration strings ("3s", "500ms"). Omitted fields take
// traffic's defaults.
type LoadRequest struct {
	Targets        []netip.AddrPort `json:"targets"`
	Sources        []netip.Addr     `json:"sources,omitempty"`
	Workers        int              `json:"workers,omitempty"`
	Path           string           `json:"path,omitempty"`
	ReadSize       int              `json:"read_size,omitempty"`
	Pause          string           `json:"pause,omitempty"`
	EarlyStop      float64          `json:"early_stop,omitempty"`
	ReadTimeout    string           `json:"read_timeout,omitempty"`
	StallThreshold string           `json:"stall_threshold,omitempty"`
	ConnectTimeout string           `json:"connect_timeout,omitempty"`
	Seed           int64            `json:"seed,omitempty"`
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
		Targets:        c.Targets,
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

// Config returns the traffic configuration of r; it reports the durations
// that do not parse. The configuration itself is checked by traffic.Start.
func (r LoadRequest) Config() (traffic.Config, error) {
	c := traffic.Config{
		Targets:   r.Targets,
		Sources:   r.Sources,
		Workers:   r.Workers,
		Path:      r.Path,
		ReadSize:  r.ReadSize,
		EarlyStop: r.EarlyStop,
		Seed:      r.Seed,
	}
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
	if err := errors.Join(errs...); err != nil {
		return traffic.Config{}, fmt.Errorf("load request: %w", err)
	}
	return c, nil
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
	Seconds     []LoadSecond  `json:"seconds"`
}

// LoadSecond is traffic.Second in JSON.
type LoadSecond struct {
	Started     int `json:"started"`
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
}

// NewLoadProgress returns p in its JSON form.
func NewLoadProgress(p traffic.Progress) LoadProgress {
	lp := LoadProgress{
		Elapsed: p.Elapsed, Started: p.Started, Active: p.Active,
		OK: p.OK, Broken: p.Broken, Interrupted: p.Interrupted,
		Seconds: make([]LoadSecond, len(p.Seconds)),
	}
	for i, s := range p.Seconds {
		lp.Seconds[i] = LoadSecond(s)
	}
	return lp
}

// Progress returns p as a traffic.Progress.
func (p LoadProgress) Progress() traffic.Progress {
	tp := traffic.Progress{
		Elapsed: p.Elapsed, Started: p.Started, Active: p.Active,
		OK: p.OK, Broken: p.Broken, Interrupted: p.Interrupted,
		Seconds: make([]traffic.Second, len(p.Seconds)),
	}
	for i, s := range p.Seconds {
		tp.Seconds[i] = traffic.Second(s)
	}
	return tp
}

// maxLoadRequest bounds the body of POST /load.
const maxLoadRequest = 1 << 20

// loadRegistry holds the loads running from a node. They live as long as
// the registry's context (the agent's), not as long as the request that
// started them; when that context ends, every load stops.
type loadRegistry struct {
	ctx context.Context
	log *slog.Logger

	mu   sync.Mutex
	next int
	runs map[string]*traffic.Run
}

// newLoadRegistry returns an empty registry whose loads run until ctx is
// done.
func newLoadRegistry(ctx context.Context, log *slog.Logger) *loadRegistry {
	g := &loadRegistry{ctx: ctx, log: log, runs: map[string]*traffic.Run{}}
	context.AfterFunc(ctx, g.stopAll)
	return g
}

// routes registers the load API on mux.
func (g *loadRegistry) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /load", g.start)
	mux.HandleFunc("GET /load/{id}", g.progress)
	mux.HandleFunc("POST /load/{id}/stop", g.stop)
}

// stopAll stops every load, keeping them for their reports.
func (g *loadRegistry) stopAll() {
	g.mu.Lock()
	runs := make([]*traffic.Run, 0, len(g.runs))
	for _, r := range g.runs {
		runs = append(runs, r)
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
	cfg, err := req.Config()
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
	run, err := traffic.Start(g.ctx, cfg, g.log.With("load", id))
	if err != nil {
		// Start fails only on an invalid configuration.
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.next++
	g.runs[id] = run
	writeLoadJSON(w, LoadStarted{ID: id})
}

// progress answers the live figures of a load.
func (g *loadRegistry) progress(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g.mu.Lock()
	run := g.runs[id]
	g.mu.Unlock()
	if run == nil {
		http.Error(w, fmt.Sprintf("no load %q", id), http.StatusNotFound)
		return
	}
	writeLoadJSON(w, NewLoadProgress(run.Snapshot()))
}

// stop stops a load, forgets it and answers its report.
func (g *loadRegistry) stop(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g.mu.Lock()
	run := g.runs[id]
	delete(g.runs, id)
	g.mu.Unlock()
	if run == nil {
		http.Error(w, fmt.Sprintf("no load %q", id), http.StatusNotFound)
		return
	}
	writeLoadJSON(w, run.Stop())
}

// writeLoadJSON answers v as JSON.
func writeLoadJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
