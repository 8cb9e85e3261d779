package graph

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/golang/freetype/truetype"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/lab-lb/lab/internal/topology"
)

// Drawing is a graph laid out on a canvas, in the pixels of its SVG (the
// PNG scales them), y down: lines, drawn first, then boxes over their
// ends, then texts. Layout makes it; writeSVG and drawPNG draw it.
type Drawing struct {
	Width, Height float64
	Lines         []Line
	Boxes         []Box
	Texts         []Text
}

// Point is a point of the canvas.
type Point struct{ X, Y float64 }

// Shape is the outline of a box.
type Shape string

// The shapes of boxes.
const (
	ShapeBox      Shape = "box"      // clients, the VIPs note
	ShapeRounded  Shape = "rounded"  // most nodes, the legend's states
	ShapeEllipse  Shape = "ellipse"  // routers, route reflectors, segments
	ShapeCylinder Shape = "cylinder" // dns
)

// BoxKind is what a box stands for.
type BoxKind string

// The kinds of boxes.
const (
	BoxNode    BoxKind = "node"
	BoxSegment BoxKind = "segment"
	BoxNote    BoxKind = "note"   // the VIPs
	BoxLegend  BoxKind = "legend" // one state
)

// Box is a node, a segment, the VIPs note or a state of the legend: a
// shape with lines of text in it.
type Box struct {
	Kind     BoxKind
	Name     string // of the node or segment
	Rank     int    // of a node; -1 for the other boxes
	Shape    Shape
	X, Y     float64 // centre
	W, H     float64
	Fill     string
	Stroke   string
	Dashed   bool
	Lines    []string
	FontSize float64
	Left     bool     // lines left-aligned, not centred
	Tooltip  []string // what an SVG viewer shows over it
}

// Line is a straight line or a polyline, with an arrowhead at its last
// point if Arrow.
type Line struct {
	Points []Point
	Color  string
	Width  float64
	Dashed bool
	Arrow  bool
}

// Text is one line of text: centred on X (or starting at X if Left), and
// centred vertically on Y.
type Text struct {
	X, Y  float64
	Text  string
	Size  float64
	Color string
	Left  bool
}

// The sizes of the drawing, in pixels.
const (
	margin      = 16.0
	titleSize   = 18.0
	nodeSize    = 13.0 // node labels
	segmentSize = 11.0 // segment labels
	smallSize   = 10.0 // the note, the legend, edge labels
	lineHeight  = 1.3  // of a line of text, in font sizes
	padX, padY  = 10.0, 6.0
	minNodeW    = 56.0
	gapX        = 16.0 // between two boxes of a row
	gapY        = 26.0 // between a row and what is in the gap below it
	busStep     = 6.0  // between two buses of a gap
	legendH     = 30.0
	titleH      = 34.0
)

// Layout lays g out, tier by tier: each rank a row, top to bottom, its
// nodes evenly spaced in node order and the row centred. A segment is an
// ellipse in the gap below its top-most members' row, at the mean x of
// its members, with a straight line to each member in that row and the
// next; the members of rows further down hang from a bus in the gap above
// their row, reached by a trunk down from the ellipse through a channel
// left free in the rows between. Links, ECMP, healthy and announce edges
// are straight lines between the nodes. Text is measured in the Go font,
// the PNG's; an SVG viewer's sans-serif font is about as wide.
//
// Layout is a pure function of g.
func Layout(g *Graph) *Drawing {
	l := &layouter{g: g, d: &Drawing{}, boxes: map[string]int{},
		face: truetype.NewFace(goFont(), &truetype.Options{Size: measureSize})}
	l.nodes()
	l.segmentEdges()
	l.edges()
	if g.ShowVIPs && len(g.VIPs) > 0 {
		l.note()
	}
	l.frame()
	return l.d
}

// measureSize is the size of the face that measures text; widths scale
// linearly with size (no hinting).
const measureSize = 100

