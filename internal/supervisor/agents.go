package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
)

// agentProc is one node's agent: a process of its own, or its share of
// the pool's (node.Pooled roles).
type agentProc struct {
	node   string
	log    string    // its log file
	cmd    *exec.Cmd // nil for a pooled agent
	exited chan struct{}
	err    error // set when exited is closed

	// crashed is closed once the pool has crashed a pooled agent.
	crashed   chan struct{}
	crashOnce sync.Once
}

// poolName is how the pool appears where an agent's node name would.
const poolName = "pool"

func (s *Supervisor) nodeDir(name string) string {
	return filepath.Join(s.cfg.Dir, "nodes", name)
}

// startAgents starts every node's agent in parallel, and the pool when
// some node runs in it, and waits until each serves its socket. The
// agents of their own (the BGP speakers) do not wait for the pool: a
// speaker's first dial comes 1 to 2 s after it starts (GoBGP's connect
// loop), time the pool and the HAProxies use to load.
func (s *Supervisor) startAgents(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create lifeline pipe: %w", err)
	}
	s.lifelineR, s.lifelineW = r, w
	t, _ := s.current()
	pooled := 0
	for _, n := range t.Nodes {
		if node.Pooled(n.Role) {
			pooled++
		}
	}
	poolReady := make(chan struct{})
	var poolErr error
	if pooled > 0 {
		go func() {
			poolErr = s.startPool(ctx)
			close(poolReady)
		}()
	} else {
		close(poolReady)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(t.Nodes))
	// All at once: an agent that waits for its HAProxy must not hold up
	// the others; past a few hundred nodes, the kernel's process table
	// and memory are the limits.
	sem := make(chan struct{}, 256)
	for i := range t.Nodes {
		n := &t.Nodes[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if node.Pooled(n.Role) {
				if <-poolReady; poolErr != nil {
					return // reported once, below
				}
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = s.startAgent(ctx, n)
		}()
	}
	wg.Wait()
	<-poolReady
	if err := errors.Join(append(errs, poolErr)...); err != nil {
		return err
	}
	s.log.Info("progress", "step", "agents", "count", len(t.Nodes), "processes", len(t.Nodes)-pooled+min(pooled, 1))
	return nil
}

// spawn starts the lab binary with args as one of the lab's processes,
// its output to logPath, in the network namespace ns (none: a fresh empty
// one), and waits until it says it serves its socket.
func (s *Supervisor) spawn(ctx context.Context, name, logPath string, ns netns.NsHandle, args ...string) (*agentProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(s.cfg.Executable, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The process writes a byte on fd 4 once it serves its socket: no
	// polling.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	cmd.ExtraFiles = []*os.File{s.lifelineR, readyW}
	start := cmd.Start
	if ns.IsOpen() {
		// An agent of its own: born in its node's network namespace (the
		// child is born in the namespace of the thread that forks it) and
		// in a mount namespace of its own, where it makes /etc/lb its
		// node's.
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Setpgid: true}
		start = func() error { return fabric.InNetns(ns, cmd.Start) }
	} else {
		// The pool: in an empty network namespace of its own, so that a
		// socket it made anywhere but in a node's namespace would reach
		// nothing outside the lab.
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Setpgid: true}
	}
	err = start()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if _, err := s.jr.AddProcess(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	a := &agentProc{node: name, log: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
		if !s.exitExpected(a) {
			s.log.Warn("agent exited", "node", name, "err", a.err)
		}
	}()
	return a, waitAgent(ctx, a, readyR)
}

// startPool starts the process that serves the pooled nodes' agents.
func (s *Supervisor) startPool(ctx context.Context) error {
	a, err := s.spawn(ctx, poolName, filepath.Join(s.cfg.Dir, "pool.log"), netns.None(), node.ArgPool,
		"--lab", s.cfg.Name, "--nodes", filepath.Join(s.cfg.Dir, "nodes"),
		"--socket", s.poolSocket(), "--configs", s.cfg.Configs)
	if a != nil {
		s.mu.Lock()
		s.pool = a
		s.mu.Unlock()
	}
	return err
}

func (s *Supervisor) poolSocket() string { return filepath.Join(s.cfg.Dir, node.PoolSocketName) }

