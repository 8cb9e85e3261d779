package traffic

import (
	"math"
	"slices"
	"time"
)

// RequestReport is what a request load (ModeRequests) measured: errors and
// latency per second, and over the run. Latency figures are those of the
// requests that succeeded (a failed request's time says how it failed, not
// how fast the service was); requests cut by the end of the run are left
// out of them.
type RequestReport struct {
	// Workers, Rate (requests a second per worker) and KeepAlive are the
	// run's settings.
	Workers   int     `json:"workers"`
	Rate      float64 `json:"rate"`
	KeepAlive bool    `json:"keepalive,omitempty"`
	// Requests counts the requests; Errors those that failed (every outcome
	// but ok, failed lookups included: the user got no page).
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	ErrorRatio float64 `json:"error_ratio"`
	// Latency is the latency of the successful requests.
	Latency LatencyStats `json:"latency"`
	// Seconds holds the requests that ended in each second from the start.
	Seconds []RequestSecond `json:"seconds"`
}

// RequestSecond is one second of a request load.
type RequestSecond struct {
	// Offset is the second's start, from the report's start.
	Offset time.Duration `json:"offset_ns"`
	// Requests counts the requests that ended in the second, OK those that
	// succeeded, and Errors the others by outcome.
	Requests int             `json:"requests"`
	OK       int             `json:"ok"`
	Errors   map[Outcome]int `json:"errors,omitempty"`
	// P50, P90, P99 and Max are the latencies of the successful requests.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// ErrorCount returns the requests of the second that failed.
func (s RequestSecond) ErrorCount() int { return s.Requests - s.OK }

// LatencyStats summarises latencies.
type LatencyStats struct {
	Count  int           `json:"count"`
	Mean   time.Duration `json:"mean_ns"`
	StdDev time.Duration `json:"stddev_ns"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

// latencyStats summarises ds, which it sorts.
func latencyStats(ds []time.Duration) LatencyStats {
	if len(ds) == 0 {
		return LatencyStats{}
	}
	slices.Sort(ds)
	var sum float64
	for _, d := range ds {
		sum += float64(d)
	}
	mean := sum / float64(len(ds))
	var sq float64
	for _, d := range ds {
		sq += (float64(d) - mean) * (float64(d) - mean)
	}
	return LatencyStats{
		Count:  len(ds),
		Mean:   time.Duration(mean),
		StdDev: time.Duration(math.Sqrt(sq / float64(len(ds)))),
		P50:    percentile(ds, 0.50),
		P90:    percentile(ds, 0.90),
		P99:    percentile(ds, 0.99),
		Max:    ds[len(ds)-1],
	}
}

// percentile returns the q-quantile (0 < q <= 1) of sorted by the nearest
// rank: the smallest value that at least q of the values do not exceed;
// 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// succeeded reports whether c is a request whose latency counts: it ended
// well and was not cut by the end of the run.
func succeeded(c *Conn) bool { return c.Outcome == OutcomeOK && !c.Stopped }

// newRequestReport computes the request figures of conns over [start, end].
func newRequestReport(start, end time.Time, set settings, conns []Conn) *RequestReport {
	q := &RequestReport{Workers: set.workers, Rate: set.rate, KeepAlive: set.keepAlive, Seconds: []RequestSecond{}}
	n := 0
	if span := end.Sub(start); span > 0 {
		n = int((span + time.Second - 1) / time.Second)
	}
	lat := make([][]time.Duration, n)
	q.Seconds = make([]RequestSecond, n)
	for i := range q.Seconds {
		q.Seconds[i].Offset = time.Duration(i) * time.Second
	}
	var all []time.Duration
	for i := range conns {
		c := &conns[i]
		q.Requests++
		if c.Outcome != OutcomeOK {
			q.Errors++
		}
		if succeeded(c) {
			all = append(all, c.Latency)
		}
		if n == 0 || c.End.Before(start) || c.End.After(end) {
			continue
		}
		j := min(int(c.End.Sub(start)/time.Second), n-1)
		s := &q.Seconds[j]
		s.Requests++
		switch {
		case c.Outcome == OutcomeOK:
			s.OK++
			if succeeded(c) {
				lat[j] = append(lat[j], c.Latency)
			}
		default:
			if s.Errors == nil {
				s.Errors = map[Outcome]int{}
			}
			s.Errors[c.Outcome]++
		}
	}
	for j := range q.Seconds {
		st := latencyStats(lat[j])
		q.Seconds[j].P50, q.Seconds[j].P90, q.Seconds[j].P99, q.Seconds[j].Max = st.P50, st.P90, st.P99, st.Max
	}
	if q.Requests > 0 {
		q.ErrorRatio = float64(q.Errors) / float64(q.Requests)
	}
	q.Latency = latencyStats(all)
	return q
}

// Injection is a change made during a load: a scenario's step, or a kill
// seen in the lab's event log.
type Injection struct {
	Label string    `json:"label"`
	At    time.Time `json:"at"`
}

// The bound within which latency counts as repaired: RepairFactor times
// the steady p99, and at least RepairSlack above it (a steady p99 of a few
// milliseconds doubles on any scheduling hiccup).
const (
	RepairFactor = 2
	RepairSlack  = 20 * time.Millisecond
	// SteadyWarmup is the start of a run left out of the steady state:
	// first connections, cold caches.
	SteadyWarmup = time.Second
)

// minSlow is the fewest requests over the bound that make a second slow.
// Below 100 requests a second the p99 of a second is its slowest request,
// and one outlier (a scheduling hiccup) would count as degraded service;
// from 100 on, a p99 over the bound already means two requests or more.
const minSlow = 2

// RepairSettle is how many seconds in a row, with requests and neither a
// failed nor a slow one, settle service after an injection. A slow second
// after that is the machine's noise (a stall of the VM seconds later), not
// the injection's doing, and does not move the time to repair; a failed
// request always does.
const RepairSettle = 3

// RepairBound returns the latency bound for a steady p99; 0 (no bound:
// errors alone decide) when there is no steady p99.
func RepairBound(steadyP99 time.Duration) time.Duration {
	if steadyP99 <= 0 {
		return 0
	}
	return max(RepairFactor*steadyP99, steadyP99+RepairSlack)
}

// Repairs is how a request load fared around its injections.
type Repairs struct {
	// Steady is the latency of the successful requests that ended after
	// the warm-up and before the first injection (over the whole run when
	// there is none), and Bound the latency bound derived from its p99.
	Steady LatencyStats   `json:"steady"`
	Bound  time.Duration  `json:"bound_ns"`
	After  []RepairWindow `json:"after"`
}

// RepairWindow is what happened after one injection, until the next one
// or the end of the run: which requests failed, how latency moved, and
// when service was repaired.
type RepairWindow struct {
	Injection
	// Errors counts the requests that ended in the window and failed.
	Errors int `json:"errors"`
	// Latency is that of the window's successful requests.
	Latency LatencyStats `json:"latency"`
	// Repaired is the time to repair: from the injection to the end of the
	// last request that failed, or that took longer than the bound in a
	// slow second (counted from the injection: its p99 exceeded the bound,
	// with two requests or more over it, see minSlow) before service
	// settled (RepairSettle). 0 when service never degraded.
	Repaired time.Duration `json:"repaired_ns"`
	// Unrepaired is set when the window's last second was still degraded:
	// service was not repaired before the next injection or the end.
	Unrepaired bool `json:"unrepaired,omitempty"`
	// LateSlow counts the slow seconds after service had settled, which
	// Repaired leaves out.
	LateSlow int `json:"late_slow_seconds,omitempty"`
}

// Repairs computes the time to repair after each injection, which must be
// in time order, over the requests of a request load.
func (r *Report) Repairs(injections []Injection) Repairs {
	var rs Repairs
	steadyEnd := r.End
	if len(injections) > 0 {
		steadyEnd = injections[0].At
	}
	var steady []time.Duration
	warm := r.Start.Add(SteadyWarmup)
	for i := range r.Conns {
		c := &r.Conns[i]
		if succeeded(c) && !c.End.Before(warm) && c.End.Before(steadyEnd) {
			steady = append(steady, c.Latency)
		}
	}
	rs.Steady = latencyStats(steady)
	rs.Bound = RepairBound(rs.Steady.P99)
	for i, inj := range injections {
		to := r.End
		if i+1 < len(injections) {
			to = injections[i+1].At
		}
		rs.After = append(rs.After, r.repairWindow(inj, to, rs.Bound))
	}
	return rs
}

// repairWindow computes the window of inj, which ends at to.
func (r *Report) repairWindow(inj Injection, to time.Time, bound time.Duration) RepairWindow {
	w := RepairWindow{Injection: inj}
	if !to.After(inj.At) {
		return w
	}
	n := int((to.Sub(inj.At) + time.Second - 1) / time.Second)
	type second struct {
		lat      []time.Duration
		degraded bool
		// lastBad is the end of the last failed request and lastSlow that
		// of the last request slower than the bound, of which there are
		// slowCount.
		lastBad, lastSlow time.Time
		slowCount         int
	}
	secs := make([]second, n)
	var all []time.Duration
	for i := range r.Conns {
		c := &r.Conns[i]
		if c.End.Before(inj.At) || !c.End.Before(to) {
			continue
		}
		s := &secs[int(c.End.Sub(inj.At)/time.Second)]
		switch {
		case c.Outcome != OutcomeOK:
			w.Errors++
			s.degraded = true
			s.lastBad = later(s.lastBad, c.End)
		case succeeded(c):
			s.lat = append(s.lat, c.Latency)
			all = append(all, c.Latency)
			if bound > 0 && c.Latency > bound {
				s.lastSlow = later(s.lastSlow, c.End)
				s.slowCount++
			}
		}
	}
	w.Latency = latencyStats(all)
	var end time.Time // of the degradation counted so far
	good := 0         // seconds in a row that were neither failed nor slow
	for j := range secs {
		s := &secs[j]
		slow := bound > 0 && s.slowCount >= minSlow && latencyStats(s.lat).P99 > bound
		switch {
		case s.degraded:
			end = later(end, s.lastBad)
			if slow && good < RepairSettle {
				end = later(end, s.lastSlow)
			}
		case slow && good >= RepairSettle:
			w.LateSlow++
			continue
		case slow:
			end = later(end, s.lastSlow)
		default:
			if len(s.lat) > 0 {
				good++
			}
			continue
		}
		good = 0
		w.Unrepaired = j == n-1
	}
	if !end.IsZero() {
		w.Repaired = end.Sub(inj.At)
	}
	return w
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Summarize returns the statistics of ds, which it sorts.
func Summarize(ds []time.Duration) LatencyStats { return latencyStats(ds) }
