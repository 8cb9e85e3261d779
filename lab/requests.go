package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/lab-lb/lab/internal/traffic"
)

// RequestReport is what a request load (LoadRequests) measured: errors
// and latency per second, and over the run. Latency figures are those of
// the requests that succeeded; requests cut by Load.Stop are left out of
// them.
type RequestReport struct {
	// Workers, Rate (requests a second per worker) and KeepAlive are the
	// load's settings.
	Workers   int     `json:"workers"`
	Rate      float64 `json:"rate"`
	KeepAlive bool    `json:"keepalive,omitempty"`
	// Requests counts the requests; Errors those that failed (every
	// outcome but ok, failed lookups included).
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	ErrorRatio float64 `json:"error_ratio"`
	// Latency is that of the successful requests.
	Latency LatencyStats `json:"latency"`
	// Seconds holds the requests that ended in each second from the start.
	Seconds []RequestSecond `json:"seconds"`
}

// RequestSecond is one second of a request load.
type RequestSecond struct {
	// Offset is the second's start, from Report.Start.
	Offset time.Duration `json:"offset_ns"`
	// Requests counts the requests that ended in the second, OK those
	// that succeeded, Errors the others by outcome.
	Requests int             `json:"requests"`
	OK       int             `json:"ok"`
	Errors   map[Outcome]int `json:"errors,omitempty"`
	// P50, P90, P99 and Max are the latencies of the successful requests.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// LatencyStats summarises latencies.
type LatencyStats struct {
	// Count is the number of latencies; the others their figures.
	Count  int           `json:"count"`
	Mean   time.Duration `json:"mean_ns"`
	StdDev time.Duration `json:"stddev_ns"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Injection is a failure injected during a load: a scenario's step, or a
// kill seen in the lab's event log.
type Injection struct {
	// Label names it, such as "kill lb7-2"; At is when it began.
	Label string    `json:"label"`
	At    time.Time `json:"at"`
}

// Repairs is how a request load fared around its injections.
type Repairs struct {
	// Steady is the latency of the successful requests that ended after
	// the first second and before the first injection (over the whole run
	// when there was none), and Bound the latency within which service
	// counts as repaired: twice the steady p99, 20 ms above it at least.
	Steady LatencyStats  `json:"steady"`
	Bound  time.Duration `json:"bound_ns"`
	// After holds one window per injection.
	After []RepairWindow `json:"after"`
}

// RepairWindow is what happened after one injection, until the next one
// or the end of the load.
type RepairWindow struct {
	Injection
	// Errors counts the requests that ended in the window and failed.
	Errors int `json:"errors"`
	// Latency is that of the window's successful requests.
	Latency LatencyStats `json:"latency"`
	// Repaired is the time to repair: from the injection to the end of the
	// last request that failed, or that was slower than Repairs.Bound in a
	// second whose p99 was (with two such requests or more), before three
	// clean seconds in a row settled service. 0 when service never
	// degraded.
	Repaired time.Duration `json:"repaired_ns"`
	// Unrepaired is set when the window's last second was still degraded.
	Unrepaired bool `json:"unrepaired,omitempty"`
	// LateSlow counts the slow seconds after service had settled: a stall
	// of the machine seconds later, which Repaired leaves out.
	LateSlow int `json:"late_slow_seconds,omitempty"`
}

// Repairs computes the time to repair after each injection (in time
// order) over the requests of a request load.
func (r *Report) Repairs(injections []Injection) (*Repairs, error) {
	t, err := r.traffic()
	if err != nil {
		return nil, err
	}
	inj := convert(injections, func(i Injection) traffic.Injection { return traffic.Injection(i) })
	return repairsFrom(t.Repairs(inj)), nil
}

// WriteText writes the repairs as `lab load --requests` prints them:
// latency against the steady part, errors and time to repair.
func (rs *Repairs) WriteText(w io.Writer) error {
	b, err := json.Marshal(rs)
	if err != nil {
		return fmt.Errorf("encode repairs: %w", err)
	}
	var t traffic.Repairs
	if err := json.Unmarshal(b, &t); err != nil {
		return fmt.Errorf("decode repairs: %w", err)
	}
	return t.WriteText(w)
}

// requestsFrom is the public form of a request load's figures.
func requestsFrom(q *traffic.RequestReport) *RequestReport {
	if q == nil {
		return nil
	}
	return &RequestReport{
		Workers: q.Workers, Rate: q.Rate, KeepAlive: q.KeepAlive, Requests: q.Requests, Errors: q.Errors,
		ErrorRatio: q.ErrorRatio, Latency: LatencyStats(q.Latency),
		Seconds: convert(q.Seconds, func(s traffic.RequestSecond) RequestSecond {
			return RequestSecond{
				Offset: s.Offset, Requests: s.Requests, OK: s.OK,
				Errors: convertKeys(s.Errors, func(o traffic.Outcome) Outcome { return Outcome(o) }),
				P50:    s.P50, P90: s.P90, P99: s.P99, Max: s.Max,
			}
		}),
	}
}

// repairsOf is repairsFrom of rs, nil when there are none.
func repairsOf(rs *traffic.Repairs) *Repairs {
	if rs == nil {
		return nil
	}
	return repairsFrom(*rs)
}

// repairsFrom is the public form of a request load's repairs.
func repairsFrom(rs traffic.Repairs) *Repairs {
	return &Repairs{
		Steady: LatencyStats(rs.Steady), Bound: rs.Bound,
		After: convert(rs.After, func(w traffic.RepairWindow) RepairWindow {
			return RepairWindow{Injection: Injection(w.Injection), Errors: w.Errors, Latency: LatencyStats(w.Latency),
				Repaired: w.Repaired, Unrepaired: w.Unrepaired, LateSlow: w.LateSlow}
		}),
	}
}
