package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/scenario"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/traffic"
)

// LoadScenario reads and validates a scenario file; the error lists every
// problem as FILE:LINE: field: message.
func LoadScenario(path string) (*Scenario, error) {
	s, err := scenario.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return scenarioFrom(s), nil
}

// CheckScenario reads and validates a scenario file and checks it against
// the topology it names (also read and validated): nodes, VIPs,
// schedulers and service names must exist there. It needs no lab and no
// privilege: what `lab test --check` runs in a pull request. The error
// lists every problem as FILE:LINE: field: message.
func CheckScenario(path string) (*Scenario, error) {
	s, err := scenario.LoadFile(path)
	if err != nil {
		return nil, err
	}
	if s.Topology == "" {
		return scenarioFrom(s), nil // a scenario for any lab has nothing to check against
	}
	t, err := topology.Load(s.Topology)
	if err != nil {
		return nil, fmt.Errorf("topology of %s: %w", path, err)
	}
	if s, err = scenario.CheckFile(path, scenarioTopology(t)); err != nil {
		return nil, err
	}
	return scenarioFrom(s), nil
}

// scenarioTopology is what package scenario checks a scenario against.
func scenarioTopology(t *topology.Topology) scenario.Topology {
	st := scenario.Topology{Nodes: map[string]string{}, VIPs: scenarioVIPs(t), DNS: len(t.NodesByRole(topology.RoleDNS)) > 0}
	for _, n := range t.Nodes {
		st.Nodes[n.Name] = string(n.Role)
	}
	for _, sg := range t.Segments {
		st.Segments = append(st.Segments, sg.Name)
	}
	return st
}

// scenarioVIPs are the VIPs of t as package scenario sees them.
func scenarioVIPs(t *topology.Topology) []scenario.VIP {
	var out []scenario.VIP
	for _, v := range t.VIPs {
		out = append(out, scenario.VIP{Name: t.VIPLabel(v), Service: v.Name, Target: netip.AddrPortFrom(v.Address, v.Port), Scheduler: v.Scheduler})
	}
	return out
}

// RunScenario plays s on the lab: it starts the load, injects, waits for
// conditions, stops the load and checks the assertions. A failed step or
// assertion is in the result (Passed() is false); the error is for misuse.
// The scenario runs with its Name, Claim and Load as they are now, and the
// steps and assertions of its file.
func (l *Lab) RunScenario(ctx context.Context, s *Scenario, log *slog.Logger) (*ScenarioResult, error) {
	if s == nil || s.raw == nil {
		return nil, errors.New("run scenario: no scenario read by LoadScenario or CheckScenario")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	raw := s.scenario()
	res, err := scenario.Run(ctx, scenarioLab{l: l, load: s.Load}, raw, log)
	if err != nil {
		return nil, err
	}
	return scenarioResultFrom(res), nil
}

// RunScenarioFresh brings up a lab of the scenario's topology (named
// opts.Name, by default "test-" and the scenario's name), runs s on it
// and takes it down, whatever happened.
func RunScenarioFresh(ctx context.Context, s *Scenario, opts Options) (res *ScenarioResult, err error) {
	if s.Topology == "" {
		return nil, fmt.Errorf("scenario %s names no topology", s.Name)
	}
	if opts.Name == "" {
		opts.Name = "test-" + s.Name
		if len(opts.Name) > 24 {
			opts.Name = strings.TrimRight(opts.Name[:24], "-")
		}
	}
	_ = Down(context.WithoutCancel(ctx), opts.Name, opts.Log) // a leftover of a crashed run
	l, err := Up(ctx, s.Topology, opts)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Name, err)
	}
	defer func() {
		l.Close()
		if derr := Down(context.WithoutCancel(ctx), opts.Name, opts.Log); derr != nil && err == nil {
			err = derr
		}
	}()
	return l.RunScenario(ctx, s, opts.Log)
}

// scenarioLab is the lab as package scenario sees it; load is the
// scenario's load, which may say more than scenario.Load can.
type scenarioLab struct {
	l    *Lab
	load LoadConfig
}

func (s scenarioLab) VIPs(context.Context) ([]scenario.VIP, error) {
	t, err := s.l.topology()
	if err != nil {
		return nil, err
	}
	return scenarioVIPs(t), nil
}

// StartLoad starts the scenario's load, as the public Scenario.Load says
// (ld is its projection).
func (s scenarioLab) StartLoad(ctx context.Context, _ scenario.Load) (scenario.LoadRun, error) {
	ld, err := s.l.StartLoad(ctx, s.load)
	if err != nil {
		return nil, err
	}
	return scenarioLoad{ld}, nil
}

// scenarioLoad is a load as package scenario sees it.
type scenarioLoad struct{ ld *Load }

func (s scenarioLoad) Stop(ctx context.Context) (*traffic.Report, error) { return s.ld.stop(ctx) }

// Nodes lists the lab's nodes of role, for the steps into a share of them.
func (s scenarioLab) Nodes(_ context.Context, role string) ([]string, error) {
	t, err := s.l.topology()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range t.NodesByRole(topology.Role(role)) {
		names = append(names, n.Name)
	}
	return names, nil
}