// goFont is the Go font, parsed once, when first drawn: not at start.
var goFont = sync.OnceValue(func() *truetype.Font {
	f, err := truetype.Parse(goregular.TTF)
	if err != nil {
		panic("graph: the Go font does not parse: " + err.Error())
	}
	return f
})

// layouter holds a layout under way.
type layouter struct {
	g     *Graph
	d     *Drawing
	face  font.Face
	boxes map[string]int // index in d.Boxes of each node and segment

	nodeRow  map[string]int // row of each node
	rows     []row
	gaps     []gap // gaps[i] is below rows[i]
	segments []segment
}

// row is the row of a rank: its nodes, all as wide and as high.
type row struct {
	nodes []int // in g.Nodes
	w, h  float64
	y     float64 // centre
	// channel, if not nil, is the span of x left free for the trunks of
	// the segments that go through the row.
	channel *[2]float64
}

// gap is the space below a row: segments, and buses to the next row.
type gap struct {
	segments []int           // in g.Segments, placed in this gap
	busY     map[int]float64 // by segment in g.Segments: a bus to the next row
	top, h   float64
}

// segment is where a segment of g.Segments goes.
type segment struct {
	top, bottom int // the rows of its top-most and bottom-most members
	w, h        float64
	lines       []string
	trunk       bool // it has members below the row after the next
	trunkX      float64
}

// width is the width of s at size.
func (l *layouter) width(s string, size float64) float64 {
	return float64(font.MeasureString(l.face, s)) / 64 * size / measureSize
}

// textBox is the size of lines of text at size, without padding.
func (l *layouter) textBox(lines []string, size float64) (w, h float64) {
	for _, s := range lines {
		w = max(w, l.width(s, size))
	}
	return w, float64(len(lines)) * size * lineHeight
}

// add adds b to the drawing.
func (l *layouter) add(b Box) {
	l.d.Boxes = append(l.d.Boxes, b)
	if b.Name != "" {
		l.boxes[b.Name] = len(l.d.Boxes) - 1
	}
}

// box is the box of the node or segment named name.
func (l *layouter) box(name string) *Box { return &l.d.Boxes[l.boxes[name]] }

