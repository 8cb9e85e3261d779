package graph

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/fogleman/gg"
	"github.com/golang/freetype/truetype"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
)

// xlayout is what Graphviz's json output says of a laid-out graph: its
// bounding box, and the xdot drawing operations of the graph, of its
// subgraphs and nodes (objects: the subgraphs first), and of its edges.
type xlayout struct {
	BB        string    `json:"bb"`
	Draw      []xop     `json:"_draw_"`
	LDraw     []xop     `json:"_ldraw_"`
	Subgraphs int       `json:"_subgraph_cnt"`
	Objects   []xobject `json:"objects"`
	Edges     []xobject `json:"edges"`
}

// xobject is a subgraph, node or edge: its drawing operations, the shape
// (or line) first, then its label, then an edge's arrowheads.
type xobject struct {
	Draw   []xop `json:"_draw_"`
	LDraw  []xop `json:"_ldraw_"`
	HDraw  []xop `json:"_hdraw_"`
	TDraw  []xop `json:"_tdraw_"`
	HLDraw []xop `json:"_hldraw_"`
	TLDraw []xop `json:"_tldraw_"`
}

// xop is one xdot operation, as Graphviz writes it in JSON.
type xop struct {
	Op     string       `json:"op"`
	Color  string       `json:"color"` // c, C
	Style  string       `json:"style"` // S
	Size   float64      `json:"size"`  // F
	Pt     []float64    `json:"pt"`    // T
	Align  string       `json:"align"` // T: l, c or r
	Width  float64      `json:"width"` // T: Graphviz's estimate, in points
	Text   string       `json:"text"`  // T
	Rect   []float64    `json:"rect"`  // e, E: centre and radii
	Points [][2]float64 `json:"points"`
}

// pngPad is the margin around the drawing, in points: Graphviz's own.
const pngPad = 4

// drawPNG draws the layout in js (Graphviz's json output) at dpi and
// writes it to w as a PNG: the graph's background and clusters, then the
// edges, then the nodes over their ends, then the graph's label. Text is
// set in the Go font, whatever fonts the host has, shrunk where it would
// be wider than Graphviz made room for.
func drawPNG(js []byte, dpi float64, w io.Writer) error {
	var l xlayout
	if err := json.Unmarshal(js, &l); err != nil {
		return fmt.Errorf("draw png: read graphviz layout: %w", err)
	}
	var llx, lly, urx, ury float64
	if _, err := fmt.Sscanf(l.BB, "%g,%g,%g,%g", &llx, &lly, &urx, &ury); err != nil {
		return fmt.Errorf("draw png: bounding box %q: %w", l.BB, err)
	}
	scale := dpi / 72
	width, height := (urx-llx+2*pngPad)*scale, (ury-lly+2*pngPad)*scale
	d := &drawer{
		dc:    gg.NewContext(int(math.Ceil(width)), int(math.Ceil(height))),
		scale: scale,
		x0:    llx - pngPad, y0: ury + pngPad,
		faces: map[float64]font.Face{},
	}
	ft, err := truetype.Parse(goregular.TTF)
	if err != nil {
		return fmt.Errorf("draw png: go font: %w", err)
	}
	d.font = ft
	d.dc.SetColor(color.White)
	d.dc.Clear()
	d.dc.SetLineJoinRound()

	d.ops(l.Draw)
	if l.Subgraphs > len(l.Objects) {
		l.Subgraphs = len(l.Objects)
	}
	subgraphs, nodes := l.Objects[:l.Subgraphs], l.Objects[l.Subgraphs:]
	for _, o := range subgraphs {
		d.ops(o.Draw)
		d.ops(o.LDraw)
	}
	for _, e := range l.Edges {
		d.ops(e.Draw)
		d.ops(e.HDraw)
		d.ops(e.TDraw)
		d.ops(e.LDraw)
		d.ops(e.HLDraw)
		d.ops(e.TLDraw)
	}
	for _, n := range nodes {
		d.ops(n.Draw)
		d.ops(n.LDraw)
	}
	d.ops(l.LDraw)
	if err := d.dc.EncodePNG(w); err != nil {
		return fmt.Errorf("draw png: %w", err)
	}
	return nil
}

// drawer draws xdot operations on an image. Each list of operations
// starts with Graphviz's defaults: black pen, no fill, solid lines one
// point wide, 14-point text.
type drawer struct {
	dc     *gg.Context
	scale  float64 // pixels a point
	x0, y0 float64 // the top left corner, in Graphviz's points (y up)
	font   *truetype.Font
	faces  map[float64]font.Face // by size in pixels

	pen, fill color.Color
	lineWidth float64 // points
	dash      []float64
	fontSize  float64 // points
}

// xy converts a point of Graphviz's layout (points, y up) to pixels.
func (d *drawer) xy(p [2]float64) (float64, float64) {
	return (p[0] - d.x0) * d.scale, (d.y0 - p[1]) * d.scale
}

