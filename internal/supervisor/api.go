package supervisor

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/node"
)

func (s *Supervisor) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, map[string]bool{"ok": true}) })
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET "+control.PathCPU, s.handleCPU)
	mux.HandleFunc("POST /v1/nodes/{node}/exec", s.proxy("/exec"))
	mux.HandleFunc("GET /v1/nodes/{node}/http", s.proxy("/http"))
	mux.HandleFunc("GET /v1/nodes/{node}/bench", s.proxy("/bench"))
	mux.HandleFunc("POST /v1/nodes/{node}/maint", s.proxy("/maint"))
	mux.HandleFunc("POST /v1/nodes/{node}/load", s.proxyLoad)
	mux.HandleFunc("/v1/nodes/{node}/load/{rest...}", s.proxyLoad)
	mux.HandleFunc("GET /v1/events", s.handleEvents)
	mux.HandleFunc("GET "+control.PathLoads, s.handleLoads)
	mux.HandleFunc("GET /v1/nodes/{node}/logs", s.handleLogs)
	mux.HandleFunc("POST /v1/nodes/{node}/kill", s.handleKill)
	mux.HandleFunc("POST /v1/nodes/{node}/revive", s.handleRevive)
	mux.HandleFunc("POST /v1/links/{a}/{b}", s.handleLink)
	mux.HandleFunc("POST /v1/links/{a}/{b}/impair", s.handleImpair)
	mux.HandleFunc("POST /v1/nodes/{node}/add", s.handleAdd)
	mux.HandleFunc("POST /v1/nodes/{node}/remove", s.handleRemove)
	mux.HandleFunc("POST /v1/down", s.handleDown)
	return s.auth(mux)
}

func (s *Supervisor) auth(h http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Supervisor) handleStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st := control.Status{
		Name: s.cfg.Name, Mode: s.cfg.Mode, Topology: s.cfg.Topology,
		Kernel: kernelRelease(), Started: s.started, Phase: string(s.phase), UpTime: s.upTime,
		SupervisorPID: os.Getpid(), DownLinks: s.downLinkList(),
	}
	s.mu.Unlock()
	topo, _ := s.current()
	if topo == nil {
		writeJSON(w, st)
		return
	}
	// ?ready asks each agent only whether it has converged (cheap), not
	// for its tier's state; ?role=lb4&role=router keeps those roles only.
	// Both keep polling light in a busy lab.
	q := r.URL.Query()
	agentPath := "/status"
	if q.Has("ready") {
		agentPath = "/ready"
	}
	nodes := topo.Nodes
	if roles := q["role"]; len(roles) > 0 {
		nodes = nil
		for _, n := range topo.Nodes {
			if slices.Contains(roles, string(n.Role)) {
				nodes = append(nodes, n)
			}
		}
	}
	for _, v := range topo.VIPs {
		st.VIPs = append(st.VIPs, control.VIPStatus{
			Name: v.Name, Address: netip.AddrPortFrom(v.Address, v.Port).String(), Protocol: v.Protocol,
			Scheduler: v.Scheduler, Names: v.Names, Allocated: v.Allocated,
		})
	}
	st.Nodes = make([]control.NodeStatus, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		ns := control.NodeStatus{Name: n.Name, Role: string(n.Role), Netns: fabric.NodeNetns(s.cfg.Name, n.Name), Loopback: len(n.Loopback)}
		for _, ifc := range n.Interfaces {
			is := control.InterfaceStatus{Name: ifc.Name, Segment: ifc.Segment, Peer: ifc.Peer}
			for _, a := range ifc.Addresses {
				is.Addresses = append(is.Addresses, a.String())
			}
			ns.Interfaces = append(ns.Interfaces, is)
		}
		st.Nodes[i] = ns
		switch s.lifeOf(n.Name) {
		case nodeKilled, nodeRemoving:
			st.Nodes[i].Agent = control.AgentStatus{State: "killed"}
			continue
		case nodeFrozen:
			st.Nodes[i].Agent = control.AgentStatus{State: "frozen"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Nodes[i].Agent = s.agentGet(r.Context(), n.Name, agentPath)
		}()
	}
	wg.Wait()
	writeJSON(w, st)
}

func (s *Supervisor) agentClient(name string) (*control.Client, error) {
	return control.NewClient(control.Endpoint("unix://"+filepath.Join(s.nodeDir(name), node.SocketName)), "")
}

func (s *Supervisor) agentGet(ctx context.Context, name, path string) control.AgentStatus {
	return s.askAgent(ctx, name, path, agentStatusTimeout)
}

