// Package supervisor runs one lab: it builds the lab's fabric, starts an
// agent process in every node, serves the lab's control API, and takes
// everything down again, in reverse order, on request, on a signal or when
// building fails half-way.
//
// The supervisor is the same code in both run modes: natively it is a
// detached `lab` process on the host; in VM mode it runs inside the
// user-mode Linux kernel, started by the VM's init.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/journal"
	"github.com/lab-lb/lab/internal/topology"
)

// Config says which lab to run and where to serve its API.
type Config struct {
	Name     string
	Topology string // path of the topology file
	Mode     control.Mode
	// Dir is the lab's state directory (journal, node directories, logs).
	Dir string
	// Listen is "unix:///path" or "tcp://addr:port".
	Listen control.Endpoint
	// Token, when set, must be presented as a bearer token.
	Token string
	// Executable is the lab binary, re-executed as each node's agent.
	Executable string
	// Configs holds the configurations `lab up` generated (per LB7).
	Configs string
}

// ArgSupervise is the hidden first argument with which the lab binary
// runs as a lab's supervisor.
const ArgSupervise = "_supervise"

// JournalName is the supervisor's journal in the lab's state directory:
// what it built in the lab's kernel, to undo.
const JournalName = "journal"

// ConfigsDir is the directory, in a lab's state directory on the host,
// where `lab up` writes the configurations it generates (per LB7).
const ConfigsDir = "configs"

// Messages the supervisor logs that `lab up` waits for.
const (
	MsgReady  = "lab ready"
	MsgFailed = "lab failed"
)

// Supervisor is a running lab.
type Supervisor struct {
	cfg     Config
	log     *slog.Logger
	jr      *journal.Journal
	started time.Time

	// mu guards what follows, up to injectMu (see state.go).
	mu      sync.Mutex
	phase   phase
	upTime  time.Duration // how long up took; set with phaseReady
	topo    *topology.Topology
	plan    *fabric.Plan
	nodes   map[string]*nodeState
	events  []control.Event // the supervisor's own: injections, lifecycle
	removed []control.Event // event logs of the agents of nodes lab remove took out
	// downLinks are the links lab link set down, as LinkStatus names them.
	downLinks map[control.LinkStatus]struct{}
	// topoFile is the resolved topology agents start with, saved by
	// commit at build and after lab add or lab remove.
	topoFile string
	// injectMu runs lab kill, revive, add and remove one at a time, each
	// from its checks to its end. Taken before mu, never while holding it.
	injectMu sync.Mutex

	pool      *agentProc // the pool's process, when some node runs in it; under mu
	lifelineW *os.File
	lifelineR *os.File
	downOnce  sync.Once
	downErr   error
	stopOnce  sync.Once
	done      chan struct{} // closed when a client asked for down

	numbered numberedLog // the event log as GET /v1/events?since= reads it

}

// Run builds the lab, serves its API until ctx is done or a client asks
// for `down`, then takes the lab down. A build failure is rolled back and
// returned.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s := newSupervisor(cfg, log)
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "nodes"), 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	jr, err := journal.Open(filepath.Join(cfg.Dir, JournalName), log)
	if err != nil {
		return err
	}
	s.jr = jr
	srv, err := s.serve()
	if err != nil {
		s.fail(err)
		return err
	}
	defer func() {
		// Let a pending `down` request get its answer.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	if err := s.build(ctx); err != nil {
		s.fail(err)
		if derr := s.teardown(); derr != nil {
			log.Error("roll back failed", "err", derr)
		}
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("signal received, taking the lab down")
	case <-s.done:
	}
	return s.teardown()
}

func newSupervisor(cfg Config, log *slog.Logger) *Supervisor {
	return &Supervisor{cfg: cfg, log: log, started: time.Now(), phase: phaseBuilding, nodes: map[string]*nodeState{},
		downLinks: map[control.LinkStatus]struct{}{}, done: make(chan struct{})}
}

// stop ends Run's wait.
func (s *Supervisor) stop() { s.stopOnce.Do(func() { close(s.done) }) }

func (s *Supervisor) fail(err error) {
	s.log.Error(MsgFailed, "err", err.Error())
}

