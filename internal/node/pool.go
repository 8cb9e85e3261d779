package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/topology"
)

// The pool is one process that serves the agents of many nodes: LB4s,
// LB7s, backends, clients and plain hosts. Their sockets are made on a
// thread in their node's namespace (see place): our own code's
// (listeners, checks, requests, the load), and a pooled LB4's BGP
// listener, which GoBGP makes on its serve loop's goroutine, run on such
// a thread (place.goForever). In a one-CPU VM, starting a Go process
// costs about half a second of CPU, most of it page faults and package
// initialisation; the reference lab's 33 such agents share one process
// start instead of paying 33.
//
// Routers and route reflectors keep a process each: GoBGP dials its peers
// from goroutines of its own, which no thread of ours can place in a
// namespace. So they dial the LB4s, which only accept (see upstreams).
//
// Each pooled node keeps what the lab promises of a node: its own
// agent socket and API, its own log, its processes (HAProxy, commands of
// lab exec) born in its namespaces, and a crash (lab kill) that closes
// every socket it made at once, as the kernel closes a killed process's:
// those it tracked (sockets), and every other socket of the process in
// its network namespace (shutdownSocketsIn), GoBGP's included.

// ArgPool is the hidden first argument with which the lab binary runs the
// pool.
const ArgPool = "_pool"

// PoolSocketName is the pool's control socket, in the lab's state
// directory.
const PoolSocketName = "pool.sock"

// Pooled says whether a node of role r runs in the pool.
func Pooled(r topology.Role) bool {
	switch r {
	case topology.RoleLB4, topology.RoleLB7, topology.RoleServer, topology.RoleHost, topology.RoleClient,
		topology.RoleDNS: // idle, like a host, until the DNS tier has an agent of its own
		return true
	}
	return false
}

// PoolConfig says what the pool serves.
type PoolConfig struct {
	Lab string
	// Nodes is the directory of the nodes' state directories.
	Nodes string
	// Socket is where the pool serves its control API.
	Socket string
	// Configs holds the configurations `lab up` generated.
	Configs string
	// Lifeline is the read end of the pipe from the supervisor; nil for
	// none.
	Lifeline *os.File
	// Ready, when set, is called once the pool serves its socket.
	Ready func()
}

// Paths of the pool's control API: start a node's agent (the answer comes
// once it serves its socket), and crash it (once it has stopped).
const (
	PoolPathStart = "/nodes/{node}/start"
	PoolPathCrash = "/nodes/{node}/crash"
)

// PoolStart is the body of a start request.
type PoolStart struct {
	// Topology is the resolved topology file the node's agent loads.
	Topology string `json:"topology"`
}

// PoolPath fills a pool path with a node's name.
func PoolPath(path, node string) string {
	return "/nodes/" + node + path[len("/nodes/{node}"):]
}

// member is one node served by the pool.
type member struct {
	cancel context.CancelFunc
	opened *sockets      // every socket of the node, which a crash closes
	done   chan struct{} // closed when its agent has returned

	nsMu sync.Mutex
	ns   netns.NsHandle // the node's network namespace; closed once its agent has returned
}

// shutdownSockets shuts down every socket of the process in the member's
// network namespace, unless its agent has returned already.
func (m *member) shutdownSockets() (int, error) {
	m.nsMu.Lock()
	defer m.nsMu.Unlock()
	if !m.ns.IsOpen() {
		return 0, nil
	}
	return shutdownSocketsIn(m.ns)
}

func (m *member) closeNetns() {
	m.nsMu.Lock()
	defer m.nsMu.Unlock()
	m.ns.Close()
	m.ns = netns.None()
}

// pool owns its members: mu guards the map.
type pool struct {
	cfg PoolConfig
	ctx context.Context
	log *slog.Logger

	mu      sync.Mutex
	members map[string]*member
	wg      sync.WaitGroup
}

