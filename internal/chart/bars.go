package chart

import (
	"fmt"
	"io"
	"slices"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Layout of a bar chart, in pixels.
const (
	barThickness = 14 // one bar
	groupGap     = 14 // between two groups of bars
	valueAxis    = 44 // the value axis and its label, under the bars
)

// Bars is a chart of grouped horizontal bars: one group per row (such as a
// scenario), one bar per series (such as a scheduler) in each, in the
// series' colour (SeriesColour).
type Bars struct {
	// Title is written at the top.
	Title string
	// Axis names the values, such as "broken connections".
	Axis string
	// Rows name the groups, top to bottom.
	Rows []string
	// Series are the bars of each group, top to bottom.
	Series []BarSeries
}

// BarSeries is one bar in each group.
type BarSeries struct {
	Name string
	// Values holds one value per row, none negative; missing ones are 0.
	Values []float64
	// Labels, when set, holds the text written after each bar, such as
	// "2/120"; an empty one writes the value.
	Labels []string
}

// Write draws the chart as an image of the format f, 960 pixels wide and as
// high as its rows need (see Size).
func (b *Bars) Write(w io.Writer, f Format) error {
	return write(w, f, px(imageWidth), b.height(), "bar chart", b.draw)
}

// Size returns the size of the chart's PNG image, in pixels.
func (b *Bars) Size() (width, height int) {
	return imageWidth, int(b.height().Dots(DPI) + 0.5)
}

// groupHeight returns the height of one group of bars.
func (b *Bars) groupHeight() vg.Length {
	return px(float64(barThickness*max(len(b.Series), 1) + groupGap))
}

// height returns the height of the image.
func (b *Bars) height() vg.Length {
	return px(2*margin+titleRow+legendRow+valueAxis) + b.groupHeight()*vg.Length(max(len(b.Rows), 1))
}

// value returns the value of series s in row r, 0 when missing.
func (s BarSeries) value(r int) float64 {
	if r < len(s.Values) {
		return max(s.Values[r], 0)
	}
	return 0
}

// label returns the label of series s in row r.
func (s BarSeries) label(r int) string {
	if r < len(s.Labels) && s.Labels[r] != "" {
		return s.Labels[r]
	}
	return fmt.Sprintf("%g", s.value(r))
}

// draw draws the chart on c.
func (b *Bars) draw(c draw.Canvas) {
	c = drawTitle(c, b.Title)
	var entries []legendEntry
	for i, s := range b.Series {
		entries = append(entries, legendEntry{name: s.Name, colour: SeriesColour(i)})
	}
	c = drawLegend(c, entries)
	c.Min.X += px(margin)
	c.Max.X -= px(margin)
	c.Min.Y += px(margin)

	n := len(b.Rows)
	if n == 0 {
		return
	}
	p := newPlot()
	// The first row on top: plots count rows from the bottom.
	names := slices.Clone(b.Rows)
	slices.Reverse(names)
	p.NominalY(names...)
	p.Y.Tick.Label.Font.Size = 10
	p.X.Label.Text = b.Axis
	p.X.Tick.Marker = countTicks{}
	p.Add(&plotter.Grid{Vertical: gridStyle()})

	peak := 1.0
	var charts []*plotter.BarChart
	var labels []*plotter.Labels
	for _, s := range b.Series {
		values := make(plotter.Values, n)
		xys := make(plotter.XYs, n)
		texts := make([]string, n)
		for r := range n {
			i := n - 1 - r
			values[i] = s.value(r)
			xys[i] = plotter.XY{X: values[i], Y: float64(i)}
			texts[i] = s.label(r)
			peak = max(peak, values[i])
		}
		bars, err := plotter.NewBarChart(values, 1) // the width is set below
		if err != nil {
			panic(fmt.Sprintf("chart: bars: %v", err)) // values are never negative
		}
		bars.Horizontal = true
		bars.LineStyle.Width = 0
		charts = append(charts, bars)
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
		if err != nil {
			panic(fmt.Sprintf("chart: bar labels: %v", err)) // as many labels as values
		}
		labels = append(labels, l)
	}
	p.X.Min, p.X.Max = 0, peak*1.2
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.5

	// A row is a unit of the y axis: its bars share 80% of it.
	data := p.DataCanvas(c)
	thick := (data.Max.Y - data.Min.Y) / vg.Length(n) * 0.8 / vg.Length(max(len(b.Series), 1))
	for i, bars := range charts {
		bars.Color = SeriesColour(i)
		bars.Width = thick
		bars.Offset = (vg.Length(len(charts)-1)/2 - vg.Length(i)) * thick
		sty := textStyle(9, false, ColourStep)
		sty.YAlign = draw.YCenter
		for j := range labels[i].TextStyle {
			labels[i].TextStyle[j] = sty
		}
		labels[i].Offset = vg.Point{X: px(4), Y: bars.Offset}
		p.Add(unpadded{bars}, unpadded{labels[i]})
	}
	p.Draw(c)
}
