package chart

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/traffic"
)

// t0 is the start of the sample runs.
var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// at returns t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// sampleConns is a five-second run with one connection of each kind, as
// package traffic's tests have it.
func sampleConns() []traffic.Conn {
	src := netip.MustParseAddr("10.0.0.10")
	vip := netip.MustParseAddrPort("192.0.2.1:80")
	const (
		ok = traffic.OutcomeOK
	)
	return []traffic.Conn{
		{ID: 1, Source: src, Target: vip, LB7: "L1", Status: 200, Start: at(0), End: at(2500), Outcome: ok},
		{ID: 2, Source: src, Target: vip, LB7: "L2", Status: 200, Start: at(200), End: at(3000), Outcome: ok, Interrupted: true},
		{ID: 3, Source: src, Target: vip, LB7: "L1", Status: 200, Start: at(500), End: at(1050), Outcome: traffic.OutcomeReset},
		{ID: 4, Source: src, Target: vip, LB7: "L2", Status: 200, Start: at(1000), End: at(4000), Outcome: traffic.OutcomeTimeout},
		{ID: 5, Source: src, Target: vip, Start: at(1200), End: at(1200), Outcome: traffic.OutcomeRefused},
		{ID: 6, Source: src, Target: vip, LB7: "L1", Status: 200, Start: at(3500), End: at(5000), Outcome: ok, Stopped: true},
		{ID: 7, Source: src, Target: vip, LB7: "L2", Status: 503, Start: at(4200), End: at(4210), Outcome: traffic.OutcomeBadStatus},
		{ID: 8, Name: "www.example.org.", Start: at(4300), End: at(4301), Outcome: traffic.OutcomeDNS},
		{ID: 9, Name: "www.example.org.", Source: src, Target: vip, LB7: "L1", Status: 200, Start: at(4400), End: at(4600), Outcome: ok},
	}
}

// sampleReport is the report of sampleConns.
func sampleReport() *traffic.Report {
	return &traffic.Report{Start: t0, End: at(5000), Conns: sampleConns()}
}

// quietReport is a run in which nothing went wrong.
func quietReport() *traffic.Report {
	var conns []traffic.Conn
	for i := range 20 {
		conns = append(conns, traffic.Conn{ID: i + 1, Start: at(i * 400), End: at(i*400 + 1500), Outcome: traffic.OutcomeOK})
	}
	conns[19].Stopped = true
	return &traffic.Report{Start: t0, End: at(9000), Conns: conns}
}

func TestCount(t *testing.T) {
	c := count(sampleConns(), t0, time.Second, 5)
	got := map[string][]float64{
		"started": c.started, "ok": c.ok, "interrupted": c.interrupted, "broken": c.broken, "dns": c.dnsFailed,
	}
	want := map[string][]float64{
		"started":     {3, 2, 0, 1, 3},
		"ok":          {0, 0, 1, 0, 1}, // the stopped one did not finish
		"interrupted": {0, 0, 0, 1, 0},
		"broken":      {0, 2, 0, 0, 2}, // 4 s and 4.21 s; the end is in the last bin
		"dns":         {0, 0, 0, 0, 1},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("counts (-got +want):\n%s", diff)
	}
	// The last second's bars: 1 ok, 2 broken, 1 DNS failure.
	if p := c.peak(); p != 4 {
		t.Errorf("peak %g, want 4", p)
	}
	// Nothing finished: the started ones set the scale.
	cut := sampleConns()[:3]
	for i := range cut {
		cut[i].Stopped = true
	}
	if p := count(cut, t0, time.Second, 5).peak(); p != 3 {
		t.Errorf("peak of 3 started and none finished: %g", p)
	}
}

func TestBinWidth(t *testing.T) {
	for _, tt := range []struct{ span, want time.Duration }{
		{time.Second, time.Second},
		{5 * time.Minute, time.Second},
		{10 * time.Minute, 2 * time.Second},
		{time.Hour, 30 * time.Second},
		{100 * time.Hour, 30 * time.Minute},
	} {
		if got := binWidth(tt.span); got != tt.want {
			t.Errorf("binWidth(%s) = %s, want %s", tt.span, got, tt.want)
		}
	}
	if got := binName(10 * time.Second); got != "10 s" {
		t.Errorf("binName(10s) = %q", got)
	}
}