// RunPool serves the pool's control API until ctx is done or the
// supervisor goes away; then every member stops.
func RunPool(ctx context.Context, cfg PoolConfig, log *slog.Logger) error {
	ctx, cancel := whileSupervised(ctx, cfg.Lifeline, log)
	defer cancel()
	p := &pool{cfg: cfg, ctx: ctx, log: log, members: map[string]*member{}}
	_ = os.Remove(cfg.Socket)
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Socket, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PoolPathStart, p.handleStart)
	mux.HandleFunc("POST "+PoolPathCrash, p.handleCrash)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("pool ready", "pid", os.Getpid())
	if cfg.Ready != nil {
		cfg.Ready()
	}
	err = srv.Serve(ln)
	cancel()
	p.wg.Wait() // every member's agent has returned
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (p *pool) handleStart(w http.ResponseWriter, r *http.Request) {
	var req PoolStart
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("decode start request: %v", err), http.StatusBadRequest)
		return
	}
	if err := p.start(r.Context(), r.PathValue("node"), req.Topology); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *pool) handleCrash(w http.ResponseWriter, r *http.Request) {
	if err := p.crash(r.PathValue("node")); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// start runs name's agent and returns once it serves its socket.
func (p *pool) start(ctx context.Context, name, topoFile string) error {
	t, err := topology.Load(topoFile)
	if err != nil {
		return err
	}
	n, ok := t.Node(name)
	if !ok {
		return fmt.Errorf("node %s is not in the topology", name)
	}
	if !Pooled(n.Role) {
		return fmt.Errorf("node %s is a %s: it runs in a process of its own", name, n.Role)
	}
	dir := filepath.Join(p.cfg.Nodes, name)
	if err := os.MkdirAll(filepath.Join(dir, LBDirName), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, LogName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	ns, err := netns.GetFromName(fabric.NodeNetns(p.cfg.Lab, name))
	if err != nil {
		logf.Close()
		return fmt.Errorf("open netns of %s: %w", name, err)
	}
	p.mu.Lock()
	if m := p.members[name]; m != nil {
		p.mu.Unlock()
		logf.Close()
		ns.Close()
		return fmt.Errorf("%s runs already", name)
	}
	mctx, cancel := context.WithCancel(p.ctx)
	m := &member{cancel: cancel, opened: newSockets(), done: make(chan struct{}), ns: ns}
	p.members[name] = m
	p.wg.Add(1)
	p.mu.Unlock()

	ready := make(chan struct{})
	var runErr error
	go func() {
		defer p.wg.Done()
		cfg := Config{
			Lab: p.cfg.Lab, Node: name, Role: string(n.Role), Dir: dir,
			Topology: t, Configs: p.cfg.Configs, Netns: ns, opened: m.opened,
			Ready: func() { close(ready) },
		}
		runErr = Run(mctx, cfg, slog.New(slog.NewTextHandler(logf, nil)).With("node", name))
		cancel()
		m.closeNetns()
		logf.Close()
		p.mu.Lock()
		if p.members[name] == m {
			delete(p.members, name)
		}
		p.mu.Unlock()
		close(m.done)
	}()
	select {
	case <-ready:
		return nil
	case <-m.done:
		return fmt.Errorf("agent of %s stopped: %v", name, runErr)
	case <-ctx.Done():
		_ = p.crash(name)
		return ctx.Err()
	}
}

// crash stops name's agent as a kill would: every socket it made closes
// at once, then its services stop; it returns once they have.
func (p *pool) crash(name string) error {
	p.mu.Lock()
	m := p.members[name]
	delete(p.members, name)
	p.mu.Unlock()
	if m == nil {
		return fmt.Errorf("%s does not run", name)
	}
	m.opened.crash()
	if _, err := m.shutdownSockets(); err != nil {
		p.log.Warn("shut down the sockets of a crashed node", "node", name, "err", err)
	}
	m.cancel()
	select {
	case <-m.done:
		return nil
	case <-time.After(crashTimeout):
		return fmt.Errorf("%s still stopping after %s", name, crashTimeout)
	}
}

// crashTimeout bounds how long a crashed member takes to stop.
const crashTimeout = 30 * time.Second
