package scenario

import (
	"fmt"
	"io"

	"github.com/lab-lb/lab/internal/chart"
	"github.com/lab-lb/lab/internal/traffic"
)

// WritePNG writes the run's timeline as a PNG image: per second and per
// VIP, the connections started (a line) and those that finished ok,
// interrupted or broken (stacked bars, broken at the bottom and dotted
// above), with a dashed line and a label at each step that ran (red when
// it failed). Connections cut by the end of the load did not finish.
func (r *Result) WritePNG(w io.Writer) error {
	return r.timeline().Write(w, chart.PNG)
}

// WriteSVG writes the timeline of WritePNG as an SVG image.
func (r *Result) WriteSVG(w io.Writer) error {
	return r.timeline().Write(w, chart.SVG)
}

// timeline returns the run's timeline: one panel per VIP of the lab, one
// for connections to no known VIP when there are some, or a single panel
// when the lab listed no VIP; for a request load, a panel of every request
// and one of their latency; a mark per step that ran.
func (r *Result) timeline() *chart.Timeline {
	title := fmt.Sprintf("%s: %s", r.Name, verdict(r.Passed()))
	if r.Claim != "" {
		title += " (" + r.Claim + ")"
	}
	t := &chart.Timeline{Title: title, Start: r.Start, End: r.End}
	for _, s := range r.Steps {
		if s.Ran {
			t.Marks = append(t.Marks, chart.Mark{At: s.At, Label: s.Step.Label, Alert: s.Err != nil})
		}
	}
	if r.requests() {
		// A request load says how long service degraded: every request in
		// one panel, and their latency.
		t.Panels = []chart.Panel{{Title: "requests, every VIP", Conns: r.conns()}, {Title: "latency", Conns: r.conns(), Latency: true}}
		return t
	}
	byVIP := make([][]traffic.Conn, len(r.VIPs))
	var other []traffic.Conn
	for _, c := range r.conns() {
		if i := r.vipIndex(c); i >= 0 {
			byVIP[i] = append(byVIP[i], c)
		} else {
			other = append(other, c)
		}
	}
	for i, v := range r.VIPs {
		t.Panels = append(t.Panels, chart.Panel{Title: vipColumn(v), Conns: byVIP[i]})
	}
	switch {
	case len(r.VIPs) == 0:
		t.Panels = append(t.Panels, chart.Panel{Title: "all connections", Conns: other})
	case len(other) > 0:
		t.Panels = append(t.Panels, chart.Panel{Title: "other", Conns: other})
	}
	return t
}

// WriteClaimsPNG draws the figures of the claims table (WriteClaims) as a
// PNG image of grouped bars: per result (its claim, or its name, with
// "(FAIL)" when it failed), the broken connections to the VIPs of each
// scheduler (to a VIP of no scheduler: per VIP), each bar labelled with
// the scheduler and "broken/started", such as "mh 0/48", or "mh -" when
// the lab had no such VIP.
func WriteClaimsPNG(w io.Writer, results []*Result) error {
	return claimsChart(results).Write(w, chart.PNG)
}

// WriteClaimsSVG draws the chart of WriteClaimsPNG as an SVG image.
func WriteClaimsSVG(w io.Writer, results []*Result) error {
	return claimsChart(results).Write(w, chart.SVG)
}

// claimsChart returns the chart of WriteClaimsPNG.
func claimsChart(all []*Result) *chart.Bars {
	var results []*Result // those of download loads: the chart counts broken connections
	for _, r := range all {
		if !r.requests() {
			results = append(results, r)
		}
	}
	b := &chart.Bars{
		Title: "The claims: broken connections per scenario and scheduler",
		Axis:  "broken connections (labels: broken/started)",
	}
	// A series per scheduler, in the order they come.
	key := func(v VIP) string {
		if v.Scheduler == "" {
			return v.Name
		}
		return v.Scheduler
	}
	index := map[string]int{}
	for _, r := range results {
		for _, v := range r.VIPs {
			if _, ok := index[key(v)]; !ok {
				index[key(v)] = len(b.Series)
				b.Series = append(b.Series, chart.BarSeries{Name: key(v)})
			}
		}
	}
	for i := range b.Series {
		b.Series[i].Values = make([]float64, len(results))
		b.Series[i].Labels = make([]string, len(results))
	}
	for row, r := range results {
		name := r.Claim
		if name == "" {
			name = r.Name
		}
		if !r.Passed() {
			name += " (FAIL)"
		}
		b.Rows = append(b.Rows, name)
		broken := make([]int, len(b.Series))
		started := make([]int, len(b.Series))
		seen := make([]bool, len(b.Series))
		totals := r.Totals()
		for i, v := range r.VIPs {
			j := index[key(v)]
			broken[j] += totals[i].Broken
			started[j] += totals[i].Started
			seen[j] = true
		}
		// The label names the scheduler: most bars are empty.
		for j, s := range b.Series {
			s.Values[row] = float64(broken[j])
			s.Labels[row] = s.Name + " -"
			if seen[j] {
				s.Labels[row] = fmt.Sprintf("%s %d/%d", s.Name, broken[j], started[j])
			}
		}
	}
	return b
}
