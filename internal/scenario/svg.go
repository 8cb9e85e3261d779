package scenario

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"time"

	"github.com/lab-lb/lab/internal/traffic"
)

// Layout of the timeline, in pixels.
const (
	svgWidth      = 960
	svgLeft       = 60 // room for the counts
	svgRight      = 20
	svgTitle      = 40 // title and legend
	svgLabelRow   = 14 // one row of step labels
	svgMaxRows    = 8  // rows of step labels at most
	svgCharWidth  = 6.5
	svgPanelHalf  = 50 // height of the ok (up) or broken (down) half
	svgPanelTitle = 24
	svgPanelGap   = 16
	svgAxis       = 30 // the seconds below the last panel
)

// Colours of the timeline.
const (
	colourOK          = "#2e9e44"
	colourInterrupted = "#f28c28"
	colourBroken      = "#d62728"
	colourStep        = "#555555"
	colourGrid        = "#dddddd"
)

// panel is one VIP's row of the timeline.
type panel struct {
	title string
	// ok, interrupted and broken count the connections that finished in
	// each traffic.SeriesStep from the start of the run.
	ok, interrupted, broken []int
}

// WriteSVG writes the run as a timeline: per 100 ms and per VIP, the
// connections that finished well (up; green, interrupted ones orange) and
// broken (down, red), with a dashed line at each step. Connections cut by
// the end of the load are left out. The SVG is self-contained.
func (r *Result) WriteSVG(w io.Writer) error {
	// The span is whole series steps, a second at least.
	step := traffic.SeriesStep
	span := max((r.End.Sub(r.Start)+step-1)/step*step, time.Second)
	panels := r.panels(span)
	peak := 1
	for _, pn := range panels {
		for i := range pn.ok {
			peak = max(peak, pn.ok[i]+pn.interrupted[i], pn.broken[i])
		}
	}
	plotW := float64(svgWidth - svgLeft - svgRight)
	x := func(d time.Duration) float64 { return svgLeft + plotW*d.Seconds()/span.Seconds() }
	bar := func(n int) float64 {
		if n == 0 {
			return 0
		}
		return max(1, svgPanelHalf*float64(n)/float64(peak))
	}
	labels, rows := r.stepLabels(x)
	top := float64(svgTitle + rows*svgLabelRow + 4)
	panelH := float64(svgPanelTitle + 2*svgPanelHalf + svgPanelGap)
	bottom := top + panelH*float64(len(panels))
	height := bottom + svgAxis

	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="sans-serif" font-size="11">`+"\n",
		svgWidth, height, svgWidth, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="16" font-size="14" font-weight="bold">%s: %s</text>`+"\n", svgLeft, esc(r.Name), verdict(r.Passed()))
	legend := []struct{ colour, text string }{
		{colourOK, "ok"}, {colourInterrupted, "interrupted"}, {colourBroken, "broken"},
	}
	lx := svgLeft
	for _, l := range legend {
		p(`<rect x="%d" y="24" width="10" height="10" fill="%s"/><text x="%d" y="33">%s</text>`+"\n", lx, l.colour, lx+14, l.text)
		lx += 24 + 7*len(l.text)
	}
	p(`<text x="%d" y="33" fill="%s">connections finished per %s; up: ended well, down: broken</text>`+"\n",
		lx+10, colourStep, traffic.SeriesStep)

	// Grid and seconds.
	tick := tickStep(span)
	for t := time.Duration(0); t <= span; t += tick {
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x(t), top, x(t), bottom, colourGrid)
		p(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), bottom+14, secondsLabel(t))
	}
	p(`<text x="%.1f" y="%.1f" text-anchor="end">time (s)</text>`+"\n", float64(svgWidth-svgRight), bottom+28)

	// Panels.
	barW := plotW * step.Seconds() / span.Seconds()
	for i, pn := range panels {
		y0 := top + panelH*float64(i)
		axis := y0 + svgPanelTitle + svgPanelHalf
		p(`<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", 4, y0+14, esc(pn.title))
		p(`<text x="%d" y="%.1f" text-anchor="end" fill="%s">%d</text>`+"\n", svgLeft-6, axis-svgPanelHalf+8, colourOK, peak)
		p(`<text x="%d" y="%.1f" text-anchor="end">0</text>`+"\n", svgLeft-6, axis+4)
		p(`<text x="%d" y="%.1f" text-anchor="end" fill="%s">%d</text>`+"\n", svgLeft-6, axis+svgPanelHalf, colourBroken, peak)
		for b := range pn.ok {
			bx := x(time.Duration(b) * traffic.SeriesStep)
			okH, intH, brH := bar(pn.ok[b]), bar(pn.interrupted[b]), bar(pn.broken[b])
			if okH > 0 {
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, axis-okH, barW, okH, colourOK)
			}
			if intH > 0 {
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, axis-okH-intH, barW, intH, colourInterrupted)
			}
			if brH > 0 {
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, axis, barW, brH, colourBroken)
			}
		}
		p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`+"\n", svgLeft, axis, svgWidth-svgRight, axis)
	}
	p(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`+"\n", svgLeft, top, svgLeft, bottom)

	// Steps.
	for _, l := range labels {
		ly := float64(svgTitle + (l.row+1)*svgLabelRow - 3)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`+"\n",
			l.x, ly+3, l.x, bottom, l.colour)
		if l.anchor == "end" {
			p(`<text x="%.1f" y="%.1f" fill="%s" text-anchor="end">%s</text>`+"\n", l.x-2, ly, l.colour, esc(l.text))
		} else {
			p(`<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", l.x+2, ly, l.colour, esc(l.text))
		}
	}
	p("</svg>\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write scenario timeline: %w", err)
	}
	return nil
}

// stepLabel is a step's line and label on the timeline.
type stepLabel struct {
	x      float64
	row    int
	text   string
	colour string
	anchor string // "end" for labels left of their line
}

// stepLabels places the label of every step that ran in the first row
// where it overlaps no other label, and returns the labels and the number
// of rows.
func (r *Result) stepLabels(x func(time.Duration) float64) ([]stepLabel, int) {
	var labels []stepLabel
	var ends []float64 // per row, where its last label ends
	for _, s := range r.Steps {
		if !s.Ran {
			continue
		}
		l := stepLabel{x: x(s.At), text: s.Step.Label, colour: colourStep}
		if s.Err != nil {
			l.colour = colourBroken
		}
		width := svgCharWidth*float64(len(l.text)) + 4
		from, to := l.x, l.x+width
		if to > svgWidth {
			l.anchor = "end"
			from, to = l.x-width, l.x
		}
		l.row = len(ends)
		for i, end := range ends {
			if from > end {
				l.row = i
				break
			}
		}
		if l.row >= svgMaxRows {
			l.row = svgMaxRows - 1
		}
		if l.row == len(ends) {
			ends = append(ends, 0)
		}
		ends[l.row] = to
		labels = append(labels, l)
	}
	return labels, max(len(ends), 1)
}

// panels counts the connections that finished per series step and per
// VIP: one panel per VIP of the lab, one for connections to no known VIP
// when there are some, or a single panel when the lab listed no VIP.
func (r *Result) panels(span time.Duration) []panel {
	n := int((span + traffic.SeriesStep - 1) / traffic.SeriesStep)
	mk := func(title string) panel {
		return panel{title: title, ok: make([]int, n), interrupted: make([]int, n), broken: make([]int, n)}
	}
	var panels []panel
	for _, v := range r.VIPs {
		panels = append(panels, mk(vipColumn(v)))
	}
	other := mk("other")
	if len(r.VIPs) == 0 {
		other = mk("all connections")
	}
	used := false
	for _, c := range r.conns() {
		pn := &other
		if i := r.vipIndex(c); i >= 0 {
			pn = &panels[i]
		} else {
			used = true
		}
		b := min(max(int(c.End.Sub(r.Start)/traffic.SeriesStep), 0), n-1)
		switch {
		case c.Stopped:
			// Cut by the end of the load: it did not finish.
		case c.Outcome.Broken():
			pn.broken[b]++
		case c.Interrupted:
			pn.interrupted[b]++
		default:
			pn.ok[b]++
		}
	}
	if used || len(panels) == 0 {
		panels = append(panels, other)
	}
	return panels
}

// tickStep returns the spacing of the seconds on the axis: at most about
// 15 ticks.
func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second,
		30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute,
	} {
		if span/s <= 15 {
			return s
		}
	}
	return 30 * time.Minute
}

// secondsLabel writes t in whole seconds.
func secondsLabel(t time.Duration) string {
	return fmt.Sprintf("%d", int64(t/time.Second))
}

// esc escapes text for XML.
func esc(s string) string { return html.EscapeString(s) }
