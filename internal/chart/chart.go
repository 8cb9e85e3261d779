// Package chart draws what a load measured as images, PNG or SVG, with
// gonum.org/v1/plot.
//
// A Timeline counts the connections of a traffic run per second: started
// (a line), and finished ok, interrupted, broken or failed at the DNS
// lookup (stacked bars), in one panel per group of connections (per VIP,
// say), with moments marked by dashed vertical lines and their labels
// (a scenario's steps). ReportTimeline makes the timeline of a whole
// traffic.Report. Bars is a chart of grouped horizontal bars, such as the
// broken connections of several scenarios per scheduler.
//
// Colours mean the same everywhere: green ok, orange interrupted, red
// broken, purple DNS failures, dark blue started connections.
package chart

import (
	"fmt"
	"image/color"
	"io"
	"math"

	stdfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	// The PNG and SVG canvases register their formats with package draw.
	_ "gonum.org/v1/plot/vg/vgimg"
	_ "gonum.org/v1/plot/vg/vgsvg"
)

// Format is an image format.
type Format string

// Formats.
const (
	PNG Format = "png"
	SVG Format = "svg"
)

// DPI is the resolution of PNG images: a length of n pixels is n*72/DPI
// points.
const DPI = 96

// The colours of the series, as RGB.
var (
	ColourOK          = rgb(0x2e9e44)
	ColourInterrupted = rgb(0xf28c28)
	ColourBroken      = rgb(0xd62728)
	ColourDNSFailed   = rgb(0x9467bd)
	ColourStarted     = rgb(0x1f3a93)
	// ColourStep is that of marks; a mark with Alert set is ColourBroken.
	ColourStep = rgb(0x555555)
	colourGrid = rgb(0xdddddd)
)

// seriesColours are the colours of the series of a Bars chart, in order:
// none of them is one of the colours above.
var seriesColours = []color.RGBA{
	rgb(0x1f77b4), rgb(0x8c564b), rgb(0x17becf), rgb(0xbcbd22),
	rgb(0xe377c2), rgb(0x7f7f7f), rgb(0x393b79), rgb(0x637939),
}

// SeriesColour returns the colour of the i-th series of a Bars chart.
func SeriesColour(i int) color.RGBA { return seriesColours[i%len(seriesColours)] }

// rgb returns the opaque colour 0xRRGGBB.
func rgb(v uint32) color.RGBA {
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

// px returns n pixels of a PNG image as a length.
func px(n float64) vg.Length { return vg.Length(n * 72 / DPI) }

// Layout shared by the charts, in pixels.
const (
	imageWidth = 960
	margin     = 8
	titleRow   = 24 // the chart's title
	legendRow  = 20 // the legend, under the title
)

// textStyle returns the style of text in the charts' sans-serif font.
func textStyle(size vg.Length, bold bool, c color.Color) text.Style {
	f := font.Font{Typeface: "Liberation", Variant: "Sans"}
	if bold {
		f.Weight = stdfont.WeightBold
	}
	return text.Style{
		Color:   c,
		Font:    font.From(f, size),
		XAlign:  draw.XLeft,
		YAlign:  draw.YTop,
		Handler: plot.DefaultTextHandler,
	}
}

// newPlot returns a plot whose text is in the charts' font.
func newPlot() *plot.Plot {
	p := plot.New()
	for _, sty := range []*text.Style{
		&p.Title.TextStyle, &p.X.Label.TextStyle, &p.Y.Label.TextStyle,
		&p.X.Tick.Label, &p.Y.Tick.Label, &p.Legend.TextStyle,
	} {
		sty.Font = textStyle(sty.Font.Size, false, nil).Font
	}
	p.Title.TextStyle.Font.Size = 11
	p.X.Label.TextStyle.Font.Size = 10
	p.Y.Label.TextStyle.Font.Size = 10
	p.X.Tick.Label.Font.Size = 9
	p.Y.Tick.Label.Font.Size = 9
	p.Title.Padding = px(4)
	return p
}

// write draws an image of w by h with draw and writes it to out.
func write(out io.Writer, f Format, w, h vg.Length, what string, drawIt func(draw.Canvas)) error {
	if f != PNG && f != SVG {
		return fmt.Errorf("draw %s: unknown image format %q", what, f)
	}
	c, err := draw.NewFormattedCanvas(w, h, string(f))
	if err != nil {
		return fmt.Errorf("draw %s: %w", what, err)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	drawIt(dc)
	if _, err := c.WriteTo(out); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}

// drawTitle writes title at the top left of c and returns the space left
// under it.
func drawTitle(c draw.Canvas, title string) draw.Canvas {
	top := c.Max.Y - px(margin)
	c.FillText(textStyle(13, true, color.Black), vg.Point{X: c.Min.X + px(margin), Y: top}, title)
	c.Max.Y = top - px(titleRow)
	return c
}

// legendEntry is one entry of a legend: a filled square, or a line.
type legendEntry struct {
	name   string
	colour color.Color
	line   bool
	dashed bool
}

// drawLegend writes the entries in a row at the top left of c and returns
// the space left under it.
func drawLegend(c draw.Canvas, entries []legendEntry) draw.Canvas {
	sty := textStyle(10, false, color.Black)
	sty.YAlign = draw.YCenter
	x := c.Min.X + px(margin)
	y := c.Max.Y - px(legendRow)/2
	for _, e := range entries {
		if e.line {
			ls := draw.LineStyle{Color: e.colour, Width: vg.Points(1.5)}
			if e.dashed {
				ls.Dashes = markDashes
			}
			c.StrokeLine2(ls, x, y, x+px(16), y)
		} else {
			c.FillPolygon(e.colour, []vg.Point{
				{X: x + px(2), Y: y - px(6)}, {X: x + px(14), Y: y - px(6)},
				{X: x + px(14), Y: y + px(6)}, {X: x + px(2), Y: y + px(6)},
			})
		}
		x += px(20)
		c.FillText(sty, vg.Point{X: x, Y: y}, e.name)
		x += sty.Width(e.name) + px(16)
	}
	c.Max.Y -= px(legendRow)
	return c
}

// countTicks marks whole counts on an axis that starts at 0.
type countTicks struct{}

// Ticks returns the whole values among the default ticks of [lo, hi].
func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for _, t := range (plot.DefaultTicks{}).Ticks(lo, hi) {
		if t.Value != math.Trunc(t.Value) {
			continue
		}
		if t.Label != "" {
			t.Label = fmt.Sprintf("%.0f", t.Value)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// gridStyle returns the style of grid lines.
func gridStyle() draw.LineStyle {
	return draw.LineStyle{Color: colourGrid, Width: vg.Points(0.5)}
}
