package traffic

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/testenv"
)

// t0 is the start of the sample run.
var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// at returns t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// sampleConns is a five-second run with one connection of each kind.
func sampleConns() []Conn {
	src := netip.MustParseAddr("10.0.0.10")
	vip := netip.MustParseAddrPort("192.0.2.1:80")
	return []Conn{
		{ID: 1, Source: src, SourcePort: 40001, Target: vip, LB7: "L1", Server: "S1", Status: 200,
			Start: at(0), End: at(2500), Bytes: 10 << 20, LongestStall: 50 * time.Millisecond, Outcome: OutcomeOK},
		{ID: 2, Source: src, SourcePort: 40002, Target: vip, LB7: "L2", Server: "S2", Status: 200,
			Start: at(200), End: at(3000), Bytes: 1 << 20, LongestStall: 1500 * time.Millisecond,
			Outcome: OutcomeOK, Interrupted: true},
		{ID: 3, Source: src, SourcePort: 40003, Target: vip, LB7: "L1", Server: "S2", Status: 200,
			Start: at(500), End: at(1050), Bytes: 65536, LongestStall: 99 * time.Millisecond,
			Outcome: OutcomeReset, Err: "read body: read: connection reset by peer"},
		{ID: 4, Source: src, SourcePort: 40004, Target: vip, LB7: "L2", Server: "S1", Status: 200,
			Start: at(1000), End: at(4000), Bytes: 32768, LongestStall: 100 * time.Millisecond,
			Outcome: OutcomeTimeout, Err: "read body: i/o timeout"},
		{ID: 5, Source: src, Target: vip, Start: at(1200), End: at(1200).Add(100 * time.Microsecond),
			Outcome: OutcomeRefused, Err: "connect: connection refused"},
		{ID: 6, Source: src, SourcePort: 40006, Target: vip, LB7: "L1", Server: "S1", Status: 200,
			Start: at(3500), End: at(5000), Bytes: 4096, LongestStall: 3 * time.Second,
			Outcome: OutcomeOK, Stopped: true},
		{ID: 7, Source: src, SourcePort: 40007, Target: vip, LB7: "L2", Server: "S1", Status: 503,
			Start: at(4200), End: at(4210), LongestStall: 250 * time.Millisecond,
			Outcome: OutcomeBadStatus, Err: "status 503"},
		{ID: 8, Name: "www.example.org.", Start: at(4300), End: at(4301), Outcome: OutcomeDNS, Err: "www.example.org.: no such name"},
		{ID: 9, Name: "www.example.org.", Source: src, SourcePort: 40009, Target: vip, Fallbacks: 1, LB7: "L1", Server: "S2",
			Status: 200, Start: at(4400), End: at(4600), Bytes: 4096, LongestStall: 10 * time.Millisecond, Outcome: OutcomeOK},
	}
}

func sampleReport() *Report {
	return newReport(t0, at(5000), settings{readTimeout: 3 * time.Second, stallThreshold: time.Second}, sampleConns())
}

func TestReportFigures(t *testing.T) {
	r := sampleReport()
	type figures struct {
		Total, OK, Broken, Interrupted, Stopped, DNSFailed, Fallbacks int
		ByOutcome                                                     map[Outcome]int
		ByLB7, ByServer                                               map[string]int
	}
	diff(t, "figures", figures{r.Total, r.OK, r.Broken, r.Interrupted, r.Stopped, r.DNSFailed, r.Fallbacks, r.ByOutcome, r.ByLB7, r.ByServer},
		figures{
			Total: 9, OK: 4, Broken: 4, Interrupted: 1, Stopped: 1, DNSFailed: 1, Fallbacks: 1,
			ByOutcome: map[Outcome]int{OutcomeOK: 4, OutcomeReset: 1, OutcomeRefused: 1, OutcomeTimeout: 1,
				OutcomeBadStatus: 1, OutcomeExhausted: 0, OutcomeError: 0, OutcomeDNS: 1},
			ByLB7:    map[string]int{"L1": 4, "L2": 3},
			ByServer: map[string]int{"S1": 4, "S2": 3},
		})

	// The refused connection got no response and stays out of the
	// histogram; bounds are lower-inclusive.
	ms := time.Millisecond
	diff(t, "stalls", r.Stalls, Histogram{
		{Min: 0, Max: 100 * ms, Count: 3},
		{Min: 100 * ms, Max: 250 * ms, Count: 1},
		{Min: 250 * ms, Max: 500 * ms, Count: 1},
		{Min: 500 * ms, Max: time.Second, Count: 0},
		{Min: time.Second, Max: 2 * time.Second, Count: 1},
		{Min: 2 * time.Second, Max: 3 * time.Second, Count: 0},
		{Min: 3 * time.Second, Count: 1},
	})
	var labels []string
	for _, b := range r.Stalls {
		labels = append(labels, b.Label())
	}
	diff(t, "labels", labels, []string{"<100ms", "100ms-250ms", "250ms-500ms", "500ms-1s", "1s-2s", "2s-3s", ">=3s"})

	if len(r.Series) != 50 {
		t.Fatalf("%d series buckets, want 50 for 5s", len(r.Series))
	}
	busy := map[int]Bucket{}
	for i, b := range r.Series {
		if b.Offset != time.Duration(i)*SeriesStep {
			t.Errorf("bucket %d has offset %s", i, b.Offset)
		}
		b.Offset = 0
		if b != (Bucket{}) {
			busy[i] = b
		}
	}
	diff(t, "series", busy, map[int]Bucket{
		0:  {Started: 1},
		2:  {Started: 1},
		5:  {Started: 1},
		10: {Started: 1, Broken: 1},
		12: {Started: 1, Broken: 1},
		25: {OK: 1},
		30: {OK: 1, Interrupted: 1},
		35: {Started: 1},
		40: {Broken: 1},
		42: {Started: 1, Broken: 1},
		43: {Started: 1, DNSFailed: 1}, // a failed lookup: not broken
		44: {Started: 1},
		46: {OK: 1},
		49: {OK: 1}, // the end of the run falls in the last bucket
	})
}