func (s scenarioLab) Do(ctx context.Context, a scenario.Action) error {
	l := s.l
	switch a.Kind {
	case scenario.KindKill:
		return l.Kill(ctx, a.Node)
	case scenario.KindFreeze:
		return l.Freeze(ctx, a.Node)
	case scenario.KindRevive:
		return l.Revive(ctx, a.Node)
	case scenario.KindMaint:
		if a.VIP != "" {
			return l.MaintVIP(ctx, a.VIP, a.State == "on")
		}
		return l.Maint(ctx, a.Node, a.State == "on")
	case scenario.KindAgent:
		return l.Agent(ctx, a.Node, a.State)
	case scenario.KindLink:
		return l.SetLink(ctx, a.Node, a.Peer, a.State == "up")
	case scenario.KindImpair:
		return l.Impair(ctx, a.Node, a.Peer, Impairment{Delay: a.Delay, Jitter: a.Jitter, Loss: a.Loss})
	case scenario.KindAdd:
		like := a.Like
		if like == "" {
			var err error
			if like, err = s.model(a.Node); err != nil {
				return err
			}
		}
		return l.Add(ctx, a.Node, like)
	case scenario.KindRemove:
		return l.Remove(ctx, a.Node)
	case scenario.KindExec:
		var out strings.Builder
		code, err := l.Exec(ctx, a.Node, a.Argv, nil, &out, &out)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("%s exited with status %d: %s", strings.Join(a.Argv, " "), code, strings.TrimSpace(out.String()))
		}
		return nil
	}
	return fmt.Errorf("unknown step kind %q", a.Kind)
}

// model picks the node an added node copies when the scenario names none:
// the first node of the group its name belongs to (lb7-4: group lb7).
func (s scenarioLab) model(name string) (string, error) {
	t, err := s.l.topology()
	if err != nil {
		return "", err
	}
	group := strings.TrimRight(name, "0123456789")
	group = strings.TrimSuffix(group, "-")
	for _, n := range t.Nodes {
		if n.Group == group && topology.Changeable(n.Role) {
			return n.Name, nil
		}
	}
	return "", fmt.Errorf("add %s: no group %s to copy a node from (give like:)", name, group)
}

func (s scenarioLab) Check(ctx context.Context, c scenario.Condition) (bool, string, error) {
	var st *control.Status
	var err error
	switch {
	case c.Converged:
		st, err = s.l.client.Readiness(ctx)
	case c.NextHops != nil:
		st, err = s.l.client.StatusOf(ctx, string(topology.RoleRouter))
	default:
		st, err = s.l.client.StatusOf(ctx, string(topology.RoleLB4))
	}
	if err != nil {
		// A busy lab may answer late: not yet, rather than the end.
		return false, err.Error(), nil
	}
	t, err := s.l.topology()
	if err != nil {
		return false, "", err
	}
	return checkCondition(t, st, c)
}

// checkCondition judges c on a status snapshot of the lab of topology t.
func checkCondition(t *topology.Topology, st *control.Status, c scenario.Condition) (bool, string, error) {
	if c.Converged {
		for _, n := range st.Nodes {
			switch {
			case n.Agent.State == "killed" || n.Agent.State == "frozen":
			case n.Agent.State != "running":
				return false, fmt.Sprintf("%s: agent %s", n.Name, n.Agent.State), nil
			case !n.Agent.Ready:
				return false, n.Name + ": " + n.Agent.Waiting, nil
			}
		}
		return true, "", nil
	}
	vips := t.VIPsNamed(c.VIP)
	if len(vips) == 0 {
		return false, "", fmt.Errorf("no VIP %s", c.VIP)
	}
	for _, i := range vips {
		if ok, why, err := checkVIPCondition(t, st, c, t.VIPs[i]); !ok || err != nil {
			return ok, why, err
		}
	}
	return true, "", nil
}

// checkVIPCondition judges c for one VIP of its name.
func checkVIPCondition(t *topology.Topology, st *control.Status, c scenario.Condition, vip topology.VIP) (bool, string, error) {
	switch {
	case c.NextHops != nil:
		prefix := netip.PrefixFrom(vip.Address, vip.Address.BitLen()).String()
		for _, n := range st.Nodes {
			if n.Role != string(topology.RoleRouter) || n.Agent.State != "running" {
				continue
			}
			var rs node.RouterStatus
			if err := json.Unmarshal(n.Agent.Tier, &rs); err != nil {
				return false, n.Name + ": no router status yet", nil
			}
			if got := len(rs.Routes[prefix]); got != *c.NextHops {
				return false, fmt.Sprintf("%s routes %s via %d next hops", n.Name, prefix, got), nil
			}
		}
		return true, "", nil
	case c.Weight != nil:
		lb7, ok := t.Node(c.LB7)
		if !ok || lb7.Role != topology.RoleLB7 {
			return false, "", fmt.Errorf("no lb7 %s", c.LB7)
		}
		for _, n := range st.Nodes {
			if n.Role != string(topology.RoleLB4) || n.Agent.State != "running" {
				continue
			}
			addr, _ := t.AddressFacing(n.Name, c.LB7, topology.FamilyOf(vip.Address))
			var ls node.LB4Status
			if err := json.Unmarshal(n.Agent.Tier, &ls); err != nil {
				return false, n.Name + ": no IPVS status yet", nil
			}
			w := -1
			for _, svc := range ls.Services {
				if svc.Service.Address != vip.Address || svc.Service.Port != vip.Port {
					continue
				}
				for _, d := range svc.Destinations {
					if d.Address == addr {
						w = d.Weight
					}
				}
			}
			if w != *c.Weight {
				return false, fmt.Sprintf("%s gives %s weight %d", n.Name, c.LB7, w), nil
			}
		}
		return true, "", nil
	}
	return false, "", errors.New("empty condition")
}
