package scenario

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/chart"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/traffic"
)

// header is the height of the title and legend of package chart's images,
// in pixels: the legend has a square of every colour.
const header = 52

// TestTimeline checks what the timeline shows: a panel per VIP, and a
// mark per step that ran, red when it failed.
func TestTimeline(t *testing.T) {
	type mark struct {
		At    time.Duration
		Label string
		Alert bool
	}
	summary := func(tl *chart.Timeline) (title string, panels []string, marks []mark) {
		for _, p := range tl.Panels {
			panels = append(panels, p.Title)
		}
		for _, m := range tl.Marks {
			marks = append(marks, mark(m))
		}
		return tl.Title, panels, marks
	}

	r := sampleResult()
	title, panels, marks := summary(r.timeline())
	if title != "sample: FAIL" {
		t.Errorf("title %q", title)
	}
	if diff := cmp.Diff(panels, []string{"www (mh)", "api (wlc)"}); diff != "" {
		t.Errorf("panels (-got +want):\n%s", diff)
	}
	// The wait did not run.
	want := []mark{
		{0, "load start", false}, {0, "sleep 5s", false}, {5 * time.Second, "kill lb4-2", false},
		{5 * time.Second, "sleep 5s", false}, {10 * time.Second, "revive lb4-2", false}, {15 * time.Second, "load stop", false},
	}
	if diff := cmp.Diff(marks, want); diff != "" {
		t.Errorf("marks (-got +want):\n%s", diff)
	}

	// A connection to no VIP of the lab has a panel of its own.
	r.Report.Conns = append(r.Report.Conns, conn(11, VIP{Target: netip.MustParseAddrPort("192.0.2.9:80")}, 0, 100, "", traffic.OutcomeOK))
	if _, panels, _ := summary(r.timeline()); !slices.Equal(panels, []string{"www (mh)", "api (wlc)", "other"}) {
		t.Errorf("panels %q, want other last", panels)
	}
	// A lab that lists no VIP: one panel of everything.
	r.VIPs = nil
	tl := r.timeline()
	if _, panels, _ := summary(tl); !slices.Equal(panels, []string{"all connections"}) || len(tl.Panels[0].Conns) != 11 {
		t.Errorf("panels %q of %d connections, want all connections", panels, len(tl.Panels[0].Conns))
	}

	// A failed step is red.
	results := sampleRuns(t)
	title, _, marks = summary(results[1].timeline())
	if title != "lb7-remove: FAIL" {
		t.Errorf("title %q", title)
	}
	var alerts []string
	for _, m := range marks {
		if m.Alert {
			alerts = append(alerts, m.Label)
		}
	}
	if !slices.Equal(alerts, []string{"wait www lb7-2 weight 0"}) {
		t.Errorf("red marks %q, want the wait that timed out", alerts)
	}
}

