package traffic

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/backend"
	"github.com/lab-lb/lab/internal/testenv"
)

// TestPacer checks the rate limiter of a request load on a fake clock:
// requests are due one interval apart from the worker's phase, whatever
// the time the worker wakes, and one due already is sent at once.
func TestPacer(t *testing.T) {
	p := newPacer(t0, 4, 100*time.Millisecond) // 4 a second: every 250 ms
	steps := []struct {
		now      time.Time
		due      time.Time
		wait     time.Duration
		scenario string
	}{
		{at(0), at(100), 100 * time.Millisecond, "first, after the phase"},
		{at(100), at(350), 250 * time.Millisecond, "on time"},
		{at(360), at(600), 240 * time.Millisecond, "woke 10 ms late: the next is still due on the grid"},
		{at(1500), at(850), 0, "a slow request held the worker: due already"},
		{at(1500), at(1100), 0, "still behind"},
		{at(1500), at(1350), 0, "still behind"},
		{at(1500), at(1600), 100 * time.Millisecond, "caught up"},
	}
	for i, s := range steps {
		due, wait := p.next(s.now)
		if !due.Equal(s.due) || wait != s.wait {
			t.Errorf("step %d (%s): due %s, wait %s; want due %s, wait %s", i, s.scenario,
				due.Sub(t0), wait, s.due.Sub(t0), s.wait)
		}
	}
	if got := interval(DefaultRate); got != 100*time.Millisecond {
		t.Errorf("interval at %d a second = %s, want 100ms", DefaultRate, got)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range v {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"median of four: the second", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 100: the 99th", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p90 of 100", ms(hundred...), 0.90, 90 * time.Millisecond},
		{"p99 of 10: the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
		{"max", ms(1, 5, 9), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.ds, tt.q); got != tt.want {
				t.Errorf("percentile(%v, %g) = %s, want %s", tt.ds, tt.q, got, tt.want)
			}
		})
	}
	st := latencyStats(ms(30, 10, 20))
	want := LatencyStats{Count: 3, Mean: 20 * time.Millisecond, StdDev: 8164965, P50: 20 * time.Millisecond,
		P90: 30 * time.Millisecond, P99: 30 * time.Millisecond, Max: 30 * time.Millisecond}
	diff(t, "stats", st, want)
}

// requestConns is a request load on a fake clock: 10 requests a second of
// 10 ms for 10 s, with an injection at 4 s after which requests fail
// (refused) until 4.5 s and are slow (300 ms) until 6.2 s.
func requestConns() []Conn {
	var cs []Conn
	for i := range 100 {
		due := at(i * 100)
		c := Conn{ID: i + 1, Start: due, Outcome: OutcomeOK, Status: 200, Latency: 10 * time.Millisecond}
		switch {
		case i >= 40 && i < 45:
			c.Outcome, c.Status, c.Err, c.Latency = OutcomeRefused, 0, "connect: refused", time.Millisecond
		case i >= 45 && i < 59:
			c.Latency = 300 * time.Millisecond
		}
		c.End = due.Add(c.Latency)
		cs = append(cs, c)
	}
	cs[99].Stopped, cs[99].End = true, at(10000) // cut by the end of the run
	return cs
}

func TestRequestReport(t *testing.T) {
	set := settings{mode: ModeRequests, readTimeout: 3 * time.Second, stallThreshold: time.Second, workers: 1, rate: 10}
	r := newReport(t0, at(10000), set, requestConns())
	q := r.Requests
	if q == nil {
		t.Fatal("no request figures in the report of a request load")
	}
	if q.Requests != 100 || q.Errors != 5 || q.ErrorRatio != 0.05 {
		t.Errorf("requests %d, errors %d, ratio %g; want 100, 5, 0.05", q.Requests, q.Errors, q.ErrorRatio)
	}
	if len(q.Seconds) != 10 {
		t.Fatalf("%d seconds, want 10", len(q.Seconds))
	}
	ms := time.Millisecond
	s4 := q.Seconds[4]
	want4 := RequestSecond{Offset: 4 * time.Second, Requests: 7, OK: 2, Errors: map[Outcome]int{OutcomeRefused: 5},
		P50: 300 * ms, P90: 300 * ms, P99: 300 * ms, Max: 300 * ms}
	diff(t, "second 4", s4, want4)
	if s := q.Seconds[2]; s.Requests != 10 || s.ErrorCount() != 0 || s.P99 != 10*ms {
		t.Errorf("second 2 = %+v, want 10 requests of 10 ms", s)
	}
	// The stopped request counts, but not its latency.
	if q.Latency.Count != 94 {
		t.Errorf("latency over %d requests, want the 94 that succeeded and were not stopped", q.Latency.Count)
	}
	if d := newReport(t0, at(10000), settings{mode: ModeDownloads}, requestConns()); d.Requests != nil {
		t.Error("a download load's report has request figures")
	}
	// Between keeps the mode and settings.
	if b := r.Between(at(4000), at(5000)); b.Requests == nil || b.Requests.Rate != 10 || b.Requests.Errors != 5 {
		t.Errorf("Between(4s, 5s).Requests = %+v, want 5 errors at rate 10", b.Requests)
	}
}

