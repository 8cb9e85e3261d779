package graph

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/topology"
)

// vipsID is the identifier of the note that lists the VIPs: upper case,
// so no node or segment (lower case) has it.
const vipsID = "VIPS"

// The colours of lines and of the things that are not nodes.
const (
	colorLine     = "#868e96" // segment edges, outlines
	colorLink     = "#495057" // point-to-point links
	colorECMP     = "#1971c2" // router -> LB4
	colorHealthy  = "#2f9e44" // LB4 -> LB7
	colorAnnounce = "#7048e8" // VIPs -> LB4
	colorSegment  = "#f1f3f5"
	colorNote     = "#fff9db"
	fontName      = "Helvetica,Arial,sans-serif"
)

// DOT writes g in Graphviz's DOT language: one rank per tier, top to
// bottom, segments as small ellipses between their members, point-to-point
// links as darker lines; in a live graph, nodes coloured by state (with a
// legend), thick blue ECMP edges from routers to LB4s and thin green
// edges from LB4s to the LB7s they find healthy.
func (g *Graph) DOT() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("digraph %s {\n", quote(g.Name))
	p("\tgraph [label=%s, labelloc=t, fontname=%s, fontsize=16, nodesep=0.2, ranksep=0.4, newrank=true]\n", quote("lab "+g.Name), quote(fontName))
	p("\tnode [shape=box, style=\"rounded,filled\", fontname=%s, fontsize=11, color=%s, height=0.3, margin=\"0.1,0.04\"]\n", quote(fontName), quote(colorLink))
	p("\tedge [arrowhead=none, color=%s]\n", quote(colorLine))

	p("\n\t// Nodes, one rank per tier.\n")
	for _, rank := range g.ranks() {
		p("\t{rank=same;\n")
		for i := range g.Nodes {
			if n := &g.Nodes[i]; n.Rank == rank {
				p("\t\t%s [%s]\n", quote(n.Name), g.nodeAttrs(n))
			}
		}
		p("\t}\n")
	}

	if len(g.Segments) > 0 {
		p("\n\t// Segments.\n")
	}
	for _, s := range g.Segments {
		lines := []string{s.Name}
		if g.ShowAddresses {
			lines = append(lines, s.Prefixes...)
		}
		p("\t%s [shape=ellipse, style=filled, fillcolor=%s, color=%s, fontsize=10, height=0.25, label=%s]\n",
			quote(s.Name), quote(colorSegment), quote(colorLine), quoteLines(lines))
	}

	if g.ShowVIPs && len(g.VIPs) > 0 {
		p("\n\t// The VIPs, and the LB4s that announce them.\n")
		p("\t%s [shape=note, style=filled, fillcolor=%s, color=%s, fontsize=10, label=%s]\n",
			quote(vipsID), quote(colorNote), quote(colorLine), quoteLeft(g.vipLines()))
	}

	p("\n\t// Edges.\n")
	for _, e := range g.Edges {
		p("\t%s -> %s%s\n", quote(e.From), quote(e.To), g.edgeAttrs(e))
	}
	if g.ShowVIPs && len(g.VIPs) > 0 {
		all := vipNamesOf(g.VIPs)
		for _, n := range g.Nodes {
			if n.Role != topology.RoleLB4 || len(n.Announces) == 0 {
				continue
			}
			label := ""
			if !slices.Equal(n.Announces, all) {
				label = ", label=" + quote(strings.Join(n.Announces, " ")) + ", fontsize=9"
			}
			p("\t%s -> %s [style=dashed, color=%s, arrowhead=normal, arrowsize=0.5%s]\n", quote(vipsID), quote(n.Name), quote(colorAnnounce), label)
		}
	}

	if ranks := g.ranks(); len(ranks) > 1 {
		p("\n\t// The tiers in order, whatever the edges say.\n")
		for i := 1; i < len(ranks); i++ {
			p("\t%s -> %s [style=invis]\n", quote(g.firstOf(ranks[i-1])), quote(g.firstOf(ranks[i])))
		}
	}

	if g.Live {
		p("\n\t// Legend: the states of the nodes.\n")
		p("\tsubgraph cluster_legend {\n\t\tlabel=\"state\"; fontsize=10; color=%s;\n", quote(colorLine))
		for _, s := range g.states() {
			p("\t\t%s [label=%s, fillcolor=%s, fontsize=9, height=0.2]\n", quote("legend:"+string(s)), quote(string(s)), quote(StateColor(s)))
		}
		p("\t}\n")
	}
	p("}\n")
	return b.String()
}