// TestTimelineImages checks the PNG and SVG timelines of sample runs:
// their size, a colour for each series where it is not zero, the texts.
func TestTimelineImages(t *testing.T) {
	results := sampleRuns(t)
	quiet := sampleResult()
	quiet.Name = "quiet"
	for i := range quiet.Report.Conns {
		quiet.Report.Conns[i].Outcome, quiet.Report.Conns[i].Interrupted = traffic.OutcomeOK, false
	}
	quiet.Steps = slices.DeleteFunc(quiet.Steps, func(s StepResult) bool { return !s.Ran })

	tests := []struct {
		name  string
		r     *Result
		want  map[color.RGBA]bool // colour: some pixels under the legend
		texts []string
	}{
		{
			name: "pass", r: results[0],
			want: map[color.RGBA]bool{chart.ColourOK: true, chart.ColourInterrupted: true, chart.ColourBroken: true, chart.ColourStarted: true},
			texts: []string{
				"lb4-crash: PASS (kill one LB4 (crash))", "load start", "sleep 2s", "kill lb4-2", "wait www next-hops 1",
				"sleep 4s", "load stop", "www (mh): 4 connections, 0 broken, 1 interrupted",
				"api (wlc): 4 connections, 2 broken, 0 interrupted",
				"ok", "interrupted", "broken", "started", "step",
			},
		},
		{
			name: "fail", r: results[1],
			want: map[color.RGBA]bool{chart.ColourOK: true, chart.ColourInterrupted: false, chart.ColourBroken: true},
			texts: []string{
				"lb7-remove: FAIL", "remove <lb7-2> & co", "wait www lb7-2 weight 0",
				"www (mh): 3 connections, 2 broken, 0 interrupted",
			},
		},
		{
			name: "nothing broke", r: quiet,
			want:  map[color.RGBA]bool{chart.ColourOK: true, chart.ColourInterrupted: false, chart.ColourBroken: false},
			texts: []string{"quiet: PASS", "revive lb4-2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.r.WritePNG(&b); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&b)
			if err != nil {
				t.Fatalf("decode the PNG: %v", err)
			}
			w, h := tt.r.timeline().Size()
			if got := img.Bounds().Size(); got != image.Pt(w, h) || w != 960 {
				t.Errorf("image of %v, want %dx%d, 960 wide", got, w, h)
			}
			for c, want := range tt.want {
				if n := testenv.Pixels(img, header, c); (n > 0) != want {
					t.Errorf("%d pixels of %v, want some: %v", n, c, want)
				}
			}

			b.Reset()
			if err := tt.r.WriteSVG(&b); err != nil {
				t.Fatal(err)
			}
			texts := testenv.SVGTexts(t, b.Bytes())
			for _, s := range tt.texts {
				if !slices.Contains(texts, s) {
					t.Errorf("no text %q in the SVG; it has %q", s, texts)
				}
			}
			if slices.Contains(texts, "settle") {
				t.Error("the SVG marks a step that did not run")
			}
		})
	}
}

// TestClaimsChart checks the chart of the claims table: the figures per
// scenario and scheduler, and the images.
func TestClaimsChart(t *testing.T) {
	results := sampleRuns(t)
	b := claimsChart(results)
	if diff := cmp.Diff(b.Rows, []string{"kill one LB4 (crash)", "lb7-remove (FAIL)"}); diff != "" {
		t.Errorf("rows (-got +want):\n%s", diff)
	}
	// lb7-remove's lab had no wlc VIP.
	wantSeries := []chart.BarSeries{
		{Name: "mh", Values: []float64{0, 2}, Labels: []string{"mh 0/4", "mh 2/3"}},
		{Name: "wlc", Values: []float64{2, 0}, Labels: []string{"wlc 2/4", "wlc -"}},
	}
	if diff := cmp.Diff(b.Series, wantSeries); diff != "" {
		t.Errorf("series (-got +want):\n%s", diff)
	}

	var buf bytes.Buffer
	if err := WriteClaimsPNG(&buf, results); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("decode the PNG: %v", err)
	}
	w, h := b.Size()
	if got := img.Bounds().Size(); got != image.Pt(w, h) || w != 960 {
		t.Errorf("image of %v, want %dx%d", got, w, h)
	}
	for i, s := range b.Series {
		if n := testenv.Pixels(img, header, chart.SeriesColour(i)); n == 0 {
			t.Errorf("no bar of %s", s.Name)
		}
	}

	buf.Reset()
	if err := WriteClaimsSVG(&buf, results); err != nil {
		t.Fatal(err)
	}
	texts := testenv.SVGTexts(t, buf.Bytes())
	for _, s := range []string{"kill one LB4 (crash)", "lb7-remove (FAIL)", "mh", "wlc", "mh 0/4", "mh 2/3", "wlc 2/4", "wlc -"} {
		if !slices.Contains(texts, s) {
			t.Errorf("no text %q in the SVG; it has %q", s, texts)
		}
	}
}
