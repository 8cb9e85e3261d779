package scenario

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// Topology is what CheckFile knows of the topology a scenario runs on.
type Topology struct {
	// Nodes maps each node's name to its role.
	Nodes map[string]string
	// VIPs are the topology's VIPs, as the lab reports them.
	VIPs []VIP
	// Segments are the topology's segment names (link and impair peers).
	Segments []string
	// DNS is set when the topology has a dns node, which service names in
	// load.names need.
	DNS bool
}

// CheckFile reads and validates the scenario at path as LoadFile does,
// then checks it against t, the topology it names: every node, VIP and
// scheduler a step, the load or an assertion names exists there (a node
// that an add step creates exists from that step on), and load.names has
// a name server to ask. Every problem is reported at once, with its line.
// Nothing runs: no lab, no root.
func CheckFile(path string, t Topology) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("check scenario: %w", err)
	}
	c := &collector{file: path}
	s := parse(c, path, data)
	if s != nil {
		s.fillDefaults()
		validate(c, s)
		checkTopology(c, s, t)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkTopology reports what s names that t lacks.
func checkTopology(c *collector, s *Scenario, t Topology) {
	nodes := make(map[string]string, len(t.Nodes))
	for n, r := range t.Nodes {
		nodes[n] = r
	}
	node := func(path, name string, roles ...string) {
		r, ok := nodes[name]
		switch {
		case name == "":
		case !ok:
			c.field(path, "no node %s in the topology (nodes: %s)", name, strings.Join(sortedKeys(nodes), ", "))
		case len(roles) > 0 && !slices.Contains(roles, r):
			c.field(path, "%s has role %s, want role %s", name, r, strings.Join(roles, " or "))
		}
	}
	vip := func(path, name string) {
		if name != "" && !slices.ContainsFunc(t.VIPs, func(v VIP) bool { return v.Name == name || v.Service == name }) {
			c.field(path, "no VIP %s in the topology (VIPs: %s)", name, strings.Join(vipNames(t.VIPs), ", "))
		}
	}
	node("load.from", s.Load.From)
	for i, v := range s.Load.VIPs {
		vip(fmt.Sprintf("load.vips[%d]", i), v)
	}
	if len(s.Load.Names) > 0 && !t.DNS {
		c.field("load.names", "the topology has no dns node to look names up")
	}
	for i, st := range s.Steps {
		path := fmt.Sprintf("steps[%d].%s", i, st.Kind)
		a := st.Action
		switch st.Kind {
		case KindKill, KindFreeze, KindRevive, KindRemove:
			node(path, a.Node)
			for j, n := range a.Nodes {
				node(fmt.Sprintf("%s.nodes[%d]", path, j), n)
			}
			if a.Role != "" && !slices.Contains(slices.Collect(maps.Values(nodes)), a.Role) {
				c.field(path+".role", "no node of role %s in the topology", a.Role)
			}
		case KindMaint:
			if a.VIP != "" {
				vip(path+".vip", a.VIP)
				break
			}
			node(path+".node", a.Node, "lb4", "lb7")
		case KindAgent:
			node(path+".node", a.Node, "lb7", "server")
		case KindLink, KindImpair:
			node(path+".node", a.Node)
			if _, isNode := nodes[a.Peer]; a.Peer != "" && !isNode && !t.segment(a.Peer) {
				c.field(path+".peer", "no segment or node %s in the topology", a.Peer)
			}
		case KindExec:
			node(path+".node", a.Node)
		case KindAdd:
			if _, ok := nodes[a.Node]; ok {
				c.field(path+".node", "%s is already in the topology", a.Node)
			}
			node(path+".like", a.Like)
			if a.Like != "" {
				nodes[a.Node] = nodes[a.Like]
			} else {
				nodes[a.Node] = ""
			}
		case KindWait:
			vip(path+".vip", st.Wait.VIP)
			node(path+".lb7", st.Wait.LB7, "lb7")
		}
	}
	for i, a := range s.Assert {
		path := fmt.Sprintf("assert[%d]", i)
		vip(path+".vip", a.Scope.VIP)
		node(path+".except-lb7", a.Scope.ExceptLB7, "lb7")
		if sc := a.Scope.Scheduler; sc != "" && !slices.ContainsFunc(t.VIPs, func(v VIP) bool { return v.Scheduler == sc }) {
			c.field(path+".scheduler", "no VIP with scheduler %s in the topology", sc)
		}
	}
}

// segment reports whether name is a segment of t.
func (t Topology) segment(name string) bool {
	return slices.Contains(t.Segments, name)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func vipNames(vips []VIP) []string {
	var out []string
	for _, v := range vips {
		if !slices.Contains(out, v.Service) {
			out = append(out, v.Service)
		}
	}
	return out
}