func (s *Supervisor) setPhase(p phase) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *Supervisor) build(ctx context.Context) error {
	t, err := topology.Load(s.cfg.Topology)
	if err != nil {
		return err
	}
	s.log.Info("progress", "step", "topology", "nodes", len(t.Nodes), "segments", len(t.Segments), "mode", string(s.cfg.Mode))
	plan := fabric.NewPlan(t, s.cfg.Name)
	// Resolved once, here: every agent loads the saved JSON instead of
	// reading and resolving the YAML again.
	if err := s.commit(t, plan); err != nil {
		return err
	}
	if err := fabric.Apply(ctx, plan, s.jr, s.log); err != nil {
		return fmt.Errorf("build fabric: %w", err)
	}
	if err := s.startAgents(ctx); err != nil {
		return err
	}
	if err := s.waitConverged(ctx, convergeTimeout); err != nil {
		return err
	}
	upTime := time.Since(s.started)
	s.mu.Lock()
	s.upTime, s.phase = upTime, phaseReady
	s.mu.Unlock()
	s.log.Info(MsgReady, "nodes", len(t.Nodes), "elapsed", upTime.Round(time.Millisecond).String())
	return nil
}

// teardown stops the agents and undoes the journal; safe to call twice.
func (s *Supervisor) teardown() error {
	s.downOnce.Do(func() {
		s.setPhase(phaseStopping)
		s.stopAgents()
		s.downErr = journal.Undo(s.jr.Path(), s.log)
		_ = s.jr.Close()
		if s.downErr == nil {
			s.log.Info("lab down")
		}
	})
	return s.downErr
}

// serve starts the control API.
func (s *Supervisor) serve() (*http.Server, error) {
	ln, err := listen(s.cfg.Listen)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control API stopped", "err", err)
		}
	}()
	return srv, nil
}

func listen(ep control.Endpoint) (net.Listener, error) {
	e := string(ep)
	switch {
	case len(e) > 7 && e[:7] == "unix://":
		path := e[7:]
		_ = os.Remove(path)
		old := umask(0o077)
		ln, err := net.Listen("unix", path)
		umask(old)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", path, err)
		}
		return ln, nil
	case len(e) > 6 && e[:6] == "tcp://":
		ln, err := net.Listen("tcp", e[6:])
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", e[6:], err)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("bad listen endpoint %q", ep)
}

// convergeTimeout bounds how long up waits for BGP, ECMP and health checks
// to settle.
const convergeTimeout = 6 * time.Minute

// waitConverged waits until every agent says its tier is ready: BGP
// sessions up, one ECMP next hop per LB4 on the routers, every LB7
// healthy, HAProxy serving.
func (s *Supervisor) waitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lastReport := time.Time{}
	// A node found ready is not asked again until every node has been:
	// each question costs the busy lab a request and, on some roles, a
	// probe. A last round asks them all once more.
	ready := map[string]bool{}
	for {
		var waiting []string
		t, _ := s.current()
		final := true
		for _, n := range t.Nodes {
			final = final && ready[n.Name]
		}
		for _, n := range t.Nodes {
			if ready[n.Name] && !final {
				continue
			}
			if a := s.agentOf(n.Name); a != nil {
				select {
				case <-a.exited:
					return fmt.Errorf("agent of %s exited (%v): %s", n.Name, a.err, lastLines(a.log, 5))
				default:
				}
			}
			// A busy VM may answer slowly: unreachable is waiting, not failure.
			as := s.agentGet(ctx, n.Name, "/ready")
			switch {
			case as.State != "running":
				waiting = append(waiting, n.Name+": "+as.Error)
				ready[n.Name] = false
			case !as.Ready:
				waiting = append(waiting, n.Name+": "+as.Waiting)
				ready[n.Name] = false
			default:
				ready[n.Name] = true
			}
		}
		if len(waiting) == 0 {
			if final {
				s.log.Info("progress", "step", "converged")
				return nil
			}
			continue // every node was ready once: the last round, now
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab not converged after %s: %s", timeout, strings.Join(waiting, "; "))
		}
		if time.Since(lastReport) > 2*time.Second {
			s.log.Info("progress", "step", "converging", "waiting", len(waiting), "first", waiting[0])
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