// askAgent asks the agent of node name for its status at path. When no
// status comes within timeout, the state says why: the agent exited, is
// alive but slow, or cannot be reached.
func (s *Supervisor) askAgent(ctx context.Context, name, path string, timeout time.Duration) control.AgentStatus {
	c, err := s.agentClient(name)
	if err != nil {
		return control.AgentStatus{State: "unreachable", Error: err.Error()}
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var as control.AgentStatus
	err = c.GetJSON(ctx, path, &as)
	if err == nil {
		return as
	}
	a := s.agentOf(name)
	exited := a == nil
	if a != nil {
		select {
		case <-a.exited:
			exited = true
		default:
		}
	}
	switch {
	case exited:
		return control.AgentStatus{State: "exited", Error: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		// Alive but slow: a node of a busy one-CPU VM, or a tier whose
		// own queries (HAProxy's runtime API) wait for the CPU.
		return control.AgentStatus{State: "slow", Error: fmt.Sprintf("no answer within %s: the agent runs but is busy", timeout)}
	}
	return control.AgentStatus{State: "unreachable", Error: err.Error()}
}

// agentStatusTimeout bounds one agent's answer to a status request.
const agentStatusTimeout = 10 * time.Second

// knownNode answers 404 for a node the lab does not have.
func (s *Supervisor) knownNode(w http.ResponseWriter, name string) bool {
	if t, _ := s.current(); t != nil {
		if _, ok := t.Node(name); ok {
			return true
		}
	}
	http.Error(w, "no node "+name+" in lab "+s.cfg.Name, http.StatusNotFound)
	return false
}

// proxy hands a request to the node's agent at path, streaming both ways
// (commands run by `lab exec` read their input while they write output).
func (s *Supervisor) proxy(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("node")
		if !s.knownNode(w, name) {
			return
		}
		sock := filepath.Join(s.nodeDir(name), node.SocketName)
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL = &url.URL{Scheme: "http", Host: "agent", Path: path, RawQuery: r.URL.RawQuery}
				pr.Out.Header.Del("Authorization")
			},
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			}},
			FlushInterval: -1,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				http.Error(w, fmt.Sprintf("agent of %s unreachable: %v", name, err), http.StatusBadGateway)
			},
		}
		rp.ServeHTTP(w, r)
	}
}

// handleEvents merges every node's event log, oldest first, and numbers
// the events; with ?since=N it answers those numbered after N only.
func (s *Supervisor) handleEvents(w http.ResponseWriter, r *http.Request) {
	var all []control.Event
	var mu sync.Mutex
	var wg sync.WaitGroup
	t, _ := s.current()
	for _, n := range t.Nodes {
		if s.lifeOf(n.Name).down() { // a frozen agent would not answer; a dead one's log is saved
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := s.agentEvents(n.Name)
			mu.Lock()
			all = append(all, evs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.mu.Lock()
	all = append(all, s.events...)
	for _, n := range s.nodes {
		all = append(all, n.saved...)
	}
	all = append(all, s.removed...)
	s.mu.Unlock()
	slices.SortStableFunc(all, byTime)
	s.numbered.add(all)
	if v := r.URL.Query().Get(control.EventsSinceParam); v != "" {
		since, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("%s %q: want an event number", control.EventsSinceParam, v), http.StatusBadRequest)
			return
		}
		all = s.numbered.since(since)
	}
	writeJSON(w, nonNil(all))
}

// nonNil answers an empty list as [], not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// agentEvents returns a node agent's event log, nil when it does not
// answer within a few seconds.
func (s *Supervisor) agentEvents(name string) []control.Event {
	c, err := s.agentClient(name)
	if err != nil {
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var evs []control.Event
	if c.GetJSON(ctx, "/events", &evs) != nil {
		return nil
	}
	return evs
}

func (s *Supervisor) handleLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	if !s.knownNode(w, name) {
		return
	}
	f, err := os.Open(filepath.Join(s.nodeDir(name), node.LogName))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.Copy(w, f)
	if r.URL.Query().Get("follow") == "" {
		return
	}
	rc := http.NewResponseController(w)
	for {
		_ = rc.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := io.Copy(w, f); err != nil {
			return
		}
	}
}

// handleDown takes the lab down and answers when it is gone.
func (s *Supervisor) handleDown(w http.ResponseWriter, _ *http.Request) {
	err := s.teardown()
	s.stop()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]bool{"down": true})
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return string(b[:len(b)-1])
}