func (s *Supervisor) startAgent(ctx context.Context, n *topology.Node) error {
	dir := s.nodeDir(n.Name)
	if err := os.MkdirAll(filepath.Join(dir, node.LBDirName), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	s.mu.Lock()
	topoFile := s.topoFile
	s.mu.Unlock()
	t, _ := s.current()
	if rc := node.ResolvConf(t); rc != "" {
		if err := os.WriteFile(filepath.Join(dir, node.ResolvConfName), []byte(rc), 0o644); err != nil {
			return fmt.Errorf("write resolv.conf of %s: %w", n.Name, err)
		}
	}
	if node.Pooled(n.Role) {
		return s.startPooled(ctx, n.Name, topoFile)
	}
	ns, err := netns.GetFromName(fabric.NodeNetns(s.cfg.Name, n.Name))
	if err != nil {
		return fmt.Errorf("open netns of %s: %w", n.Name, err)
	}
	defer ns.Close()
	a, err := s.spawn(ctx, n.Name, filepath.Join(dir, node.LogName), ns, node.ArgAgent,
		"--lab", s.cfg.Name, "--node", n.Name, "--role", string(n.Role), "--dir", dir, "--topology", topoFile, "--configs", s.cfg.Configs)
	if a != nil {
		s.mu.Lock()
		s.node(n.Name).agent = a
		s.mu.Unlock()
	}
	return err
}

// startPooled asks the pool to run name's agent.
func (s *Supervisor) startPooled(ctx context.Context, name, topoFile string) error {
	s.mu.Lock()
	pool := s.pool
	s.mu.Unlock()
	if pool == nil {
		return fmt.Errorf("start agent of %s: no pool", name)
	}
	c, err := control.NewClient(control.Endpoint("unix://"+s.poolSocket()), "")
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, agentStartTimeout)
	defer cancel()
	if err := c.Post(ctx, node.PoolPath(node.PoolPathStart, name), node.PoolStart{Topology: topoFile}); err != nil {
		return fmt.Errorf("start agent of %s in the pool: %w", name, err)
	}
	a := &agentProc{node: name, log: filepath.Join(s.nodeDir(name), node.LogName), exited: make(chan struct{}), crashed: make(chan struct{})}
	s.mu.Lock()
	s.node(name).agent = a
	s.mu.Unlock()
	go func() {
		select {
		case <-pool.exited:
			a.err = fmt.Errorf("the pool exited: %v", pool.err)
		case <-a.crashed:
		}
		close(a.exited)
		if !s.exitExpected(a) {
			s.log.Warn("agent exited", "node", name, "err", a.err)
		}
	}()
	return nil
}

// crashPooled crashes a pooled agent (every socket it made closes at
// once) and returns once it has stopped.
func (s *Supervisor) crashPooled(ctx context.Context, a *agentProc) error {
	c, err := control.NewClient(control.Endpoint("unix://"+s.poolSocket()), "")
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Post(ctx, node.PoolPath(node.PoolPathCrash, a.node), nil)
	a.crashOnce.Do(func() { close(a.crashed) })
	<-a.exited
	if err != nil {
		return fmt.Errorf("crash %s in the pool: %w", a.node, err)
	}
	return nil
}

// exitExpected says whether agent a's exit is expected: the lab is going
// down, or a's node was killed, frozen, is being removed, has left the lab
// or has a newer agent.
func (s *Supervisor) exitExpected(a *agentProc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a == s.pool {
		return s.phase == phaseStopping
	}
	n := s.nodes[a.node]
	return s.phase == phaseStopping || n == nil || n.agent != a || n.life.down()
}

// waitAgent waits until the agent says it serves its socket (a byte on the
// ready pipe), or dies (end of file).
func waitAgent(ctx context.Context, a *agentProc, ready *os.File) error {
	got := make(chan bool, 1)
	go func() {
		var b [1]byte
		n, _ := ready.Read(b[:])
		got <- n == 1
	}()
	// Generous: in a user-mode Linux VM with one slow CPU, dozens of
	// agents start at once.
	timeout := time.NewTimer(agentStartTimeout)
	defer timeout.Stop()
	select {
	case ok := <-got:
		if ok {
			return nil
		}
		<-a.exited
		return fmt.Errorf("agent of %s exited (%v): %s", a.node, a.err, lastLines(a.log, 5))
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout.C:
		return fmt.Errorf("agent of %s not ready after %s: %s", a.node, agentStartTimeout, lastLines(a.log, 5))
	}
}

const agentStartTimeout = 3 * time.Minute

// stopAgents ends every agent: closing the lifeline tells them all at once,
// SIGKILL to the process group follows for any that linger.
func (s *Supervisor) stopAgents() {
	if s.lifelineW != nil {
		s.lifelineW.Close()
		s.lifelineR.Close()
	}
	s.mu.Lock()
	agents := make([]*agentProc, 0, len(s.nodes))
	for _, n := range s.nodes {
		if n.agent != nil && n.agent.cmd != nil {
			agents = append(agents, n.agent)
		}
	}
	if s.pool != nil {
		agents = append(agents, s.pool)
	}
	s.mu.Unlock()
	for _, a := range agents {
		_ = unix.Kill(-a.cmd.Process.Pid, unix.SIGTERM)
	}
	deadline := time.After(3 * time.Second)
	for _, a := range agents {
		select {
		case <-a.exited:
		case <-deadline:
		}
		_ = unix.Kill(-a.cmd.Process.Pid, unix.SIGKILL)
	}
	for _, a := range agents {
		<-a.exited
	}
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("; ")))
}