// nodes sizes the rows and the segments, places the trunks and their
// channels, then the rows and gaps top to bottom, the nodes in their
// rows, and the segments in their gaps.
func (l *layouter) nodes() {
	g := l.g
	ranks := g.ranks()
	rowOf := map[int]int{}
	for i, r := range ranks {
		rowOf[r] = i
	}
	l.rows = make([]row, len(ranks))
	l.gaps = make([]gap, len(ranks))
	l.nodeRow = map[string]int{}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		r := &l.rows[rowOf[n.Rank]]
		r.nodes = append(r.nodes, i)
		l.nodeRow[n.Name] = rowOf[n.Rank]
		w, h := l.textBox(g.nodeLines(n), nodeSize)
		w, h = w+2*padX, h+2*padY
		if s, _ := nodeShape(n.Role); s == ShapeEllipse {
			w, h = w*1.3, h*1.3 // room for the text's corners
		}
		r.w, r.h = max(r.w, w, minNodeW), max(r.h, h)
	}

	l.segments = make([]segment, len(g.Segments))
	trunkW := 0.0
	for i, s := range g.Segments {
		sg := segment{top: -1, bottom: -1, lines: []string{s.Name}}
		for _, m := range s.Members {
			if r, ok := l.nodeRow[m]; ok {
				if sg.top < 0 || r < sg.top {
					sg.top = r
				}
				sg.bottom = max(sg.bottom, r)
			}
		}
		if sg.top < 0 { // no member drawn
			sg.top, sg.bottom = 0, 0
		}
		if g.ShowAddresses {
			sg.lines = append(sg.lines, s.Prefixes...)
		}
		tw, th := l.textBox(sg.lines, segmentSize)
		sg.w, sg.h = (tw+padX)*math.Sqrt2, (th+padY)*math.Sqrt2 // the ellipse round the text
		sg.trunk = sg.bottom > sg.top+1
		if sg.trunk {
			trunkW = max(trunkW, sg.w)
		}
		l.segments[i] = sg
		l.gaps[sg.top].segments = append(l.gaps[sg.top].segments, i)
	}

	// The trunks side by side about the centre; each row they go through
	// leaves their span free; each row of members below the next has a
	// bus in the gap above it.
	var trunks []int
	for i := range l.segments {
		if l.segments[i].trunk {
			trunks = append(trunks, i)
		}
	}
	pitch := trunkW + gapX
	for j, i := range trunks {
		sg := &l.segments[i]
		sg.trunkX = (float64(j) - float64(len(trunks)-1)/2) * pitch
		for r := sg.top + 1; r < sg.bottom; r++ {
			lo, hi := sg.trunkX-pitch/2, sg.trunkX+pitch/2
			if c := l.rows[r].channel; c != nil {
				lo, hi = min(lo, c[0]), max(hi, c[1])
			}
			l.rows[r].channel = &[2]float64{lo, hi}
		}
		for _, m := range g.Segments[i].Members {
			if r, ok := l.nodeRow[m]; ok && r > sg.top+1 {
				if l.gaps[r-1].busY == nil {
					l.gaps[r-1].busY = map[int]float64{}
				}
				l.gaps[r-1].busY[i] = 0 // placed below
			}
		}
	}

	// Rows and gaps, top to bottom, below the title and the legend.
	y := margin + titleH
	if g.Live {
		y += legendH
	}
	for ri := range l.rows {
		r := &l.rows[ri]
		r.y = y + r.h/2
		for j, ni := range r.nodes {
			n := &g.Nodes[ni]
			shape, dashed := nodeShape(n.Role)
			l.add(Box{Kind: BoxNode, Name: n.Name, Rank: n.Rank, Shape: shape, Dashed: dashed,
				X: rowX(j, len(r.nodes), r.w, r.channel), Y: r.y, W: r.w, H: r.h,
				Fill: g.fill(n), Stroke: colorLink, Lines: g.nodeLines(n), FontSize: nodeSize, Tooltip: g.tooltip(n)})
		}
		y += r.h

		gp := &l.gaps[ri]
		if ri == len(l.rows)-1 && len(gp.segments) == 0 {
			break
		}
		segH := 0.0
		for _, i := range gp.segments {
			segH = max(segH, l.segments[i].h)
		}
		buses := slices.Sorted(maps.Keys(gp.busY))
		gp.top, gp.h = y, 2*gapY+segH+float64(max(len(buses)-1, 0))*busStep
		for k, i := range buses {
			if len(gp.segments) == 0 { // about the middle
				gp.busY[i] = y + gp.h/2 + (float64(k)-float64(len(buses)-1)/2)*busStep
			} else { // below the segments
				gp.busY[i] = y + gp.h - gapY/2 - float64(k)*busStep
			}
		}
		y += gp.h
	}
	l.d.Height = y + margin

	// The segments of each gap at the mean x of their members, or of
	// their trunk, side by side.
	for gi := range l.gaps {
		gp := &l.gaps[gi]
		var items []spreadItem
		for _, i := range gp.segments {
			sg := &l.segments[i]
			it := spreadItem{index: i, w: sg.w, x: sg.trunkX, pinned: sg.trunk}
			if !sg.trunk {
				n := 0
				for _, m := range g.Segments[i].Members {
					if _, ok := l.nodeRow[m]; ok {
						it.x += l.box(m).X
						n++
					}
				}
				if n > 0 {
					it.x /= float64(n)
				}
			}
			items = append(items, it)
		}
		for _, it := range spread(items) {
			s, sg := &g.Segments[it.index], &l.segments[it.index]
			l.add(Box{Kind: BoxSegment, Name: s.Name, Rank: -1, Shape: ShapeEllipse, X: it.x, Y: gp.top + gp.h/2,
				W: sg.w, H: sg.h, Fill: colorSegment, Stroke: colorLine, Lines: sg.lines, FontSize: segmentSize,
				Tooltip: segmentTooltip(s)})
		}
	}
}

