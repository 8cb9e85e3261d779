package chart

import (
	"fmt"
	"image/color"
	"io"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/lab-lb/lab/internal/traffic"
)

// Layout of a timeline, in pixels.
const (
	panelHeight = 230 // one panel, its title and its axis included
	xLabelRow   = 18  // the label of the time axis, under the last panel
	labelRow    = 15  // one row of mark labels
	maxRows     = 8   // rows of mark labels at most
	maxBins     = 300 // bins of a panel at most: longer runs get wider bins
)

// markDashes is the dash pattern of marks.
var markDashes = []vg.Length{vg.Points(4), vg.Points(3)}

// Timeline is the connections of a traffic run per second (per bin, a
// wider one for long runs), in panels over the same time axis, with
// marked moments.
type Timeline struct {
	// Title is written at the top, such as "lb4-crash: PASS".
	Title string
	// Start is the time 0 of the axis, End its end.
	Start, End time.Time
	// Panels are drawn top to bottom, on the same scale.
	Panels []Panel
	// Marks are drawn as dashed vertical lines across the panels, with
	// their labels above the first.
	Marks []Mark
}

// Panel is one group of connections.
type Panel struct {
	// Title names the group, such as "www (mh)"; the panel's title adds
	// its totals.
	Title string
	// Conns are the connections counted: each in the bin where it started
	// and, unless it was cut by the end of the load (Conn.Stopped), in
	// the bin where it ended, by its outcome.
	Conns []traffic.Conn
	// Latency draws the latency of the requests of Conns instead (a
	// request load): per bin, the p50 and p99 of those that succeeded, on
	// an axis of milliseconds of its own, and a dot over the bins with
	// failed requests.
	Latency bool
}

// Mark is a moment of the timeline, such as a scenario's step.
type Mark struct {
	// At is the moment, from Timeline.Start.
	At    time.Duration
	Label string
	// Alert draws the mark in red, such as a step that failed.
	Alert bool
}

// ReportTimeline returns the timeline of every connection of rep, in one
// panel, from its start to its end; a request load gets a second panel,
// of its latency.
func ReportTimeline(title string, rep *traffic.Report) *Timeline {
	t := &Timeline{
		Title:  title,
		Start:  rep.Start,
		End:    rep.End,
		Panels: []Panel{{Conns: rep.Conns}},
	}
	if rep.Requests != nil {
		t.Panels[0].Title = "requests"
		t.Panels = append(t.Panels, Panel{Title: "latency", Conns: rep.Conns, Latency: true})
	}
	return t
}

// Write draws the timeline as an image of the format f, 960 pixels wide
// and as high as its panels and mark labels need (see Size).
func (t *Timeline) Write(w io.Writer, f Format) error {
	l := t.layout()
	return write(w, f, px(imageWidth), l.height, "timeline", l.draw)
}

// Size returns the size of the timeline's PNG image, in pixels.
func (t *Timeline) Size() (width, height int) {
	l := t.layout()
	return imageWidth, int(l.height.Dots(DPI) + 0.5)
}

// timelineLayout is a timeline ready to draw.
type timelineLayout struct {
	t      *Timeline
	bin    time.Duration
	plots  []*plot.Plot
	labels []markLabel
	rows   int
	hasDNS bool
	height vg.Length
}

// markLabel is the label of a mark, placed.
type markLabel struct {
	mark Mark
	// x is where the mark's line is; the label starts there, or ends
	// there when right is set.
	x     vg.Length
	right bool
	row   int
}

// counts is a panel's connections per bin.
type counts struct {
	started, ok, interrupted, broken, dnsFailed plotter.Values
}

// peak returns the highest bar, the top of the y axis: the line of the
// started connections goes over it where a load ramps up (all its workers
// start at once), and is clipped there. When no connection finished, it
// returns the highest count of started connections.
func (c counts) peak() float64 {
	var bars, started float64
	for i := range c.started {
		bars = max(bars, c.ok[i]+c.interrupted[i]+c.broken[i]+c.dnsFailed[i])
		started = max(started, c.started[i])
	}
	if bars == 0 {
		return started
	}
	return bars
}