func TestRepairs(t *testing.T) {
	ms := time.Millisecond
	r := newReport(t0, at(10000), settings{mode: ModeRequests, workers: 1, rate: 10}, requestConns())
	tests := []struct {
		name  string
		inj   []Injection
		want  []RepairWindow
		bound time.Duration
	}{
		{
			name:  "repaired when the last slow request ended",
			inj:   []Injection{{Label: "kill lb7-1", At: at(4000)}},
			bound: 30 * ms, // 10 ms steady p99: + RepairSlack
			want: []RepairWindow{{Injection: Injection{Label: "kill lb7-1", At: at(4000)}, Errors: 5,
				Repaired: 2100 * ms}}, // request 58, due at 5.8 s, ended at 6.1 s
		},
		{
			name:  "a later injection that changed nothing",
			inj:   []Injection{{Label: "kill lb7-1", At: at(4000)}, {Label: "revive lb7-1", At: at(8000)}},
			bound: 30 * ms,
			want: []RepairWindow{
				{Injection: Injection{Label: "kill lb7-1", At: at(4000)}, Errors: 5, Repaired: 2100 * ms},
				{Injection: Injection{Label: "revive lb7-1", At: at(8000)}},
			},
		},
		{
			name:  "not repaired before the next injection",
			inj:   []Injection{{Label: "kill lb7-1", At: at(4000)}, {Label: "kill lb7-2", At: at(5500)}},
			bound: 30 * ms,
			want: []RepairWindow{
				{Injection: Injection{Label: "kill lb7-1", At: at(4000)}, Errors: 5, Repaired: 1400 * ms, Unrepaired: true}, // request 51 ended at 5.4 s
				{Injection: Injection{Label: "kill lb7-2", At: at(5500)}, Repaired: 600 * ms},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := r.Repairs(tt.inj)
			if rs.Bound != tt.bound || rs.Steady.P99 != 10*ms {
				t.Errorf("steady p99 %s, bound %s; want 10ms, %s", rs.Steady.P99, rs.Bound, tt.bound)
			}
			if len(rs.After) != len(tt.want) {
				t.Fatalf("%d windows, want %d", len(rs.After), len(tt.want))
			}
			for i := range tt.want {
				got := rs.After[i]
				got.Latency = LatencyStats{}
				diff(t, "window "+tt.want[i].Label, got, tt.want[i])
			}
		})
	}
	// A slow second once service has settled (RepairSettle seconds in a
	// row without a failed or slow request) is noise; before, it counts.
	slowAt := func(ids ...int) *Report {
		cs := requestConns()
		for _, i := range ids {
			cs[i].Latency = 300 * ms
			cs[i].End = cs[i].Start.Add(cs[i].Latency)
		}
		return newReport(t0, at(10000), settings{mode: ModeRequests, workers: 1, rate: 10}, cs)
	}
	// From 3.5 s: failed requests in the first second, slow ones in the
	// next two (until 6.1 s), then clean seconds from 6.5 s.
	kill := []Injection{{Label: "kill lb7-1", At: at(3500)}}
	for _, tt := range []struct {
		name     string
		slow     []int
		repaired time.Duration
		late     int
	}{
		{"slow after two clean seconds", []int{85, 86}, 5400 * ms, 0},      // 8.6 s + 300 ms
		{"slow after three clean seconds", []int{95, 96}, 2600 * ms, 1},    // noise; 6.1 s
		{"a lone slow request is no slow second", []int{85}, 2600 * ms, 0}, // minSlow
	} {
		w := slowAt(tt.slow...).Repairs(kill).After[0]
		if w.Repaired != tt.repaired || w.LateSlow != tt.late || w.Unrepaired {
			t.Errorf("%s: repaired %s, %d late slow seconds, unrepaired %v; want %s, %d, false",
				tt.name, w.Repaired, w.LateSlow, w.Unrepaired, tt.repaired, tt.late)
		}
	}
	if got := RepairBound(100 * ms); got != 200*ms {
		t.Errorf("RepairBound(100ms) = %s, want twice the p99", got)
	}
	if got := RepairBound(0); got != 0 {
		t.Errorf("RepairBound(0) = %s, want no bound", got)
	}
}