// TestTimelinePNG checks the image of a report: its size, and the colour
// of each series where it is not zero, and only there.
func TestTimelinePNG(t *testing.T) {
	series := map[string]color.RGBA{
		"ok": ColourOK, "interrupted": ColourInterrupted, "broken": ColourBroken,
		"dns failed": ColourDNSFailed, "started": ColourStarted,
	}
	tests := []struct {
		name    string
		rep     *traffic.Report
		present []string
	}{
		{name: "every kind", rep: sampleReport(), present: []string{"ok", "interrupted", "broken", "dns failed", "started"}},
		{name: "quiet", rep: quietReport(), present: []string{"ok", "started"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := ReportTimeline("load l1 from client1", tt.rep)
			img := decodePNG(t, tl.Write)
			w, h := tl.Size()
			if got := img.Bounds().Size(); got != image.Pt(w, h) {
				t.Errorf("image of %v, want %dx%d", got, w, h)
			}
			if want := imageWidth; w != want {
				t.Errorf("width %d, want %d", w, want)
			}
			// A title, a legend, no mark label, one panel with its axis
			// label.
			if want := 2*margin + titleRow + legendRow + xLabelRow + panelHeight; h != want {
				t.Errorf("height %d, want %d", h, want)
			}
			// Under the legend, whose squares have every colour.
			top := margin + titleRow + legendRow
			for name, c := range series {
				n := testenv.Pixels(img, top, c)
				if want := slices.Contains(tt.present, name); (n > 0) != want {
					t.Errorf("%s: %d pixels of %v, want some: %v", name, n, c, want)
				}
			}
		})
	}
}

// TestTimelinePanels checks panels, marks and their labels.
func TestTimelinePanels(t *testing.T) {
	conns := sampleConns()
	tl := &Timeline{
		Title: "lb4-crash: PASS",
		Start: t0,
		End:   at(5000),
		Panels: []Panel{
			{Title: "www (mh)", Conns: conns[:3]},
			{Title: "api (wlc)", Conns: conns[3:]},
		},
		Marks: []Mark{
			{At: 0, Label: "load start"},
			{At: 0, Label: "sleep 2s"},
			{At: 2 * time.Second, Label: "kill lb4-2"},
			{At: 2010 * time.Millisecond, Label: "remove <lb7-2> & co", Alert: true},
			{At: 5 * time.Second, Label: "load stop"},
		},
	}
	l := tl.layout()
	rows := map[string]int{}
	for _, ml := range l.labels {
		rows[ml.mark.Label] = ml.row
		if right := ml.mark.Label == "load stop"; ml.right != right {
			t.Errorf("%s: right-aligned %v, want %v", ml.mark.Label, ml.right, right)
		}
	}
	wantRows := map[string]int{"load start": 0, "sleep 2s": 1, "kill lb4-2": 0, "remove <lb7-2> & co": 1, "load stop": 0}
	if diff := cmp.Diff(rows, wantRows); diff != "" {
		t.Errorf("label rows (-got +want):\n%s", diff)
	}

	img := decodePNG(t, tl.Write)
	want := image.Pt(imageWidth, 2*margin+titleRow+legendRow+xLabelRow+2*labelRow+2*panelHeight)
	if got := img.Bounds().Size(); got != want {
		t.Errorf("image of %v, want %v", got, want)
	}

	// Without the marks (one is red), each panel has red where it has
	// broken connections: the first one, the second three.
	bare := *tl
	bare.Marks = nil
	img = decodePNG(t, bare.Write)
	top := margin + titleRow + legendRow
	for i := range 2 {
		panel := img.SubImage(image.Rect(0, top+i*panelHeight, imageWidth, top+(i+1)*panelHeight))
		if n := testenv.Pixels(panel, 0, ColourBroken); n == 0 {
			t.Errorf("no broken pixel in panel %d", i)
		}
	}

	var b bytes.Buffer
	if err := tl.Write(&b, SVG); err != nil {
		t.Fatal(err)
	}
	texts := testenv.SVGTexts(t, b.Bytes())
	for _, s := range []string{
		"lb4-crash: PASS", "load start", "sleep 2s", "kill lb4-2", "remove <lb7-2> & co", "load stop",
		"www (mh): 3 connections, 1 broken, 1 interrupted",
		"api (wlc): 6 connections, 3 broken, 0 interrupted, 1 DNS failed",
		"ok", "interrupted", "broken", "DNS failed", "started", "step",
		"connections per second", "seconds from the start",
	} {
		if !slices.Contains(texts, s) {
			t.Errorf("no text %q in the SVG; it has %q", s, texts)
		}
	}
}

