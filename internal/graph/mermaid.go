package graph

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/topology"
)

// Mermaid writes g as a Mermaid flowchart, top to bottom, to paste into
// Markdown that renders Mermaid (GitHub's does): the nodes and segments
// of DOT, coloured the same way, with ECMP edges thick (==>) and healthy
// edges plain arrows. Mermaid has no ranks: invisible links (~~~), last,
// keep the tiers in order.
func (g *Graph) Mermaid() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("flowchart TB\n")
	p("    %%%% lab %s\n", g.Name)
	for i := range g.Nodes {
		n := &g.Nodes[i]
		open, close := "[", "]"
		switch n.Role {
		case topology.RoleRouter, topology.RoleRR:
			open, close = "([", "])"
		case topology.RoleDNS:
			open, close = "[(", ")]"
		case topology.RoleLB4, topology.RoleLB7, topology.RoleServer:
			open, close = "(", ")"
		}
		p("    %s%s%s%s\n", mermaidID(n.Name), open, mermaidLabel(g.nodeLines(n)), close)
	}
	for _, s := range g.Segments {
		lines := []string{s.Name}
		if g.ShowAddresses {
			lines = append(lines, s.Prefixes...)
		}
		p("    %s{{%s}}\n", segmentID(s.Name), mermaidLabel(lines))
	}
	if g.ShowVIPs && len(g.VIPs) > 0 {
		p("    %s[%s]\n", vipsID, mermaidLabel(g.vipLines()))
	}

	segments := map[string]bool{}
	for _, s := range g.Segments {
		segments[s.Name] = true
	}
	id := func(name string) string {
		if segments[name] {
			return segmentID(name)
		}
		return mermaidID(name)
	}
	// linkStyle counts links from 0 in the order written.
	styles := map[string][]int{}
	links := 0
	link := func(style string, format string, args ...any) {
		p("    "+format+"\n", args...)
		if style != "" {
			styles[style] = append(styles[style], links)
		}
		links++
	}
	all := vipNamesOf(g.VIPs)
	for _, e := range g.Edges {
		from, to := id(e.From), id(e.To)
		switch e.Kind {
		case EdgeSegment:
			link("", "%s --- %s", from, to)
		case EdgeLink:
			link("link", "%s --- %s", from, to)
		case EdgeECMP:
			if g.ShowVIPs && !slices.Equal(e.VIPs, all) {
				link("ecmp", "%s ==>|%s| %s", from, mermaidText(strings.Join(e.VIPs, " ")), to)
			} else {
				link("ecmp", "%s ==> %s", from, to)
			}
		case EdgeHealthy:
			link("healthy", "%s --> %s", from, to)
		}
	}
	if g.ShowVIPs && len(g.VIPs) > 0 {
		for _, n := range g.Nodes {
			if n.Role != topology.RoleLB4 || len(n.Announces) == 0 {
				continue
			}
			if slices.Equal(n.Announces, all) {
				link("announce", "%s -.-> %s", vipsID, mermaidID(n.Name))
			} else {
				link("announce", "%s -.->|%s| %s", vipsID, mermaidText(strings.Join(n.Announces, " ")), mermaidID(n.Name))
			}
		}
	}
	ranks := g.ranks()
	for i := 1; i < len(ranks); i++ {
		link("", "%s ~~~ %s", mermaidID(g.firstOf(ranks[i-1])), mermaidID(g.firstOf(ranks[i])))
	}

	// Colours: by state in a live graph, by tier otherwise.
	classes := map[string][]string{}
	var order []string
	for i := range g.Nodes {
		n := &g.Nodes[i]
		c := fmt.Sprintf("tier%d", n.Rank)
		if g.Live {
			c = string(n.State)
		}
		if _, ok := classes[c]; !ok {
			order = append(order, c)
			p("    classDef %s fill:%s,stroke:%s,color:#000\n", c, g.fill(n), colorLink)
		}
		classes[c] = append(classes[c], mermaidID(n.Name))
	}
	for _, c := range order {
		p("    class %s %s\n", strings.Join(classes[c], ","), c)
	}
	if len(g.Segments) > 0 {
		var ids []string
		for _, s := range g.Segments {
			ids = append(ids, segmentID(s.Name))
		}
		p("    classDef segment fill:%s,stroke:%s,color:#000,font-size:11px\n", colorSegment, colorLine)
		p("    class %s segment\n", strings.Join(ids, ","))
	}
	if g.ShowVIPs && len(g.VIPs) > 0 {
		p("    classDef note fill:%s,stroke:%s,color:#000,text-align:left\n", colorNote, colorLine)
		p("    class %s note\n", vipsID)
	}
	for _, s := range []struct{ name, css string }{
		{"link", "stroke:" + colorLink + ",stroke-width:2px"},
		{"ecmp", "stroke:" + colorECMP + ",stroke-width:3px"},
		{"healthy", "stroke:" + colorHealthy + ",stroke-width:1px"},
		{"announce", "stroke:" + colorAnnounce + ",stroke-width:1px"},
	} {
		if ids := styles[s.name]; len(ids) > 0 {
			var nums []string
			for _, i := range ids {
				nums = append(nums, fmt.Sprint(i))
			}
			p("    linkStyle %s %s\n", strings.Join(nums, ","), s.css)
		}
	}
	return b.String()
}

// mermaidID is the Mermaid identifier of a node: a prefix keeps it apart
// from Mermaid's keywords (end, graph...) and from the segments', and
// '-' becomes '_', which no name has.
func mermaidID(name string) string { return "n_" + strings.ReplaceAll(name, "-", "_") }

// segmentID is the Mermaid identifier of a segment.
func segmentID(name string) string { return "s_" + strings.ReplaceAll(name, "-", "_") }

// mermaidLabel writes lines as a quoted Mermaid label.
func mermaidLabel(lines []string) string {
	var esc []string
	for _, l := range lines {
		esc = append(esc, mermaidText(l))
	}
	return `"` + strings.Join(esc, "<br/>") + `"`
}

// mermaidText escapes the characters that would end a label or an edge
// text.
func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "|", "#124;", "<", "#lt;", ">", "#gt;").Replace(s)
}