// TestRequestRun runs a request load against a local backend: each
// request a connection of its own without keep-alive, the client closing
// it; with keep-alive, each worker's connection reused. The pacing never
// sends faster than the rate.
func TestRequestRun(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "new connections"
		if keep {
			name = "keep-alive"
		}
		t.Run(name, func(t *testing.T) {
			be := &backend.Server{Name: "S1"}
			s := &seen{}
			addr := serveWith(t, s.server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Lab-LB7", "L1")
				be.Handler().ServeHTTP(w, r)
			})))
			const workers, rate = 3, 50.0
			r := startRun(t, Config{Mode: ModeRequests, Targets: []netip.AddrPort{addr}, Sources: sources(10, 12),
				Workers: workers, Rate: rate, KeepAlive: keep, Seed: 3})
			waitFinished(t, r, 60, 20*time.Second)
			rep := r.Stop()
			if rep.Mode != ModeRequests || rep.Requests == nil {
				t.Fatalf("mode %q, request figures %v: want a request report", rep.Mode, rep.Requests)
			}
			if rep.Broken != 0 || rep.Requests.Errors != 0 {
				t.Errorf("%d broken, %d errors, want none: %v", rep.Broken, rep.Requests.Errors, rep.ByOutcome)
			}
			span := rep.End.Sub(rep.Start).Seconds()
			if most := int(workers*rate*span) + workers; rep.Total > most {
				t.Errorf("%d requests in %.2fs, want at most %d at %g a second per worker", rep.Total, span, most, rate)
			}
			reused := 0
			for _, c := range rep.Conns {
				if c.Outcome == OutcomeOK && !c.Stopped && (c.Latency <= 0 || c.LB7 != "L1" || c.Server != "S1") {
					t.Errorf("request %d: latency %s, LB7 %q, server %q", c.ID, c.Latency, c.LB7, c.Server)
				}
				if c.Reused {
					reused++
				}
			}
			s.mu.Lock()
			conns := len(s.requests)
			s.mu.Unlock()
			if !keep && (reused != 0 || conns < rep.Total-rep.Stopped) {
				t.Errorf("%d TCP connections for %d requests, %d reused; want one each", conns, rep.Total, reused)
			}
			// A request due while the worker's connections are all busy
			// opens another one (open loop): how many depends on the
			// machine's speed, but fewer than one per request.
			if keep && (reused == 0 || conns+reused > rep.Total || conns >= rep.Total) {
				t.Errorf("%d TCP connections for %d requests, %d reused; want them reused", conns, rep.Total, reused)
			}
			if rep.Requests.Latency.Count == 0 || rep.Requests.Latency.P99 <= 0 {
				t.Errorf("latency %+v, want figures", rep.Requests.Latency)
			}
			if p := r.Snapshot(); len(p.Seconds) == 0 || p.Seconds[0].P50 <= 0 {
				t.Errorf("live seconds %+v, want p50 in the first", p.Seconds)
			}
		})
	}
}

// TestRequestReportText checks the text of a request load's report and of
// its repairs, and that the report survives a JSON round trip.
func TestRequestReportText(t *testing.T) {
	r := newReport(t0, at(10000), settings{mode: ModeRequests, readTimeout: 3 * time.Second, workers: 1, rate: 10}, requestConns())
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "requests.txt"), buf.Bytes())

	buf.Reset()
	rs := r.Repairs([]Injection{{Label: "kill lb7-1", At: at(4000)}, {Label: "revive lb7-1", At: at(8000)}})
	if err := rs.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "repairs.txt"), buf.Bytes())

	buf.Reset()
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.NewDecoder(&buf).Decode(&back); err != nil {
		t.Fatalf("decode: %v", err)
	}
	diff(t, "report after a round trip", &back, r, addrs)
}

// TestRepairsOutlier checks that one slow request in a second of fewer
// than 100 (whose p99 is then that request) does not count as degraded
// service, while two do.
func TestRepairsOutlier(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		slow []int // requests (of 40 a second) that take 200 ms, 1 s after the injection
		want time.Duration
	}{
		{nil, 0},
		{[]int{800}, 0},
		{[]int{800, 805}, 20125*ms + 200*ms - 19*time.Second}, // request 805 ends last, at 20.325 s
	} {
		var cs []Conn
		for i := range 1000 { // 25 s at 40 a second
			c := Conn{ID: i + 1, Start: at(i * 25), Outcome: OutcomeOK, Latency: 10 * ms}
			if slices.Contains(tt.slow, i) {
				c.Latency = 200 * ms
			}
			c.End = c.Start.Add(c.Latency)
			cs = append(cs, c)
		}
		r := newReport(t0, at(25000), settings{mode: ModeRequests, workers: 10, rate: 4}, cs)
		got := r.Repairs([]Injection{{Label: "kill", At: at(19000)}}).After[0].Repaired
		if got != tt.want {
			t.Errorf("slow requests %v: repaired after %s, want %s", tt.slow, got, tt.want)
		}
	}
}
