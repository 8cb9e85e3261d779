package topology

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Runtime changes: `lab add NODE --like lb7-1` and `lab remove NODE` turn
// the running topology into a new one with one LB4 or LB7 more or less.
// The other nodes keep their names, addresses and order, so only the
// difference has to be built or torn down, and every LB4 keeps listing the
// LB7s in the same order (the new one last).

// Changeable reports whether nodes of role r can be added or removed at
// runtime.
func Changeable(r Role) bool { return r == RoleLB4 || r == RoleLB7 }

// WithNodeLike returns a copy of t with a new node name made like the
// existing node like: same role, segments, routes and settings, the lowest
// free address on each segment. The new node comes last in node order.
func (t *Topology) WithNodeLike(name, like string) (*Topology, error) {
	switch {
	case !nameRE.MatchString(name):
		return nil, fmt.Errorf("bad node name %q (want [a-z][a-z0-9-]*)", name)
	case len(name) > maxNameLen:
		return nil, fmt.Errorf("node name %q is longer than %d characters", name, maxNameLen)
	case reservedName(name):
		return nil, fmt.Errorf("node name %q is reserved (an interface or sysctl directory has it)", name)
	}
	if _, ok := t.Node(name); ok {
		return nil, fmt.Errorf("node %s already exists", name)
	}
	for _, s := range t.Segments {
		if s.Name == name {
			return nil, fmt.Errorf("%s names a segment", name)
		}
	}
	model, ok := t.Node(like)
	if !ok {
		return nil, fmt.Errorf("no node %s to model %s on", like, name)
	}
	if !Changeable(model.Role) {
		return nil, fmt.Errorf("%s is a %s: only lb4 and lb7 nodes can be added at runtime", like, model.Role)
	}
	n := Node{Name: name, Role: model.Role, Settings: model.Settings.clone()}
	if len(model.Loopback) > 0 {
		return nil, fmt.Errorf("%s has loopback addresses of its own: a copy would clash", like)
	}
	nt := t.clone()
	for _, ifc := range model.Interfaces {
		if ifc.Segment == "" {
			return nil, fmt.Errorf("%s has a point-to-point link to %s: only nodes on segments can be copied", like, ifc.Peer)
		}
		seg := nt.segment(ifc.Segment)
		ni := Interface{Name: ifc.Name, Segment: ifc.Segment}
		for _, p := range seg.Prefixes {
			addr, err := nt.freeAddress(p)
			if err != nil {
				return nil, fmt.Errorf("segment %s: %w", seg.Name, err)
			}
			ni.Addresses = append(ni.Addresses, netip.PrefixFrom(addr, p.Bits()))
		}
		n.Interfaces = append(n.Interfaces, ni)
		seg.Members = append(seg.Members, name)
	}
	n.Routes = slices.Clone(model.Routes)
	nt.Nodes = append(nt.Nodes, n)
	return nt, nil
}

// Without returns a copy of t without the LB4 or LB7 name. The last node of
// a role cannot go.
func (t *Topology) Without(name string) (*Topology, error) {
	n, ok := t.Node(name)
	if !ok {
		return nil, fmt.Errorf("no node %s", name)
	}
	if !Changeable(n.Role) {
		return nil, fmt.Errorf("%s is a %s: only lb4 and lb7 nodes can be removed at runtime", name, n.Role)
	}
	if len(t.NodesByRole(n.Role)) == 1 {
		return nil, fmt.Errorf("%s is the last %s", name, n.Role)
	}
	nt := t.clone()
	nt.Nodes = slices.DeleteFunc(nt.Nodes, func(x Node) bool { return x.Name == name })
	for i := range nt.Segments {
		nt.Segments[i].Members = slices.DeleteFunc(nt.Segments[i].Members, func(m string) bool { return m == name })
	}
	for _, other := range nt.Nodes {
		for _, r := range other.Routes {
			if a, ok := t.AddressFacing(other.Name, name, FamilyOf(r.Via)); ok && r.Via == a {
				return nil, fmt.Errorf("%s routes %s through %s", other.Name, r.To, name)
			}
		}
	}
	return nt, nil
}

// clone copies t deeply enough for WithNodeLike and Without to change it.
func (t *Topology) clone() *Topology {
	nt := *t
	nt.VIPs = slices.Clone(t.VIPs)
	nt.Segments = slices.Clone(t.Segments)
	for i := range nt.Segments {
		nt.Segments[i].Members = slices.Clone(nt.Segments[i].Members)
	}
	nt.Links = slices.Clone(t.Links)
	nt.Nodes = slices.Clone(t.Nodes)
	return &nt
}

func (t *Topology) segment(name string) *Segment {
	for i := range t.Segments {
		if t.Segments[i].Name == name {
			return &t.Segments[i]
		}
	}
	return nil
}

// freeAddress is the lowest host address of p that no interface holds.
func (t *Topology) freeAddress(p netip.Prefix) (netip.Addr, error) {
	var taken []netip.Addr
	for _, n := range t.Nodes {
		for _, ifc := range n.Interfaces {
			for _, a := range ifc.Addresses {
				if p.Contains(a.Addr()) {
					taken = append(taken, a.Addr())
				}
			}
		}
	}
	addrs, missing := allocate(p, append(taken, netip.Addr{}))
	if missing > 0 {
		return netip.Addr{}, fmt.Errorf("no free address left in %s", p)
	}
	return addrs[len(addrs)-1], nil
}

// Resolved topologies are saved as JSON once they differ from their file
// (after `lab add` or `lab remove`); Load reads either.

// Save writes t, resolved, as JSON to path.
func (t *Topology) Save(path string) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("encode topology: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("save topology: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save topology: %w", err)
	}
	return nil
}

// isResolved reports whether path holds a topology saved by Save.
func isResolved(path string) bool { return strings.HasSuffix(path, ".json") }

func loadResolved(path string, data []byte) (*Topology, error) {
	var t Topology
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("load topology %s: %w", path, err)
	}
	// Saved before the DNS tier: its defaults, and every VIP under its own
	// name only.
	if t.DNS.Zone == "" {
		t.DNS = DNS{Zone: defaultZone, TTL: defaultTTL}
	}
	if t.VIPPool == nil {
		t.VIPPool = []netip.Prefix{}
	}
	for i, v := range t.VIPs {
		if v.Names == nil {
			t.VIPs[i].Names = []string{v.Name + "." + t.DNS.Zone}
		}
	}
	return &t, nil
}