// nodeAttrs are the DOT attributes of n.
func (g *Graph) nodeAttrs(n *Node) string {
	attrs := []string{"label=" + quoteLines(g.nodeLines(n)), "fillcolor=" + quote(g.fill(n)), "tooltip=" + quoteLines(g.tooltip(n))}
	switch n.Role {
	case topology.RoleRouter:
		attrs = append(attrs, "shape=ellipse", `style="filled"`)
	case topology.RoleRR:
		attrs = append(attrs, "shape=ellipse", `style="filled,dashed"`)
	case topology.RoleDNS:
		attrs = append(attrs, "shape=cylinder", `style="filled"`)
	case topology.RoleClient:
		attrs = append(attrs, `style="filled"`)
	}
	return strings.Join(attrs, ", ")
}

// nodeLines are the lines of n's label: its name; with ShowAddresses, an
// interface and its addresses a line, and the count of addresses on lo;
// in a live graph, its state when it is not ready.
func (g *Graph) nodeLines(n *Node) []string {
	lines := []string{n.Name}
	if g.ShowAddresses {
		for _, i := range n.Interfaces {
			var addrs []string
			for _, a := range i.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil {
					a = p.Addr().String()
				}
				addrs = append(addrs, a)
			}
			lines = append(lines, i.Name+" "+strings.Join(addrs, " "))
		}
		if n.Loopback > 0 {
			lines = append(lines, fmt.Sprintf("lo +%d", n.Loopback))
		}
	}
	if g.Live && n.State != StateReady {
		lines = append(lines, string(n.State))
	}
	return lines
}

// tooltip is what a viewer of the SVG sees over n: its role, state, why
// and summary.
func (g *Graph) tooltip(n *Node) []string {
	first := n.Name + " (" + string(n.Role) + ")"
	if n.State != "" {
		first += ": " + string(n.State)
	}
	lines := []string{first}
	if n.Why != "" {
		lines = append(lines, n.Why)
	}
	if n.Summary != "" {
		lines = append(lines, n.Summary)
	}
	return lines
}

// edgeAttrs are the DOT attributes of e, with the leading space.
func (g *Graph) edgeAttrs(e Edge) string {
	switch e.Kind {
	case EdgeLink:
		return fmt.Sprintf(" [color=%s, penwidth=1.5]", quote(colorLink))
	case EdgeECMP:
		label := ""
		if g.ShowVIPs && !slices.Equal(e.VIPs, vipNamesOf(g.VIPs)) {
			label = ", label=" + quote(strings.Join(e.VIPs, " ")) + ", fontsize=9, fontcolor=" + quote(colorECMP)
		}
		return fmt.Sprintf(" [color=%s, penwidth=2.5, arrowhead=normal, arrowsize=0.7, constraint=false%s]", quote(colorECMP), label)
	case EdgeHealthy:
		return fmt.Sprintf(" [color=%s, arrowhead=normal, arrowsize=0.4, constraint=false]", quote(colorHealthy))
	}
	return ""
}

// vipLines are the lines of the VIPs note: a title, then one VIP name a
// line with its addresses, port, protocol, scheduler and DNS names.
func (g *Graph) vipLines() []string {
	lines := []string{"VIPs"}
	for _, name := range vipNamesOf(g.VIPs) {
		var addrs []string
		var v VIP
		for _, w := range g.VIPs {
			if w.Name == name {
				v = w
				ap, err := netip.ParseAddrPort(w.Address)
				if err != nil {
					addrs = append(addrs, w.Address)
					continue
				}
				addrs = append(addrs, ap.Addr().String())
			}
		}
		port := v.Address
		if ap, err := netip.ParseAddrPort(v.Address); err == nil {
			port = fmt.Sprint(ap.Port())
		}
		line := fmt.Sprintf("%s %s %s/%s %s", name, strings.Join(addrs, " "), v.Protocol, port, v.Scheduler)
		if len(v.Names) > 0 {
			var short []string
			for _, n := range v.Names {
				short = append(short, strings.TrimSuffix(n, "."))
			}
			line += " (" + strings.Join(short, " ") + ")"
		}
		lines = append(lines, line)
	}
	return lines
}

// vipNamesOf lists the names of vs once each, in order.
func vipNamesOf(vs []VIP) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.Name) {
			out = append(out, v.Name)
		}
	}
	return out
}

// ranks lists the ranks that have nodes, top to bottom.
func (g *Graph) ranks() []int {
	var out []int
	for _, n := range g.Nodes {
		if !slices.Contains(out, n.Rank) {
			out = append(out, n.Rank)
		}
	}
	slices.Sort(out)
	return out
}

// firstOf returns the first node of rank.
func (g *Graph) firstOf(rank int) string {
	for _, n := range g.Nodes {
		if n.Rank == rank {
			return n.Name
		}
	}
	return ""
}

// quote writes s as a DOT string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// quoteLines writes lines as one DOT string, centred lines.
func quoteLines(lines []string) string { return quote(strings.Join(lines, "\n")) }

// quoteLeft writes lines as one DOT string of left-justified lines.
func quoteLeft(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(l))
		b.WriteString(`\l`)
	}
	return `"` + b.String() + `"`
}
