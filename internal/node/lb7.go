package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/lab-lb/lab/internal/agentcheck"
	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/topology"
)

// AgentCheckFile holds a node's agent-check answer (up, down, drain,
// maint, ready, N%...): on an LB7 it drives the fake "enabler" server, on a
// backend its state in every LB7.
const AgentCheckFile = "agent-check"

// enablerAgent is where an LB7's own agent answers HAProxy.
var enablerAgent = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 5555)

// lb7 is tier 3: the IPIP tunnels (made by the fabric) decapsulate what
// the LB4s send, and HAProxy, bound to the VIPs, answers the clients
// directly. Its /healthcheck fails when no backend is usable or when the
// LB7's /etc/lb/agent-check says down (the "enabler" fake server), which
// makes every LB4 take it out.
type lb7 struct {
	a    *agent
	cfg  haproxy.Config
	proc *haproxy.Process
}

// HAProxyConfig is the HAProxy configuration of LB7 n, whose state
// directory is dir: VIPs, its own address for the LB4s' checks, every
// backend, and the topology's HAProxy settings.
func HAProxyConfig(t *topology.Topology, n *topology.Node, dir string) (haproxy.Config, error) {
	s := n.Settings.HAProxy
	cfg := haproxy.DefaultConfig()
	cfg.Node = n.Name
	cfg.Maxconn = s.Maxconn
	cfg.TimeoutConnect, cfg.TimeoutClient, cfg.TimeoutServer = s.TimeoutConnect, s.TimeoutClient, s.TimeoutServer
	cfg.CheckInterval, cfg.Rise, cfg.Fall = s.CheckInterval, s.Rise, s.Fall
	cfg.AgentPort, cfg.AgentInterval, cfg.SendProxy = s.AgentPort, s.AgentInterval, s.SendProxy
	cfg.EnablerAgent = enablerAgent
	cfg.Dir = filepath.Join(dir, "haproxy")
	// Self: the address the LB4s check.
	for _, lb4 := range t.NodesByRole(topology.RoleLB4) {
		if addr, ok := t.AddressFacing(lb4.Name, n.Name, topology.IPv4); ok {
			cfg.Self = addr
			break
		}
	}
	if !cfg.Self.IsValid() {
		return cfg, fmt.Errorf("lb7 %s shares no segment with an LB4", n.Name)
	}
	for _, v := range t.VIPs {
		if v.Protocol == "tcp" {
			cfg.VIPs = append(cfg.VIPs, haproxy.VIP{Address: v.Address, Port: int(v.Port)})
		}
	}
	// HAProxy reaches each backend over IPv6 where they share it, as the
	// original lab does, over IPv4 otherwise, whatever the client's family.
	for _, srv := range t.NodesByRole(topology.RoleServer) {
		addr, ok := t.AddressFacing(n.Name, srv.Name, topology.IPv6)
		if !ok {
			addr, ok = t.AddressFacing(n.Name, srv.Name, topology.IPv4)
		}
		if !ok {
			return cfg, fmt.Errorf("lb7 %s shares no segment with backend %s", n.Name, srv.Name)
		}
		cfg.Servers = append(cfg.Servers, haproxy.Server{Name: srv.Name, Address: addr, Port: 80})
	}
	return cfg, nil
}

// HAProxyConfigFile names the pre-generated configuration of an LB7 in the
// directory `lab up` writes them to.
func HAProxyConfigFile(configs, lb7 string) string {
	return filepath.Join(configs, lb7+".haproxy.cfg")
}

// Start runs HAProxy on the configuration `lab up` generated with
// client-native before the lab started (on the host: generating it in a
// slow VM costs seconds per LB7).
func (l *lb7) Start(ctx context.Context) error {
	cfg, err := HAProxyConfig(l.a.topology(), l.a.node, l.a.cfg.Dir)
	if err != nil {
		return err
	}
	l.cfg = cfg
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	text, err := os.ReadFile(HAProxyConfigFile(l.a.cfg.Configs, l.a.node.Name))
	if err != nil {
		return fmt.Errorf("read the generated haproxy configuration: %w", err)
	}
	if err := os.WriteFile(cfg.ConfigFile(), text, 0o644); err != nil {
		return err
	}

	var wg sync.WaitGroup
	agent := &agentcheck.Server{Path: l.a.lbFile(AgentCheckFile), Log: l.a.log}
	if err := l.a.serve(ctx, &wg, enablerAgent.String(), "enabler agent", agent.Serve); err != nil {
		return err
	}
	proc, err := haproxy.Start(ctx, cfg.ConfigFile(), l.a.log, l.a.at.start)
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	l.proc = proc
	go func() {
		<-ctx.Done()
		if err := proc.Stop(); err != nil {
			l.a.log.Warn("stop haproxy", "err", err)
		}
	}()
	return nil
}

// Ready when HAProxy's own /healthcheck answers 200 on the LB7's address,
// which is what the LB4s check.
func (l *lb7) Ready() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultProbeTimeout)
	defer cancel()
	code, err := httpStatus(ctx, l.a.at.dial(&net.Dialer{}), "http://"+netip.AddrPortFrom(l.cfg.Self, haproxy.DefaultHealthPort).String()+haproxy.HealthURI)
	if err != nil {
		return false, err.Error()
	}
	if code != 200 {
		return false, fmt.Sprintf("/healthcheck answers %d", code)
	}
	return true, ""
}

// LB7Status is what `lab status` shows of an LB7.
type LB7Status struct {
	Servers []haproxy.ServerState `json:"servers"`
	Enabler []haproxy.ServerState `json:"enabler"`
}

func (l *lb7) Status() any {
	var st LB7Status
	if l.proc == nil {
		return st
	}
	rt, err := haproxy.NewRuntime(l.proc.StatsSocket())
	if err != nil {
		return st
	}
	st.Servers, _ = rt.Servers(haproxy.BackendServers)
	st.Enabler, _ = rt.Servers(haproxy.BackendEnabler)
	return st
}

// server is a backend: an HTTP server answering with its name, and its
// agent-check answering from its own /etc/lb/agent-check.
type server struct{ a *agent }

func (s *server) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	n := s.a.node
	web := &backendServer{name: n.Name, proxy: n.Settings.HAProxy.SendProxy, log: s.a.log}
	if err := s.a.serve(ctx, &wg, ":80", "http server", web.Serve); err != nil {
		return err
	}
	agent := &agentcheck.Server{Path: s.a.lbFile(AgentCheckFile), Log: s.a.log}
	port := n.Settings.HAProxy.AgentPort
	return s.a.serve(ctx, &wg, fmt.Sprintf(":%d", port), "agent-check", agent.Serve)
}

func (s *server) Ready() (bool, string) { return true, "" }
func (s *server) Status() any           { return nil }

func (l *lb7) Summary() string {
	st := l.Status().(LB7Status)
	up := 0
	for _, s := range st.Servers {
		if s.Operational == "UP" && s.Admin == "READY" {
			up++
		}
	}
	enabler := "?"
	if len(st.Enabler) == 1 {
		enabler = st.Enabler[0].Operational
	}
	return fmt.Sprintf("servers ready %d/%d; enabler %s", up, len(st.Servers), enabler)
}

func (s *server) Summary() string {
	b, err := os.ReadFile(s.a.lbFile(AgentCheckFile))
	if err != nil {
		return "agent-check up (no file)"
	}
	return "agent-check " + strings.TrimSpace(string(b))
}