// TestBars checks a grouped bar chart: its size, the colour of each
// series where it is not zero, and its texts.
func TestBars(t *testing.T) {
	b := &Bars{
		Title: "broken connections per scenario and scheduler",
		Axis:  "broken connections",
		Rows:  []string{"kill one LB4 (crash)", "lb7-remove (FAIL)", "no change"},
		Series: []BarSeries{
			{Name: "mh", Values: []float64{0, 2, 0}, Labels: []string{"0/4", "2/3", "0/10"}},
			{Name: "wlc", Values: []float64{2, 0, 0}, Labels: []string{"2/4", "-", ""}},
			{Name: "sh", Values: []float64{0, 0}},
		},
	}
	img := decodePNG(t, b.Write)
	w, h := b.Size()
	if got := img.Bounds().Size(); got != image.Pt(w, h) {
		t.Errorf("image of %v, want %dx%d", got, w, h)
	}
	if want := 2*margin + titleRow + legendRow + valueAxis + 3*(3*barThickness+groupGap); w != imageWidth || h != want {
		t.Errorf("size %dx%d, want %dx%d", w, h, imageWidth, want)
	}
	top := margin + titleRow + legendRow
	for i, s := range b.Series {
		n := testenv.Pixels(img, top, SeriesColour(i))
		if want := s.Name != "sh"; (n > 0) != want {
			t.Errorf("%s: %d pixels of its colour, want some: %v", s.Name, n, want)
		}
	}

	var buf bytes.Buffer
	if err := b.Write(&buf, SVG); err != nil {
		t.Fatal(err)
	}
	texts := testenv.SVGTexts(t, buf.Bytes())
	for _, s := range append(b.Rows, "mh", "wlc", "sh", "0/4", "2/3", "0/10", "2/4", "-", "0", "broken connections") {
		if !slices.Contains(texts, s) {
			t.Errorf("no text %q in the SVG; it has %q", s, texts)
		}
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrors(t *testing.T) {
	tl := ReportTimeline("x", sampleReport())
	b := &Bars{Rows: []string{"a"}, Series: []BarSeries{{Name: "s", Values: []float64{1}}}}
	for _, f := range []Format{PNG, SVG} {
		if err := tl.Write(failingWriter{}, f); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("timeline %s to a failing writer: %v", f, err)
		}
		if err := b.Write(failingWriter{}, f); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("bars %s to a failing writer: %v", f, err)
		}
	}
	if err := tl.Write(io.Discard, "gif"); err == nil {
		t.Error("no error for a gif timeline")
	}
}

// decodePNG writes a PNG with write and decodes it.
func decodePNG(t *testing.T, write func(io.Writer, Format) error) *image.RGBA {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b, PNG); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatalf("decode the PNG: %v", err)
	}
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Bounds(), img, img.Bounds().Min, draw.Src)
	return rgba
}

// TestLatencyTimeline checks the timeline of a request load: a panel of
// requests and one of latency, whose p50 and p99 lines are drawn, a dot
// over the second with failures, and the texts.
func TestLatencyTimeline(t *testing.T) {
	var conns []traffic.Conn
	for i := range 40 {
		c := traffic.Conn{ID: i + 1, Start: at(i * 100), Outcome: traffic.OutcomeOK, Latency: time.Duration(5+i%5) * time.Millisecond}
		if i >= 20 && i < 23 {
			c.Outcome, c.Err = traffic.OutcomeRefused, "refused"
		}
		c.End = c.Start.Add(c.Latency)
		conns = append(conns, c)
	}
	rep := &traffic.Report{Start: t0, End: at(4000), Conns: conns, Requests: &traffic.RequestReport{}}
	tl := ReportTimeline("load 1 from users", rep)
	tl.Marks = []Mark{{At: 2 * time.Second, Label: "kill lb7-1"}}
	if len(tl.Panels) != 2 || !tl.Panels[1].Latency {
		t.Fatalf("panels %+v, want requests and latency", tl.Panels)
	}
	img := decodePNG(t, tl.Write)
	top := margin + titleRow + legendRow + labelRow // one row of mark labels
	latency := img.SubImage(image.Rect(0, top+panelHeight, imageWidth, top+2*panelHeight))
	for name, c := range map[string]color.RGBA{"p50": ColourP50, "p99": ColourP99, "failure dot": ColourBroken} {
		if n := testenv.Pixels(latency, 0, c); n == 0 {
			t.Errorf("no %s pixel in the latency panel", name)
		}
	}
	var b bytes.Buffer
	if err := tl.Write(&b, SVG); err != nil {
		t.Fatal(err)
	}
	texts := testenv.SVGTexts(t, b.Bytes())
	for _, s := range []string{"latency: 37 requests ok, 3 failed (dots: seconds with failures)", "p50", "p99",
		"latency per second, ms", "kill lb7-1"} {
		if !slices.Contains(texts, s) {
			t.Errorf("no text %q in the SVG; it has %q", s, texts)
		}
	}
}
