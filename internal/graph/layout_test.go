package graph

import (
	"fmt"
	"strings"
	"testing"
)

// TestLayoutReference checks the layout of the reference lab: the rows in
// rank order (every LB4 above every LB7), no two boxes overlapping,
// everything on the canvas, and the LB7s' row, the widest, readable.
func TestLayoutReference(t *testing.T) {
	g := Build(load(t, "reference"), nil)
	d := Layout(g)
	nodes := map[string]Box{}
	for _, b := range d.Boxes {
		if b.Kind == BoxNode {
			nodes[b.Name] = b
		}
		if b.X-b.W/2 < 0 || b.X+b.W/2 > d.Width || b.Y-b.H/2 < 0 || b.Y+b.H/2 > d.Height {
			t.Errorf("%s %s at %.0f,%.0f (%.0fx%.0f) is off the %.0fx%.0f canvas", b.Kind, b.Name, b.X, b.Y, b.W, b.H, d.Width, d.Height)
		}
	}
	if len(nodes) != len(g.Nodes) {
		t.Fatalf("%d node boxes, want %d", len(nodes), len(g.Nodes))
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a.Rank < b.Rank && a.Y+a.H/2 >= b.Y-b.H/2 {
				t.Errorf("%s (rank %d) is not above %s (rank %d)", a.Name, a.Rank, b.Name, b.Rank)
			}
			if a.Rank == b.Rank && a.Y != b.Y {
				t.Errorf("%s and %s, of rank %d, are not on one row", a.Name, b.Name, a.Rank)
			}
		}
	}
	for i, a := range d.Boxes {
		for _, b := range d.Boxes[i+1:] {
			if a.X-a.W/2 < b.X+b.W/2 && b.X-b.W/2 < a.X+a.W/2 && a.Y-a.H/2 < b.Y+b.H/2 && b.Y-b.H/2 < a.Y+a.H/2 {
				t.Errorf("%s %s and %s %s overlap", a.Kind, a.Name, b.Kind, b.Name)
			}
		}
	}
	// Nodes in node order, left to right.
	for i := 1; i <= 12; i++ {
		a, b := nodes[fmt.Sprintf("lb7-%d", i)], nodes[fmt.Sprintf("lb7-%d", i+1)]
		if a.X >= b.X {
			t.Errorf("%s is not left of %s", a.Name, b.Name)
		}
	}
	if w := nodes["lb7-1"].W; w < 50 {
		t.Errorf("LB7s are %.0f pixels wide: too narrow to read", w)
	}
}

// TestLayoutLive checks what a live graph adds: ECMP and healthy arrows in
// their colours, the VIPs note with an arrow to the LB4 that announces,
// and the legend.
func TestLayoutLive(t *testing.T) {
	top := load(t, "minimal")
	g := Build(top, liveMinimal(t, top))
	g.ShowVIPs, g.ShowAddresses = true, true
	d := Layout(g)
	count := map[string]int{}
	for _, l := range d.Lines {
		if l.Arrow {
			count[l.Color]++
		}
	}
	if count[colorECMP] != 2 || count[colorHealthy] != 2 || count[colorAnnounce] != 1 {
		t.Errorf("arrows by colour %v: want 2 ECMP, 2 healthy, 1 announce", count)
	}
	var legend []string
	notes := 0
	for _, b := range d.Boxes {
		switch b.Kind {
		case BoxLegend:
			legend = append(legend, b.Lines[0])
		case BoxNote:
			notes++
		}
	}
	if strings.Join(legend, " ") != "ready maintenance killed frozen" || notes != 1 {
		t.Errorf("legend %v, %d notes: want the four states and one note", legend, notes)
	}
	var labels []string
	for _, tx := range d.Texts {
		labels = append(labels, tx.Text)
	}
	if !strings.Contains(strings.Join(labels, "|"), "www/v4") {
		t.Errorf("texts %q: want the ECMP edge to lb4-2 labelled www/v4", labels)
	}
}
