package supervisor

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/cpustat"
	"github.com/lab-lb/lab/internal/fabric"
)

// maxCPUInterval bounds how long GET /v1/cpu measures.
const maxCPUInterval = 5 * time.Minute

// handleCPU reports where the lab kernel's CPU time goes, by kind of
// process: each node's agent and HAProxy by role, the supervisor, the
// VM's init, and what no process accounts for. ?interval=10s measures
// over that time; without it, since boot (each process since it started).
func (s *Supervisor) handleCPU(w http.ResponseWriter, r *http.Request) {
	var interval time.Duration
	if v := r.URL.Query().Get(control.CPUIntervalParam); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxCPUInterval {
			http.Error(w, fmt.Sprintf("interval %q: want a duration up to %s", v, maxCPUInterval), http.StatusBadRequest)
			return
		}
		interval = d
	}
	before, err := cpustat.Take("/proc")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	kind := s.processKinds()
	if interval == 0 {
		writeJSON(w, cpustat.SinceBoot(before, kind))
		return
	}
	select {
	case <-time.After(interval):
	case <-r.Context().Done():
		return
	}
	after, err := cpustat.Take("/proc")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Nodes added meanwhile count too.
	writeJSON(w, cpustat.Compare(before, after, s.processKinds()))
}

// processKinds returns how processes of the lab kernel are grouped: by the
// role of the node whose network namespace they run in, and the program
// ("lb4 agent", "lb7 haproxy", "client ping"); the supervisor and the VM's
// init apart; other processes of the host not at all.
func (s *Supervisor) processKinds() func(cpustat.Process) string {
	t, _ := s.current()
	roles := map[uint64]string{} // netns inode -> role
	for _, n := range t.Nodes {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join("/run/netns", fabric.NodeNetns(s.cfg.Name, n.Name)), &st); err == nil {
			roles[st.Ino] = string(n.Role)
		}
	}
	self := os.Getpid()
	pool := -1
	s.mu.Lock()
	if s.pool != nil {
		pool = s.pool.cmd.Process.Pid
	}
	s.mu.Unlock()
	exe := commOf(s.cfg.Executable)
	return func(p cpustat.Process) string {
		switch {
		case p.PID == self:
			return "supervisor"
		case p.PID == pool:
			return PoolKind
		case p.PID == 1 && s.cfg.Mode == control.ModeVM:
			return "vm init"
		}
		role, ok := roles[p.NetNS]
		if !ok {
			return ""
		}
		if p.Comm == exe {
			return role + " agent"
		}
		return role + " " + p.Comm
	}
}

// PoolKind is the pool's kind of process: the agents of the LB4s, LB7s, the
// backends, the clients and the hosts, in one process.
const PoolKind = "pool (lb4, lb7, server, client, host agents)"

// commOf is the name the kernel gives a program's processes: its file's
// base name, cut to 15 bytes.
func commOf(path string) string {
	c := filepath.Base(path)
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}
