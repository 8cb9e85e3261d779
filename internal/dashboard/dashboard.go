// Package dashboard is the live web page of a running lab (`lab web`): the
// lab drawn as a picture, its event log as it happens, charts of every
// load that runs in the lab (one per VIP, whoever started the load), and
// buttons that break and mend nodes and links.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary. Its
// server goes through the lab's API only (the Lab interface, which
// *lab.Lab and its control API client provide): one goroutine polls the
// lab while a page is open (readiness every 500 ms, the LB4 and LB7 tiers
// every 5 s and whenever the event log says they changed, the events
// after the last one seen every 250 ms, the list of loads every 2 s and
// each running load's progress every second; the readiness, tier and
// load list polls wait longer when the lab is slow to answer, so as not to
// starve it) and pushes what changed to every open page as server-sent
// events; the buttons are POST endpoints that call the same methods as
// the command line.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/lab"
)

// Lab is what the page needs of a running lab. *lab.Lab is one, through
// FromLab, which adds what it reads through the control API.
type Lab interface {
	// Readiness returns every node with its agent's state and whether its
	// tier has converged, without the tiers' own state.
	Readiness(ctx context.Context) (*control.Status, error)
	// StatusOf returns the full status of the nodes of roles.
	StatusOf(ctx context.Context, roles ...topology.Role) (*control.Status, error)
	// Events returns the lab's events numbered after since (0: all of
	// them), oldest first.
	Events(ctx context.Context, since uint64) ([]control.Event, error)
	// Loads lists the loads running in the lab, whoever started them.
	Loads(ctx context.Context) ([]control.LoadInfo, error)
	// WatchLoad returns the progress of load id running from node,
	// without renewing its lease (its owner keeps it running).
	WatchLoad(ctx context.Context, node, id string) (*lab.LoadProgress, error)
	Kill(ctx context.Context, node string) error
	Freeze(ctx context.Context, node string) error
	Revive(ctx context.Context, node string) error
	Maint(ctx context.Context, node string, on bool) error
	SetLink(ctx context.Context, node, other string, up bool) error
	StartLoad(ctx context.Context, cfg lab.LoadConfig) (Load, error)
}

// Load is a load started from the page, running in a node's agent.
type Load interface {
	// Info says where it runs, its id there and its targets.
	Info() control.LoadInfo
	Stop(ctx context.Context) (*lab.Report, error)
}

// FromLab adapts l to Lab; close the client it returns when done. The
// page reads the lab's status and events in the control API's own types
// (the tiers' state, every field of an event), through that client.
func FromLab(l *lab.Lab) (Lab, *control.Client, error) {
	c, err := control.NewClient(control.Endpoint(l.Endpoint), l.Token)
	if err != nil {
		return nil, nil, fmt.Errorf("control API of lab %s: %w", l.Name, err)
	}
	return labAPI{l, c}, c, nil
}

// labAPI is *lab.Lab, with what it lacks read through the control API.
type labAPI struct {
	*lab.Lab
	c *control.Client
}

func (a labAPI) Readiness(ctx context.Context) (*control.Status, error) { return a.c.Readiness(ctx) }

func (a labAPI) StatusOf(ctx context.Context, roles ...topology.Role) (*control.Status, error) {
	rs := make([]string, len(roles))
	for i, r := range roles {
		rs[i] = string(r)
	}
	return a.c.StatusOf(ctx, rs...)
}

func (a labAPI) Events(ctx context.Context, since uint64) ([]control.Event, error) {
	return a.c.Events(ctx, since)
}

func (a labAPI) Loads(ctx context.Context) ([]control.LoadInfo, error) { return a.c.Loads(ctx) }

func (a labAPI) StartLoad(ctx context.Context, cfg lab.LoadConfig) (Load, error) {
	ld, err := a.Lab.StartLoad(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return labLoad{ld}, nil
}

// labLoad is a *lab.Load with its Info.
type labLoad struct{ *lab.Load }

func (l labLoad) Info() control.LoadInfo {
	li := control.LoadInfo{Node: l.Node, ID: l.ID}
	for _, t := range l.Targets {
		li.Targets = append(li.Targets, t.String())
	}
	return li
}

// Options tunes the server; zero values take the defaults.
type Options struct {
	// StatusInterval is how often the nodes' readiness is polled (500 ms);
	// after a poll that took longer than half of it, the next waits as
	// long as that poll took.
	StatusInterval time.Duration
	// TierInterval is how often the LB4s' and LB7s' full status is
	// polled, for maintenance and withdrawal (5 s): it costs their agents
	// far more than readiness (IPVS, BGP, HAProxy's runtime API; 5-10 s
	// per poll in a VM whose one CPU a load keeps busy). An action from
	// the page, or a maintenance or BGP event of an LB4 or LB7 in the log,
	// polls it at once.
	TierInterval time.Duration
	// EventInterval is how often the event log is polled (250 ms).
	EventInterval time.Duration
	// LoadInterval is how often a running load's progress is polled (1 s).
	LoadInterval time.Duration
	// LoadListInterval is how often the lab is asked which loads run
	// (2 s): it asks every node's agent.
	LoadListInterval time.Duration
	// Workers is the default number of workers of a load started from the
	// page (20).
	Workers int
	// Log receives what the server does; nil discards it.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.StatusInterval <= 0 {
		o.StatusInterval = 500 * time.Millisecond
	}
	if o.TierInterval <= 0 {
		o.TierInterval = 5 * time.Second
	}
	if o.EventInterval <= 0 {
		o.EventInterval = 250 * time.Millisecond
	}
	if o.LoadInterval <= 0 {
		o.LoadInterval = time.Second
	}
	if o.LoadListInterval <= 0 {
		o.LoadListInterval = 2 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server serves the page of one lab. Run must be running for the page to
// get anything.
type Server struct {
	opts Options
	lab  Lab
	hub  *hub
	mux  *http.ServeMux
	// listenIP is the address the server listens on, when known: a Host
	// header naming it is accepted besides loopback names.
	listenIP net.IP
}

// New returns a server of the page of l.
func New(l Lab, opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{opts: opts, lab: l, hub: newHub(l, opts)}
	s.mux = s.routes()
	return s
}

// Run polls the lab and feeds the pages until ctx is done, then stops the
// load started from the page, if any, and ends every page's stream.
func (s *Server) Run(ctx context.Context) { s.hub.run(ctx) }

// Serve serves the page of l on ln until ctx is done.
func Serve(ctx context.Context, l *lab.Lab, ln net.Listener, opts Options) error {
	api, c, err := FromLab(l)
	if err != nil {
		return err
	}
	defer c.Close()
	s := New(api, opts)
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.listenIP = a.IP
	}
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		s.Run(ctx)
	}()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		<-hubDone
		return fmt.Errorf("serve the page: %w", err)
	case <-ctx.Done():
	}
	// The hub ends every stream as it stops; then the server can drain.
	<-hubDone
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut the page's server down: %w", err)
	}
	return nil
}
