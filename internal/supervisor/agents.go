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

	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
)

// agentProc is one node's agent process.
type agentProc struct {
	node   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // set when exited is closed
}

func (s *Supervisor) nodeDir(name string) string {
	return filepath.Join(s.cfg.Dir, "nodes", name)
}

// startAgents starts every node's agent in parallel and waits until each
// serves its socket.
func (s *Supervisor) startAgents(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create lifeline pipe: %w", err)
	}
	s.lifelineR, s.lifelineW = r, w
	var wg sync.WaitGroup
	t, _ := s.current()
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
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = s.startAgent(ctx, n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.log.Info("progress", "step", "agents", "count", len(t.Nodes))
	return nil
}

func (s *Supervisor) startAgent(ctx context.Context, n *topology.Node) error {
	dir := s.nodeDir(n.Name)
	if err := os.MkdirAll(filepath.Join(dir, node.LBDirName), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, node.LogName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.mu.Lock()
	topoFile := s.topoFile
	s.mu.Unlock()
	cmd := exec.Command(s.cfg.Executable, node.ArgAgent,
		"--lab", s.cfg.Name, "--node", n.Name, "--role", string(n.Role), "--dir", dir, "--topology", topoFile, "--configs", s.cfg.Configs)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The agent writes a byte on fd 4 once it serves its socket: no polling.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	cmd.ExtraFiles = []*os.File{s.lifelineR, readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Setpgid: true}
	ns, err := netns.GetFromName(fabric.NodeNetns(s.cfg.Name, n.Name))
	if err != nil {
		return fmt.Errorf("open netns of %s: %w", n.Name, err)
	}
	defer ns.Close()
	// The child is born in the namespace of the thread that forks it.
	err = fabric.InNetns(ns, cmd.Start)
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start agent of %s: %w", n.Name, err)
	}
	if _, err := s.jr.AddProcess(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	a := &agentProc{node: n.Name, dir: dir, cmd: cmd, exited: make(chan struct{})}
	s.mu.Lock()
	s.node(n.Name).agent = a
	s.mu.Unlock()
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
		if !s.exitExpected(a) {
			s.log.Warn("agent exited", "node", n.Name, "err", a.err)
		}
	}()
	return waitAgent(ctx, a, readyR)
}

// exitExpected says whether agent a's exit is expected: the lab is going
// down, or a's node was killed, frozen, is being removed, has left the lab
// or has a newer agent.
func (s *Supervisor) exitExpected(a *agentProc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
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
		return fmt.Errorf("agent of %s exited (%v): %s", a.node, a.err, lastLines(filepath.Join(a.dir, node.LogName), 5))
	case <-ctx.Done():
		return ctx.Err()
	case <-timeout.C:
		return fmt.Errorf("agent of %s not ready after %s: %s", a.node, agentStartTimeout, lastLines(filepath.Join(a.dir, node.LogName), 5))
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
		if n.agent != nil {
			agents = append(agents, n.agent)
		}
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