func TestReportBetween(t *testing.T) {
	r := sampleReport()
	tests := []struct {
		name     string
		from, to int // milliseconds from t0
		ids      []int
		broken   int
	}{
		{name: "first second", from: 0, to: 1000, ids: []int{1, 2, 3}, broken: 1},
		{name: "second second", from: 1000, to: 2000, ids: []int{1, 2, 3, 4, 5}, broken: 3},
		{name: "ended at the start is out", from: 4000, to: 5000, ids: []int{6, 7, 8, 9}, broken: 1},
		{name: "after the run", from: 5000, to: 6000, ids: nil, broken: 0},
		{name: "whole run", from: 0, to: 5000, ids: []int{1, 2, 3, 4, 5, 6, 7, 8, 9}, broken: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := r.Between(at(tt.from), at(tt.to))
			var ids []int
			for _, c := range b.Conns {
				ids = append(ids, c.ID)
			}
			diff(t, "connections", ids, tt.ids)
			if b.Broken != tt.broken || b.Total != len(tt.ids) {
				t.Errorf("%d broken of %d, want %d of %d", b.Broken, b.Total, tt.broken, len(tt.ids))
			}
			if !b.Start.Equal(at(tt.from)) || !b.End.Equal(at(tt.to)) || len(b.Series) != (tt.to-tt.from)/100 {
				t.Errorf("span %s to %s with %d buckets, want the window", b.Start, b.End, len(b.Series))
			}
			started := 0
			for _, s := range b.Series {
				started += s.Started
			}
			inside := 0
			for _, c := range b.Conns {
				if !c.Start.Before(at(tt.from)) {
					inside++
				}
			}
			if started != inside {
				t.Errorf("series counts %d starts, want the %d inside the window", started, inside)
			}
		})
	}
}

func TestReportText(t *testing.T) {
	tests := []struct {
		name   string
		report *Report
	}{
		{name: "report.txt", report: sampleReport()},
		{name: "quiet.txt", report: sampleReport().Between(at(5000), at(6000))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.report.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", tt.name), buf.Bytes())
		})
	}
}

func TestReportJSON(t *testing.T) {
	r := sampleReport()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "report.json"), buf.Bytes())
	var back Report
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("decode: %v", err)
	}
	diff(t, "report after a round trip", &back, r, addrs)

	buf.Reset()
	if err := r.WriteJSONLines(&buf); err != nil {
		t.Fatal(err)
	}
	var conns []Conn
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var c Conn
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("decode line %q: %v", sc.Text(), err)
		}
		conns = append(conns, c)
	}
	diff(t, "connections after a round trip", conns, r.Conns, addrs)
}

func TestReportEmpty(t *testing.T) {
	r := newReport(t0, t0, settings{readTimeout: time.Second, stallThreshold: 500 * time.Millisecond}, nil)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	diff(t, "empty report after a round trip", &back, r, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }))
	if err := r.WriteText(&buf); err != nil {
		t.Errorf("write empty report: %v", err)
	}
}
