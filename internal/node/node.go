// Package node is the agent that runs in every lab node: one long-lived
// process per node, born inside the node's network namespace and in a mount
// namespace of its own, where it gives the node a private /etc/lb. It serves
// a small HTTP API on a unix socket (its status, and commands run inside the
// node for `lab exec`), and it is where each tier's services (BGP speakers,
// IPVS, HAProxy, agent-check and HTTP servers) run.
//
// The agent exits when its supervisor dies: the supervisor hands it the read
// end of a pipe (file descriptor 3) and the agent leaves when that pipe
// reports end of file.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/traffic"
)

// Config says which node an agent serves.
type Config struct {
	Lab  string
	Node string
	Role string
	// Dir is the node's state directory on the host: its /etc/lb lives in
	// Dir/lb, its socket at Dir/agent.sock.
	Dir string
	// Lifeline is the read end of the pipe from the supervisor; nil for none.
	Lifeline *os.File
	// Ready, when set, is called once the agent serves its socket.
	Ready func()
	// Netns is the node's network namespace when the agent runs in a
	// Pool, in a process of its own elsewhere; zero for an agent born in
	// its node's namespaces.
	Netns netns.NsHandle
	// opened records a pooled agent's sockets, for the pool to crash it.
	opened *sockets
	// Topology is the whole lab; the node is Topology.Node(Node).
	Topology *topology.Topology
	// Configs holds the configurations `lab up` generated for the lab
	// (HAProxy's, per LB7).
	Configs string
}

// ArgAgent is the hidden first argument with which the lab binary runs as
// a node's agent.
const ArgAgent = "_agent"

// Paths inside a node's state directory.
const (
	SocketName = "agent.sock"
	LogName    = "agent.log"
	LBDirName  = "lb"
	etcName    = "host-etc"
	// ResolvConfName is the node's resolv.conf (see ResolvConf), which
	// its /etc/resolv.conf links to when the lab has dns nodes.
	ResolvConfName = "resolv.conf"
)

// LBDir is where a node's agent sees its private /etc/lb (maintenance and
// agent-check files), bound from LBDirName in its state directory.
const LBDir = "/etc/lb"

// Run sets up the node's mount namespace and serves the agent API until ctx
// is done or the supervisor goes away.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	ctx, cancel := whileSupervised(ctx, cfg.Lifeline, log)
	defer cancel()
	log.Info("agent starting")
	at := place{ns: netns.None(), dir: cfg.Dir}
	if cfg.Netns > 0 {
		at.ns, at.opened = cfg.Netns, cfg.opened
		if at.opened == nil {
			at.opened = newSockets()
		}
	} else {
		if err := privateEtc(cfg.Dir); err != nil {
			return fmt.Errorf("set up private /etc/lb: %w", err)
		}
		if err := netnsSysfs(); err != nil {
			return fmt.Errorf("mount sysfs: %w", err)
		}
	}
	n, ok := cfg.Topology.Node(cfg.Node)
	if !ok {
		return fmt.Errorf("node %s is not in the topology", cfg.Node)
	}
	a := &agent{cfg: cfg, log: log, started: time.Now(), topo: cfg.Topology, node: n, at: at}
	var within func(func() error) error // nil: dial where we stand
	if at.pooled() {
		within = at.within
	}
	a.loads = newLoadRegistry(ctx, log, within)
	if len(NameServers(a.topo)) > 0 {
		a.loads.newResolver = func() traffic.Resolver { return a.labResolver() }
	}
	a.role = newRole(a)
	log.Info("starting services", "role", n.Role)
	if err := a.role.Start(ctx); err != nil {
		return fmt.Errorf("start %s services: %w", n.Role, err)
	}
	sock := filepath.Join(cfg.Dir, SocketName)
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if at.opened != nil { // a crashed agent's socket refuses, as a dead one's
		if ln, err = at.opened.listener(ln); err != nil {
			return err
		}
	}
	// Generous: a node of a busy one-CPU VM may wait seconds for the CPU.
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("agent ready", "role", cfg.Role, "pid", os.Getpid())
	if cfg.Ready != nil {
		cfg.Ready()
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// whileSupervised returns a context that ends with ctx or when the
// supervisor goes away: the read end of its lifeline pipe (nil: none)
// reports end of file.
func whileSupervised(ctx context.Context, lifeline *os.File, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if lifeline != nil {
		go func() {
			var b [1]byte
			_, _ = lifeline.Read(b[:]) // returns at EOF: the supervisor is gone
			log.Info("supervisor gone, exiting")
			cancel()
		}()
	}
	return ctx, cancel
}

type agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	node    *topology.Node
	at      place

	topoMu sync.Mutex
	topo   *topology.Topology // the whole lab; lab add/remove replace it
	role   role
	loads  *loadRegistry

	mu     sync.Mutex
	events []control.Event
}