// binWidth returns the width of a bin for a run of span: a second, or more
// so that there are at most maxBins.
func binWidth(span time.Duration) time.Duration {
	for _, b := range []time.Duration{
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute,
	} {
		if span <= maxBins*b {
			return b
		}
	}
	return 30 * time.Minute
}

// count counts conns per bin of width bin from start; n is the number of
// bins, and times out of the span count in the first or last bin.
func count(conns []traffic.Conn, start time.Time, bin time.Duration, n int) counts {
	c := counts{
		started: make(plotter.Values, n), ok: make(plotter.Values, n), interrupted: make(plotter.Values, n),
		broken: make(plotter.Values, n), dnsFailed: make(plotter.Values, n),
	}
	index := func(t time.Time) int { return min(max(int(t.Sub(start)/bin), 0), n-1) }
	for _, conn := range conns {
		c.started[index(conn.Start)]++
		i := index(conn.End)
		switch {
		case conn.Stopped:
			// Cut by the end of the load: it did not finish.
		case conn.Outcome == traffic.OutcomeDNS:
			c.dnsFailed[i]++
		case conn.Outcome.Broken():
			c.broken[i]++
		case conn.Interrupted:
			c.interrupted[i]++
		default:
			c.ok[i]++
		}
	}
	return c
}

// panelTitle is the title of a panel with its totals, such as "www (mh):
// 62 connections, 1 broken, 0 interrupted", with the DNS failures if any.
func panelTitle(p Panel, c counts) string {
	sum := func(v plotter.Values) int {
		var n float64
		for _, x := range v {
			n += x
		}
		return int(n)
	}
	s := fmt.Sprintf("%d connections, %d broken, %d interrupted", len(p.Conns), sum(c.broken), sum(c.interrupted))
	if n := sum(c.dnsFailed); n > 0 {
		s += fmt.Sprintf(", %d DNS failed", n)
	}
	if p.Title == "" {
		return s
	}
	return p.Title + ": " + s
}

// layout counts the panels' connections, makes their plots and places the
// mark labels.
func (t *Timeline) layout() *timelineLayout {
	// The span is whole seconds, one at least.
	span := max((t.End.Sub(t.Start)+time.Second-1)/time.Second*time.Second, time.Second)
	l := &timelineLayout{t: t, bin: binWidth(span)}
	n := int((span + l.bin - 1) / l.bin)
	span = time.Duration(n) * l.bin // the axis ends with the last bin
	all := make([]counts, len(t.Panels))
	peak := 1.0
	for i, p := range t.Panels {
		all[i] = count(p.Conns, t.Start, l.bin, n)
		if p.Latency {
			continue
		}
		peak = max(peak, all[i].peak())
		for _, v := range all[i].dnsFailed {
			l.hasDNS = l.hasDNS || v > 0
		}
	}
	// The same scale in every panel: their axes are as wide, and their
	// data lines up.
	for i, p := range t.Panels {
		last := i == len(t.Panels)-1
		if p.Latency {
			l.plots = append(l.plots, l.latencyPlot(p, t.Start, n, span, last))
			continue
		}
		l.plots = append(l.plots, l.panelPlot(panelTitle(p, all[i]), all[i], span, peak, last))
	}

	// The labels go in the first row where they overlap no other label,
	// placed by the first panel's x axis (every panel has the same).
	var x func(float64) vg.Length
	if len(l.plots) > 0 {
		area := draw.Canvas{Rectangle: vg.Rectangle{
			Min: vg.Point{X: px(margin)},
			Max: vg.Point{X: px(imageWidth - margin), Y: px(panelHeight)},
		}}
		data := l.plots[0].DataCanvas(area)
		x, _ = l.plots[0].Transforms(&data)
	} else {
		x = func(s float64) vg.Length { return px(margin) + px(imageWidth-2*margin)*vg.Length(s/span.Seconds()) }
	}
	sty := markStyle()
	var ends []vg.Length // per row, where its last label ends
	for _, m := range t.Marks {
		ml := markLabel{mark: m, x: x(m.At.Seconds())}
		w := sty.Width(m.Label) + px(6)
		from, to := ml.x, ml.x+w
		if to > px(imageWidth-margin) {
			ml.right = true
			from, to = ml.x-w, ml.x
		}
		ml.row = len(ends)
		for i, end := range ends {
			if from > end {
				ml.row = i
				break
			}
		}
		ml.row = min(ml.row, maxRows-1)
		if ml.row == len(ends) {
			ends = append(ends, 0)
		}
		ends[ml.row] = to
		l.labels = append(l.labels, ml)
	}
	l.rows = len(ends)
	l.height = px(2*margin+titleRow+legendRow+xLabelRow) + px(labelRow)*vg.Length(l.rows) +
		px(panelHeight)*vg.Length(len(t.Panels))
	return l
}

