package chart

import (
	"fmt"
	"image/color"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/lab-lb/lab/internal/traffic"
)

// The colours of the latency lines.
var (
	ColourP50 = rgb(0x1f77b4)
	ColourP99 = rgb(0xbcbd22)
)

// latencyPlot returns the plot of a latency panel: the p50 and p99 of the
// requests that succeeded in each of the n bins from start, as steps, in
// milliseconds; a dot at the top of each bin where requests failed; the
// marks.
func (l *timelineLayout) latencyPlot(pn Panel, start time.Time, n int, span time.Duration, last bool) *plot.Plot {
	lat := make([][]time.Duration, n)
	failed := make([]int, n)
	var ok, errs int
	index := func(t time.Time) int { return min(max(int(t.Sub(start)/l.bin), 0), n-1) }
	for _, c := range pn.Conns {
		switch {
		case c.Stopped:
		case c.Outcome == traffic.OutcomeOK:
			lat[index(c.End)] = append(lat[index(c.End)], c.Latency)
			ok++
		default:
			failed[index(c.End)]++
			errs++
		}
	}
	p50, p99 := make(plotter.XYs, 0, n+1), make(plotter.XYs, 0, n+1)
	top := 1.0 // ms
	binS := l.bin.Seconds()
	for i, ds := range lat {
		st := traffic.Summarize(ds)
		p50 = append(p50, plotter.XY{X: float64(i) * binS, Y: msOf(st.P50)})
		p99 = append(p99, plotter.XY{X: float64(i) * binS, Y: msOf(st.P99)})
		top = max(top, msOf(st.P99))
	}
	p50 = append(p50, plotter.XY{X: span.Seconds(), Y: p50[len(p50)-1].Y})
	p99 = append(p99, plotter.XY{X: span.Seconds(), Y: p99[len(p99)-1].Y})

	p := newPlot()
	p.Title.Text = fmt.Sprintf("%s: %d requests ok, %d failed (dots: seconds with failures)", pn.Title, ok, errs)
	p.Y.Label.Text = "latency per " + binName(l.bin) + ", ms"
	if last {
		p.X.Label.Text = "seconds from the start"
	}
	p.Add(&plotter.Grid{Vertical: gridStyle(), Horizontal: gridStyle()})
	for _, s := range []struct {
		xys    plotter.XYs
		colour color.Color
	}{{p99, ColourP99}, {p50, ColourP50}} {
		line, err := plotter.NewLine(s.xys)
		if err != nil {
			panic(fmt.Sprintf("chart: latency line: %v", err)) // finite values
		}
		line.StepStyle = plotter.PostStep
		line.LineStyle = draw.LineStyle{Color: s.colour, Width: vg.Points(1.5)}
		p.Add(unpadded{line})
	}
	var dots plotter.XYs
	for i, f := range failed {
		if f > 0 {
			dots = append(dots, plotter.XY{X: (float64(i) + 0.5) * binS, Y: top * 1.06})
		}
	}
	if len(dots) > 0 {
		s, err := plotter.NewScatter(dots)
		if err != nil {
			panic(fmt.Sprintf("chart: failure dots: %v", err)) // finite values
		}
		s.GlyphStyle = draw.GlyphStyle{Color: ColourBroken, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
		p.Add(unpadded{s})
	}
	p.Add(markLines(l.t.Marks))
	p.X.Min, p.X.Max = 0, span.Seconds()
	p.X.Tick.Marker = secondTicks{}
	p.Y.Min, p.Y.Max = 0, top*1.12
	return p
}

// msOf is d in milliseconds.
func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