func (d *drawer) ops(ops []xop) {
	d.pen, d.fill = color.Black, color.Transparent
	d.lineWidth, d.dash, d.fontSize = 1, nil, 14
	for _, o := range ops {
		switch o.Op {
		case "c":
			d.pen = parseColor(o.Color)
		case "C":
			d.fill = parseColor(o.Color)
		case "S":
			d.style(o.Style)
		case "F":
			d.fontSize = o.Size
		case "T":
			d.text(o)
		case "e", "E":
			if len(o.Rect) == 4 {
				x, y := d.xy([2]float64{o.Rect[0], o.Rect[1]})
				d.dc.DrawEllipse(x, y, o.Rect[2]*d.scale, o.Rect[3]*d.scale)
				d.paint(o.Op == "E")
			}
		case "p", "P", "L":
			for i, p := range o.Points {
				x, y := d.xy(p)
				if i == 0 {
					d.dc.MoveTo(x, y)
				} else {
					d.dc.LineTo(x, y)
				}
			}
			if o.Op != "L" {
				d.dc.ClosePath()
			}
			d.paint(o.Op == "P")
		case "b", "B":
			if len(o.Points) == 0 {
				continue
			}
			d.dc.MoveTo(d.xy(o.Points[0]))
			for i := 1; i+2 < len(o.Points); i += 3 {
				x1, y1 := d.xy(o.Points[i])
				x2, y2 := d.xy(o.Points[i+1])
				x3, y3 := d.xy(o.Points[i+2])
				d.dc.CubicTo(x1, y1, x2, y2, x3, y3)
			}
			if o.Op == "B" {
				d.dc.ClosePath()
			}
			d.paint(o.Op == "B")
		}
	}
}

// style applies an S operation: a line style, or a line width.
func (d *drawer) style(s string) {
	switch {
	case s == "solid":
		d.dash = nil
	case s == "dashed":
		d.dash = []float64{5, 2}
	case s == "dotted":
		d.dash = []float64{1, 2}
	case s == "bold":
		d.lineWidth = 2
	case strings.HasPrefix(s, "setlinewidth(") && strings.HasSuffix(s, ")"):
		if v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(s, "setlinewidth("), ")"), 64); err == nil {
			d.lineWidth = v
		}
	}
}

// paint fills the current path with the fill colour when filled, then
// strokes it with the pen, and clears it.
func (d *drawer) paint(filled bool) {
	if filled && visible(d.fill) {
		d.dc.SetColor(d.fill)
		d.dc.FillPreserve()
	}
	if visible(d.pen) && d.lineWidth > 0 {
		d.dc.SetColor(d.pen)
		d.dc.SetLineWidth(d.lineWidth * d.scale)
		dash := make([]float64, len(d.dash))
		for i, v := range d.dash {
			dash[i] = v * d.scale
		}
		d.dc.SetDash(dash...)
		d.dc.StrokePreserve()
	}
	d.dc.ClearPath()
}

// text draws a T operation: its baseline at pt, aligned as Graphviz says.
func (d *drawer) text(o xop) {
	if len(o.Pt) != 2 || o.Text == "" {
		return
	}
	size := d.fontSize * d.scale
	face := d.face(size)
	d.dc.SetFontFace(face)
	if w, _ := d.dc.MeasureString(o.Text); o.Width > 0 && w > o.Width*d.scale {
		d.dc.SetFontFace(d.face(size * o.Width * d.scale / w))
	}
	x, y := d.xy([2]float64{o.Pt[0], o.Pt[1]})
	ax := 0.5
	switch o.Align {
	case "l":
		ax = 0
	case "r":
		ax = 1
	}
	d.dc.SetColor(d.pen)
	d.dc.DrawStringAnchored(o.Text, x, y, ax, 0)
}

// face returns the Go font at size pixels, rounded to a tenth.
func (d *drawer) face(size float64) font.Face {
	size = math.Round(size*10) / 10
	if f, ok := d.faces[size]; ok {
		return f
	}
	f := truetype.NewFace(d.font, &truetype.Options{Size: size, Hinting: font.HintingFull})
	d.faces[size] = f
	return f
}

// parseColor reads an xdot colour: #rrggbb or #rrggbbaa (Graphviz writes
// every colour so). Anything else is black.
func parseColor(s string) color.Color {
	s = strings.TrimPrefix(s, "#")
	if len(s) != 6 && len(s) != 8 {
		return color.Black
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return color.Black
	}
	if len(s) == 6 {
		return color.NRGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
	}
	return color.NRGBA{R: uint8(v >> 24), G: uint8(v >> 16), B: uint8(v >> 8), A: uint8(v)}
}

// visible says whether c shows at all.
func visible(c color.Color) bool {
	_, _, _, a := c.RGBA()
	return a > 0
}