// markStyle is the style of mark labels.
func markStyle() draw.TextStyle {
	sty := textStyle(9, false, ColourStep)
	sty.YAlign = draw.YBottom
	return sty
}

// panelPlot returns the plot of one panel: stacked bars per bin, broken
// at the bottom, a dot above the bins with broken connections, the
// started connections as a line, the marks, on a y axis from 0 to peak.
func (l *timelineLayout) panelPlot(title string, c counts, span time.Duration, peak float64, last bool) *plot.Plot {
	p := newPlot()
	p.Title.Text = title
	p.Y.Label.Text = "connections per " + binName(l.bin)
	if last {
		p.X.Label.Text = "seconds from the start"
	}
	p.Add(&plotter.Grid{Vertical: gridStyle(), Horizontal: gridStyle()})

	binS := l.bin.Seconds()
	var below *plotter.BarChart
	for _, s := range []struct {
		values plotter.Values
		colour color.Color
	}{
		{c.broken, ColourBroken}, {c.dnsFailed, ColourDNSFailed},
		{c.interrupted, ColourInterrupted}, {c.ok, ColourOK},
	} {
		// The width is set when drawing, from the panel's width.
		bars, err := plotter.NewBarChart(s.values, 1)
		if err != nil {
			panic(fmt.Sprintf("chart: bars of counts: %v", err)) // counts are never negative
		}
		bars.Color = s.colour
		bars.LineStyle.Width = 0
		if below != nil {
			bars.StackOn(below)
		}
		below = bars
		p.Add(binBars{bars, binS})
	}

	// A dot above each bin with broken connections, lest a few broken
	// among many ok go unseen.
	var dots plotter.XYs
	for i, b := range c.broken {
		if b > 0 {
			dots = append(dots, plotter.XY{X: (float64(i) + 0.5) * binS, Y: below.BarHeight(i) + 0.06*peak})
		}
	}
	if len(dots) > 0 {
		s, err := plotter.NewScatter(dots)
		if err != nil {
			panic(fmt.Sprintf("chart: broken dots: %v", err)) // finite values
		}
		s.GlyphStyle = draw.GlyphStyle{Color: ColourBroken, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
		p.Add(unpadded{s})
	}

	// The started connections, as steps over the bins; the last bin's
	// count goes on to the end.
	started := make(plotter.XYs, 0, len(c.started)+1)
	for i, v := range c.started {
		started = append(started, plotter.XY{X: float64(i) * binS, Y: v})
	}
	started = append(started, plotter.XY{X: span.Seconds(), Y: c.started[len(c.started)-1]})
	line, err := plotter.NewLine(started)
	if err != nil {
		panic(fmt.Sprintf("chart: started line: %v", err)) // finite values
	}
	line.StepStyle = plotter.PostStep
	line.LineStyle = draw.LineStyle{Color: ColourStarted, Width: vg.Points(1.5)}
	p.Add(unpadded{line})

	p.Add(markLines(l.t.Marks))

	p.X.Min, p.X.Max = 0, span.Seconds()
	p.X.Tick.Marker = secondTicks{}
	p.Y.Min, p.Y.Max = 0, peak*1.12
	p.Y.Tick.Marker = countTicks{}
	return p
}

// binName names a bin width for the y axis: "second", "10 s", "5 min".
func binName(bin time.Duration) string {
	switch {
	case bin == time.Second:
		return "second"
	case bin < time.Minute:
		return fmt.Sprintf("%d s", int(bin.Seconds()))
	}
	return fmt.Sprintf("%d min", int(bin.Minutes()))
}

// binBars draws bars over whole bins: the bar of bin i from i*width to
// (i+1)*width seconds, whatever the panel's size.
type binBars struct {
	bars  *plotter.BarChart
	width float64 // seconds
}

// Plot sets the bars' width and position for c, then draws them.
func (b binBars) Plot(c draw.Canvas, p *plot.Plot) {
	x, _ := p.Transforms(&c)
	b.bars.Width = max((x(b.width)-x(0))*0.86, vg.Points(0.5))
	// BarChart centres bar i on XMin+i: on an x axis counted in bins,
	// bar i is over bin i.
	bins := *p
	bins.X.Min, bins.X.Max = p.X.Min/b.width, p.X.Max/b.width
	b.bars.XMin = 0.5
	b.bars.Plot(c, &bins)
}

// unpadded draws a plotter without its glyph boxes, which would pad one
// panel's data area and misalign it with the others.
type unpadded struct{ plot.Plotter }

// markLines draws the marks as dashed vertical lines.
type markLines []Mark

// Plot draws a line per mark inside the span.
func (m markLines) Plot(c draw.Canvas, p *plot.Plot) {
	x, _ := p.Transforms(&c)
	for _, mk := range m {
		xm := x(mk.At.Seconds())
		if c.ContainsX(xm) {
			c.StrokeLine2(markLine(mk), xm, c.Min.Y, xm, c.Max.Y)
		}
	}
}

// markLine is the style of a mark's line.
func markLine(m Mark) draw.LineStyle {
	ls := draw.LineStyle{Color: ColourStep, Width: vg.Points(1), Dashes: markDashes}
	if m.Alert {
		ls.Color = ColourBroken
	}
	return ls
}

// secondTicks marks whole seconds on the time axis: at most about 15.
type secondTicks struct{}

// Ticks returns the ticks of [lo, hi] seconds.
func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 30 * 60.0
	for _, s := range []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if (hi-lo)/s <= 15 {
			step = s
			break
		}
	}
	var ticks []plot.Tick
	for v := float64(int(lo/step)) * step; v <= hi; v += step {
		if v >= lo {
			ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f", v)})
		}
	}
	return ticks
}