// rowX is the x of the j-th of n boxes w wide, in a row centred on 0,
// or split about its channel, the first half left of it.
func rowX(j, n int, w float64, channel *[2]float64) float64 {
	pitch := w + gapX
	if channel == nil {
		return (float64(j) - float64(n-1)/2) * pitch
	}
	left := n / 2
	if j < left {
		return channel[0] - w/2 - float64(left-1-j)*pitch
	}
	return channel[1] + w/2 + float64(j-left)*pitch
}

// spreadItem is a box to place in a row of boxes: wanted at x.
type spreadItem struct {
	index  int
	x, w   float64
	pinned bool // it stays at x
}

// spread sorts items by x and moves those not pinned apart so that no
// two overlap: right, then left of a pinned one.
func spread(items []spreadItem) []spreadItem {
	slices.SortStableFunc(items, func(a, b spreadItem) int { return cmpFloat(a.x, b.x) })
	for i := 1; i < len(items); i++ {
		if a, b := items[i-1], &items[i]; !b.pinned {
			b.x = max(b.x, a.x+(a.w+b.w)/2+gapX)
		}
	}
	for i := len(items) - 2; i >= 0; i-- {
		if a, b := &items[i], items[i+1]; !a.pinned {
			a.x = min(a.x, b.x-(a.w+b.w)/2-gapX)
		}
	}
	return items
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// nodeShape is the shape of the nodes of role r, and whether their
// outline is dashed: as in DOT.
func nodeShape(r topology.Role) (Shape, bool) {
	switch r {
	case topology.RoleRouter:
		return ShapeEllipse, false
	case topology.RoleRR:
		return ShapeEllipse, true
	case topology.RoleDNS:
		return ShapeCylinder, false
	case topology.RoleClient:
		return ShapeBox, false
	}
	return ShapeRounded, false
}

// segmentTooltip is what an SVG viewer shows over segment s.
func segmentTooltip(s *Segment) []string {
	lines := []string{"segment " + s.Name}
	lines = append(lines, s.Prefixes...)
	if s.MTU > 0 {
		lines = append(lines, fmt.Sprintf("mtu %d", s.MTU))
	}
	return lines
}

// segmentEdges joins each segment and its members: a straight line to
// each member of its top row and of the next; for the members below, a
// trunk from the ellipse down to the bus above their row, and from the
// bus down to each.
func (l *layouter) segmentEdges() {
	for i, s := range l.g.Segments {
		sg, sb := &l.segments[i], *l.box(s.Name)
		bottom := sb.Y
		for _, m := range s.Members {
			r, ok := l.nodeRow[m]
			if !ok {
				continue
			}
			// To the middle of the member's top or bottom side, not its
			// centre: a line that goes far sideways crosses no box.
			mb := l.box(m)
			top, under := Point{mb.X, mb.Y - mb.H/2}, Point{mb.X, mb.Y + mb.H/2}
			switch {
			case r == sg.top:
				l.line(colorLine, 1, under, Point{sb.X, sb.Y})
			case r == sg.top+1:
				l.line(colorLine, 1, Point{sb.X, sb.Y}, top)
			default:
				y := l.gaps[r-1].busY[i]
				bottom = max(bottom, y)
				l.line(colorLine, 1, Point{sb.X, y}, Point{mb.X, y}, top)
			}
		}
		if bottom > sb.Y {
			l.line(colorLine, 1, Point{sb.X, sb.Y}, Point{sb.X, bottom})
		}
	}
}

// line adds a plain line through points.
func (l *layouter) line(color string, width float64, points ...Point) {
	l.d.Lines = append(l.d.Lines, Line{Points: points, Color: color, Width: width})
}

// arrow adds an arrow from the centre of box from to the outline of box
// to, labelled near its head with label if not "".
func (l *layouter) arrow(from, to *Box, color string, width float64, dashed bool, label string) {
	a := Point{from.X, from.Y}
	b := to.border(a)
	l.d.Lines = append(l.d.Lines, Line{Points: []Point{a, b}, Color: color, Width: width, Dashed: dashed, Arrow: true})
	if label != "" {
		// Two thirds of the way, beside the line.
		l.d.Texts = append(l.d.Texts, Text{X: a.X + (b.X-a.X)*2/3 + 4, Y: a.Y + (b.Y-a.Y)*2/3, Text: label,
			Size: smallSize, Color: color, Left: true})
	}
}

// border is where the line from p to the centre of b crosses its outline.
func (b *Box) border(p Point) Point {
	dx, dy := p.X-b.X, p.Y-b.Y
	if dx == 0 && dy == 0 {
		return p
	}
	var t float64
	if b.Shape == ShapeEllipse {
		t = 1 / math.Hypot(dx/(b.W/2), dy/(b.H/2))
	} else {
		t = math.Inf(1)
		if dx != 0 {
			t = b.W / 2 / math.Abs(dx)
		}
		if dy != 0 {
			t = min(t, b.H/2/math.Abs(dy))
		}
	}
	return Point{b.X + dx*t, b.Y + dy*t}
}

// edges adds the links and, in a live graph, the ECMP and healthy edges.
func (l *layouter) edges() {
	all := vipNamesOf(l.g.VIPs)
	for _, e := range l.g.Edges {
		switch e.Kind {
		case EdgeLink:
			from, to := l.box(e.From), l.box(e.To)
			l.line(colorLink, 1.5, Point{from.X, from.Y}, Point{to.X, to.Y})
		case EdgeECMP:
			label := ""
			if l.g.ShowVIPs && !slices.Equal(e.VIPs, all) {
				label = strings.Join(e.VIPs, " ")
			}
			l.arrow(l.box(e.From), l.box(e.To), colorECMP, 2.5, false, label)
		case EdgeHealthy:
			l.arrow(l.box(e.From), l.box(e.To), colorHealthy, 1, false, "")
		}
	}
}

// note adds the VIPs note, left of the row above the LB4s (the top row if
// none), clear of whatever is beside it, with a dashed arrow to each LB4
// that announces VIPs.
func (l *layouter) note() {
	if len(l.rows) == 0 {
		return
	}
	lines := l.g.vipLines()
	w, h := l.textBox(lines, smallSize)
	w, h = w+2*padX, h+2*padY
	y := l.rows[0].y
	for ri := range l.rows {
		if l.g.Nodes[l.rows[ri].nodes[0]].Rank == RankLB4 && ri > 0 {
			y = l.rows[ri-1].y
		}
	}
	right := 0.0
	for _, b := range l.d.Boxes {
		if b.Y-b.H/2 < y+h/2 && b.Y+b.H/2 > y-h/2 {
			right = min(right, b.X-b.W/2)
		}
	}
	l.add(Box{Kind: BoxNote, Rank: -1, Shape: ShapeBox, X: right - 2*gapX - w/2, Y: y, W: w, H: h,
		Fill: colorNote, Stroke: colorLine, Lines: lines, FontSize: smallSize, Left: true})
	note := &l.d.Boxes[len(l.d.Boxes)-1]
	all := vipNamesOf(l.g.VIPs)
	for _, n := range l.g.Nodes {
		if n.Role != topology.RoleLB4 || len(n.Announces) == 0 {
			continue
		}
		label := ""
		if !slices.Equal(n.Announces, all) {
			label = strings.Join(n.Announces, " ")
		}
		l.arrow(note, l.box(n.Name), colorAnnounce, 1, true, label)
	}
}

// frame centres the drawing on a canvas wide enough for it, its title and
// its legend, and adds the title and legend.
func (l *layouter) frame() {
	d := l.d
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range d.Boxes {
		lo, hi = min(lo, b.X-b.W/2), max(hi, b.X+b.W/2)
	}
	for _, ln := range d.Lines {
		for _, p := range ln.Points {
			lo, hi = min(lo, p.X), max(hi, p.X)
		}
	}
	for _, t := range d.Texts {
		lo, hi = min(lo, t.X), max(hi, t.X+l.width(t.Text, t.Size))
	}
	if lo > hi {
		lo, hi = 0, 0
	}
	title := "lab " + l.g.Name
	var legend []Box
	legendW := 0.0
	if l.g.Live {
		for _, s := range l.g.states() {
			w := l.width(string(s), smallSize) + 2*padX
			legend = append(legend, Box{Kind: BoxLegend, Rank: -1, Shape: ShapeRounded, W: w, H: smallSize*lineHeight + padY,
				Fill: StateColor(s), Stroke: colorLink, Lines: []string{string(s)}, FontSize: smallSize, Tooltip: []string{"state " + string(s)}})
			legendW += w + gapX/2
		}
	}
	d.Width = max(hi-lo, l.width(title, titleSize), legendW) + 2*margin
	dx := d.Width/2 - (lo+hi)/2
	for i := range d.Boxes {
		d.Boxes[i].X += dx
	}
	for i := range d.Lines {
		for j := range d.Lines[i].Points {
			d.Lines[i].Points[j].X += dx
		}
	}
	for i := range d.Texts {
		d.Texts[i].X += dx
	}
	d.Texts = append(d.Texts, Text{X: d.Width / 2, Y: margin + titleH/2 - 4, Text: title, Size: titleSize, Color: "#212529"})
	x := d.Width/2 - (legendW-gapX/2)/2
	for _, b := range legend {
		b.X, b.Y = x+b.W/2, margin+titleH+legendH/2-4
		x += b.W + gapX/2
		d.Boxes = append(d.Boxes, b)
	}
}

// textLines are the lines of text of b, centred in it or left-aligned.
func (b *Box) textLines() []Text {
	lh := b.FontSize * lineHeight
	var out []Text
	for i, s := range b.Lines {
		t := Text{X: b.X, Y: b.Y + (float64(i)-float64(len(b.Lines)-1)/2)*lh, Text: s, Size: b.FontSize, Color: "#212529"}
		if b.Left {
			t.X, t.Left = b.X-b.W/2+padX, true
		}
		out = append(out, t)
	}
	return out
}

// arrowHead is the triangle at the end of an arrow: its tip, its two
// other corners, and the middle of its base, where the line stops.
func (ln *Line) arrowHead() (tip, left, right, base Point) {
	a, tip := ln.Points[len(ln.Points)-2], ln.Points[len(ln.Points)-1]
	dx, dy := tip.X-a.X, tip.Y-a.Y
	d := math.Hypot(dx, dy)
	if d == 0 {
		return tip, tip, tip, tip
	}
	size := 6 + 2*ln.Width
	ux, uy := dx/d, dy/d
	base = Point{tip.X - ux*size, tip.Y - uy*size}
	half := size / 2.5
	return tip, Point{base.X - uy*half, base.Y + ux*half}, Point{base.X + uy*half, base.Y - ux*half}, base
}

// stroke is the points of the line to stroke: to the base of its
// arrowhead, if any.
func (ln *Line) stroke() []Point {
	if !ln.Arrow || len(ln.Points) < 2 {
		return ln.Points
	}
	_, _, _, base := ln.arrowHead()
	return append(slices.Clone(ln.Points[:len(ln.Points)-1]), base)
}