// lbDir is the node's /etc/lb as the agent reads and writes it: in the
// node's state directory, which every agent sees (a pooled one has no
// /etc/lb of its own).
func (a *agent) lbDir() string { return filepath.Join(a.cfg.Dir, LBDirName) }

// lbFile is the path of a file of the node's /etc/lb.
func (a *agent) lbFile(name string) string { return filepath.Join(a.lbDir(), name) }

// maxEvents bounds the in-memory event log of a node.
const maxEvents = 10000

// event records something that happened in the node for `lab events`.
func (a *agent) event(kind, msg string) {
	a.record(control.Event{Kind: kind, Msg: msg})
}

// record adds e to the event log, stamped with the time and the node.
func (a *agent) record(e control.Event) {
	e.Time, e.Node = time.Now(), a.node.Name
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.events) >= maxEvents {
		a.events = a.events[1:]
	}
	a.events = append(a.events, e)
}

func (a *agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", a.status)
	mux.HandleFunc("POST /exec", a.exec)
	mux.HandleFunc("GET /ready", a.ready)
	mux.HandleFunc("GET /http", a.httpGet)
	mux.HandleFunc("GET /bench", a.bench)
	mux.HandleFunc("POST /maint", a.maint)
	mux.HandleFunc("GET /events", a.eventsHandler)
	mux.HandleFunc("POST /topology", a.setTopology)
	a.loads.routes(mux)
	return mux
}

func (a *agent) status(w http.ResponseWriter, _ *http.Request) {
	st := control.AgentStatus{State: "running", PID: os.Getpid(), Started: a.started}
	st.Ready, st.Waiting = a.role.Ready()
	if tier := a.role.Status(); tier != nil {
		st.Tier, _ = json.Marshal(tier)
	}
	st.Summary = a.role.Summary()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// ready answers whether the tier has converged, without the cost of a
// full status: the supervisor polls it while the lab comes up.
func (a *agent) ready(w http.ResponseWriter, _ *http.Request) {
	st := control.AgentStatus{State: "running", PID: os.Getpid(), Started: a.started}
	st.Ready, st.Waiting = a.role.Ready()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

func (a *agent) eventsHandler(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	evs := slices.Clone(a.events)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(evs)
}

// exec runs a command inside the node, streaming the request body to its
// standard input and its output back as frames. With
// control.ExecInterruptParam, the end of the body interrupts the command.
func (a *agent) exec(w http.ResponseWriter, r *http.Request) {
	argv := r.URL.Query()["arg"]
	if len(argv) == 0 {
		http.Error(w, "no command given", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	// The connection serves this exec only. Ending a read of the body with
	// a deadline (below) can also end the server's own read for the next
	// request on the connection, which cancels the connection's context:
	// a later exec on it would start cancelled.
	w.Header().Set("Connection", "close")
	fw := control.NewFrameWriter(w)
	cmd := exec.CommandContext(r.Context(), argv[0], argv[1:]...)
	// The request body feeds the command's standard input through a pipe
	// of ours, so that the handler can make sure nothing still reads the
	// body when it returns (the server reads it afterwards). With
	// ExecInterruptParam, the body is only read for its end, and the
	// command reads /dev/null: Wait would otherwise wait for an input
	// that has not ended after the command has.
	interrupt := r.URL.Query().Has(control.ExecInterruptParam)
	pr, pw := io.Pipe()
	copied := make(chan struct{})
	inputEnded := make(chan struct{}) // the body ended, rather than broke
	go func() {
		dst := io.Writer(pw)
		if interrupt {
			dst = io.Discard
		}
		_, err := io.Copy(dst, r.Body)
		pw.CloseWithError(err)
		if err == nil {
			close(inputEnded)
		}
		close(copied)
	}()
	defer func() {
		_ = rc.SetReadDeadline(time.Now()) // ends a read blocked on the client
		pr.Close()                         // ends a write blocked on the command
		<-copied
	}()
	if !interrupt {
		cmd.Stdin = pr
	}
	cmd.Stdout = fw.Stream("stdout")
	cmd.Stderr = fw.Stream("stderr")
	cmd.Env = append(os.Environ(), "LAB_NODE="+a.cfg.Node, "LAB_NAME="+a.cfg.Lab)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	err := a.at.start(cmd)
	if err == nil {
		waited := make(chan struct{})
		if interrupt {
			go func() {
				select {
				case <-inputEnded:
					_ = cmd.Process.Signal(os.Interrupt) // safe after Wait: no other process gets it
				case <-waited:
				}
			}()
		}
		err = cmd.Wait()
		close(waited)
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			_ = fw.Write(control.Frame{Error: fmt.Sprintf("run %s on %s: %v", argv[0], a.cfg.Node, err)})
			return
		}
		code = ee.ExitCode()
		if code < 0 { // killed by a signal: report it the way shells do
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	}
	_ = fw.Write(control.Frame{Exit: &code})
}