// draw draws the timeline on c.
func (l *timelineLayout) draw(c draw.Canvas) {
	c = drawTitle(c, l.t.Title)
	entries := []legendEntry{
		{name: "ok", colour: ColourOK},
		{name: "interrupted", colour: ColourInterrupted},
		{name: "broken", colour: ColourBroken},
	}
	if l.hasDNS {
		entries = append(entries, legendEntry{name: "DNS failed", colour: ColourDNSFailed})
	}
	entries = append(entries, legendEntry{name: "started", colour: ColourStarted, line: true})
	for _, p := range l.t.Panels {
		if p.Latency {
			entries = append(entries, legendEntry{name: "p50", colour: ColourP50, line: true},
				legendEntry{name: "p99", colour: ColourP99, line: true})
			break
		}
	}
	if len(l.t.Marks) > 0 {
		entries = append(entries, legendEntry{name: "step", colour: ColourStep, line: true, dashed: true})
	}
	c = drawLegend(c, entries)

	// The labels, each above its line down to the first panel.
	sty := markStyle()
	bottom := c.Max.Y - px(labelRow)*vg.Length(l.rows)
	for _, ml := range l.labels {
		y := c.Max.Y - px(labelRow)*vg.Length(ml.row+1)
		sty.Color = markLine(ml.mark).Color
		at := vg.Point{X: ml.x + px(3), Y: y + px(2)}
		if ml.right {
			sty.XAlign = draw.XRight
			at.X = ml.x - px(3)
		} else {
			sty.XAlign = draw.XLeft
		}
		c.FillText(sty, at, ml.mark.Label)
		c.StrokeLine2(markLine(ml.mark), ml.x, y+px(labelRow-2), ml.x, bottom)
	}
	c.Max.Y = bottom

	for i, p := range l.plots {
		h := px(panelHeight)
		if i == len(l.plots)-1 {
			h += px(xLabelRow)
		}
		area := c
		area.Min.X += px(margin)
		area.Max.X -= px(margin)
		area.Min.Y = c.Max.Y - h
		p.Draw(area)
		c.Max.Y -= h
	}
}
