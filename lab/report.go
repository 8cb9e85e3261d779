package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/chart"
	"github.com/lab-lb/lab/internal/traffic"
)

// Outcome is how a connection of a load ended.
type Outcome string

// The outcomes. Every outcome but OutcomeOK and OutcomeDNS is a broken
// connection.
const (
	OutcomeOK        Outcome = "ok"
	OutcomeReset     Outcome = "reset"
	OutcomeRefused   Outcome = "refused"
	OutcomeTimeout   Outcome = "timeout"
	OutcomeBadStatus Outcome = "bad-status"
	// OutcomeExhausted: no local port was free for a new connection from
	// the source address: the client opened connections faster than
	// TIME_WAIT freed their ports.
	OutcomeExhausted Outcome = "exhausted"
	OutcomeError     Outcome = "error"
	// OutcomeDNS: the service name did not resolve, so no connection was
	// tried. It is counted apart: not broken, not a success.
	OutcomeDNS Outcome = "dns"
)

// Broken reports whether o is a broken connection: one that was tried
// and failed.
func (o Outcome) Broken() bool { return traffic.Outcome(o).Broken() }

// SeriesStep is the width of one step of Report.Series.
const SeriesStep = 100 * time.Millisecond

// Report is the result of a load (Load.Stop): the totals, the counts per
// outcome, LB7 and backend, the distribution of stalls, a series in steps
// of SeriesStep, and every connection; ByTarget counts per VIP. It
// marshals to the JSON `lab load -o json` prints.
type Report struct {
	// Mode is the kind of load.
	Mode LoadMode `json:"mode,omitempty"`
	// Start and End bound the load.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// ReadTimeout and StallThreshold are the load's settings, which define
	// timeouts and interrupted connections.
	ReadTimeout    time.Duration `json:"read_timeout_ns"`
	StallThreshold time.Duration `json:"stall_threshold_ns"`
	// Total counts the connections; OK the ones that ended well (including
	// Interrupted and Stopped ones), DNSFailed the service-name lookups
	// that failed (no connection tried), Broken the others.
	Total     int `json:"total"`
	OK        int `json:"ok"`
	Broken    int `json:"broken"`
	DNSFailed int `json:"dns_failed"`
	// Fallbacks counts the addresses of service names that failed to
	// connect before another one did, or before the client gave up.
	Fallbacks int `json:"fallbacks"`
	// Interrupted counts the connections that ended well after a stall
	// longer than StallThreshold; Stopped those cut by Load.Stop.
	Interrupted int `json:"interrupted"`
	Stopped     int `json:"stopped"`
	// ByOutcome counts the connections per outcome; every outcome is
	// present.
	ByOutcome map[Outcome]int `json:"by_outcome"`
	// Stalls is the distribution of the longest wait for data over the
	// connections that received a response header.
	Stalls []StallBucket `json:"stalls"`
	// Series counts, per SeriesStep from Start, the connections started
	// and those that finished in that step.
	Series []SeriesBucket `json:"series"`
	// ByLB7 and ByServer count the connections per LB7 and backend that
	// served them (from the X-Lab-LB7 and X-Lab-Server headers).
	ByLB7    map[string]int `json:"by_lb7"`
	ByServer map[string]int `json:"by_server"`
	// CPUBusy is the share of the machine's CPU time spent busy during the
	// load, from 0 to 1; 0 when unknown. Above about 0.9, stalls may be the
	// machine's doing, not the lab's.
	CPUBusy float64 `json:"cpu_busy,omitempty"`
	// Requests holds the figures of a request load; nil for downloads.
	Requests *RequestReport `json:"requests,omitempty"`
	// Conns holds every connection, in the order they started.
	Conns []Conn `json:"conns"`
}

// StallBucket counts the connections whose longest stall d was
// Min <= d < Max.
type StallBucket struct {
	// Min is the bucket's lower bound, Count its connections.
	Min time.Duration `json:"min_ns"`
	// Max is 0 for the last bucket, which has no upper bound.
	Max   time.Duration `json:"max_ns,omitempty"`
	Count int           `json:"count"`
}

// SeriesBucket is one step of Report.Series.
type SeriesBucket struct {
	// Offset is the step's start, from Report.Start.
	Offset time.Duration `json:"offset_ns"`
	// Started counts the connections started in the step; the others
	// those that finished in it, by how.
	Started     int `json:"started"`
	OK          int `json:"ok"`
	Broken      int `json:"broken"`
	Interrupted int `json:"interrupted"`
	DNSFailed   int `json:"dns_failed,omitempty"`
}

// Conn is the record of one connection (one request) of a load.
type Conn struct {
	// ID numbers the connections of a load from 1.
	ID int `json:"id"`
	// Source and SourcePort are the client's end, Target the VIP's.
	Source     netip.Addr     `json:"source"`
	SourcePort uint16         `json:"source_port"`
	Target     netip.AddrPort `json:"target"`
	// Name is the service name looked up to find Target, for a target
	// given by name; Target is then invalid when the lookup failed.
	Name string `json:"name,omitempty"`
	// Fallbacks counts the addresses of Name that failed to connect
	// before Target.
	Fallbacks int `json:"fallbacks,omitempty"`
	// LB7 and Server served the connection (from the X-Lab-LB7 and
	// X-Lab-Server headers).
	LB7    string `json:"lb7,omitempty"`
	Server string `json:"server,omitempty"`
	// Status is the HTTP status code, 0 when no response header arrived.
	Status int `json:"status,omitempty"`
	// Start and End bound the connection.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Bytes counts the body bytes received.
	Bytes int64 `json:"bytes"`
	// LongestStall is the longest time the client waited for data.
	LongestStall time.Duration `json:"longest_stall_ns"`
	// Outcome is how it ended, and Err the error, if any.
	Outcome Outcome `json:"outcome"`
	Err     string  `json:"err,omitempty"`
	// Interrupted is set on a connection that ended well although it once
	// waited longer than the stall threshold.
	Interrupted bool `json:"interrupted,omitempty"`
	// Stopped is set on a connection cut by Load.Stop, which counts as
	// ok.
	Stopped bool `json:"stopped,omitempty"`
	// Latency is, for a request, the time from when it was due to its
	// end; Reused is set on a request sent on a kept connection.
	Latency time.Duration `json:"latency_ns,omitempty"`
	Reused  bool          `json:"reused,omitempty"`
}

// Counts are connections counted by how they ended.
type Counts struct {
	// Total counts every connection; OK those that ended well
	// (Interrupted ones included), Broken the others, DNSFailed the
	// lookups that failed.
	Total, OK, Broken, Interrupted, DNSFailed int
}

// ByTarget counts the connections per target (a VIP's address and
// port, as VIP.AddrPort has it). Failed lookups of a service name count
// under the zero netip.AddrPort.
func (r *Report) ByTarget() map[netip.AddrPort]Counts {
	out := map[netip.AddrPort]Counts{}
	for _, c := range r.Conns {
		n := out[c.Target]
		n.Total++
		switch {
		case c.Outcome == OutcomeDNS:
			n.DNSFailed++
		case c.Outcome.Broken():
			n.Broken++
		default:
			n.OK++
			if c.Interrupted {
				n.Interrupted++
			}
		}
		out[c.Target] = n
	}
	return out
}

// WriteText writes the report as `lab load` prints it: totals, outcomes,
// stalls, the figures per target, LB7 and backend, the seconds with
// broken connections and the first broken connections.
func (r *Report) WriteText(w io.Writer) error {
	t, err := r.traffic()
	if err != nil {
		return err
	}
	return t.WriteText(w)
}

// WriteJSONLines writes one JSON object per connection, one per line, as
// `lab load --jsonl` does.
func (r *Report) WriteJSONLines(w io.Writer) error {
	t, err := r.traffic()
	if err != nil {
		return err
	}
	return t.WriteJSONLines(w)
}

// WritePNG draws the load's timeline with title as a PNG image: per
// second, the connections started and those that ended ok, interrupted,
// broken or failed at the DNS lookup (`lab load --png`).
func (r *Report) WritePNG(w io.Writer, title string) error {
	return r.writeChart(w, title, chart.PNG)
}

// WriteSVG draws the timeline of WritePNG as an SVG image.
func (r *Report) WriteSVG(w io.Writer, title string) error {
	return r.writeChart(w, title, chart.SVG)
}

func (r *Report) writeChart(w io.Writer, title string, f chart.Format) error {
	t, err := r.traffic()
	if err != nil {
		return err
	}
	return chart.ReportTimeline(title, t).Write(w, f)
}

// traffic is r in the load engine's form, for its writers. Both forms
// marshal to the same JSON (a test holds them to it), which is the way
// back.
func (r *Report) traffic() (*traffic.Report, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	var t traffic.Report
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	return &t, nil
}

// reportFrom is the public form of a load's report. A field added to
// traffic.Report is added here and to Report (TestReportFromCarriesEveryField
// says when one is missing).
func reportFrom(r *traffic.Report) *Report {
	if r == nil {
		return nil
	}
	return &Report{
		Mode:  LoadMode(r.Mode),
		Start: r.Start, End: r.End, ReadTimeout: r.ReadTimeout, StallThreshold: r.StallThreshold,
		Total: r.Total, OK: r.OK, Broken: r.Broken, DNSFailed: r.DNSFailed, Fallbacks: r.Fallbacks,
		Interrupted: r.Interrupted, Stopped: r.Stopped,
		ByOutcome: convertKeys(r.ByOutcome, func(o traffic.Outcome) Outcome { return Outcome(o) }),
		Stalls:    convert(r.Stalls, func(b traffic.HistogramBucket) StallBucket { return StallBucket(b) }),
		Series:    convert(r.Series, func(b traffic.Bucket) SeriesBucket { return SeriesBucket(b) }),
		ByLB7:     r.ByLB7, ByServer: r.ByServer, CPUBusy: r.CPUBusy, Requests: requestsFrom(r.Requests),
		Conns: convert(r.Conns, func(c traffic.Conn) Conn {
			return Conn{
				ID: c.ID, Source: c.Source, SourcePort: c.SourcePort, Target: c.Target, Name: c.Name,
				Fallbacks: c.Fallbacks, LB7: c.LB7, Server: c.Server, Status: c.Status,
				Start: c.Start, End: c.End, Bytes: c.Bytes, LongestStall: c.LongestStall,
				Outcome: Outcome(c.Outcome), Err: c.Err, Interrupted: c.Interrupted, Stopped: c.Stopped,
				Latency: c.Latency, Reused: c.Reused,
			}
		}),
	}
}

// LoadProgress is a live view of a load (Load.Progress). (Progress names
// the steps of a bring-up.)
type LoadProgress struct {
	// Elapsed is the time since the load started.
	Elapsed time.Duration
	// Started counts connections started, Active those in progress, the
	// others those finished. Interrupted ones are also counted as OK.
	Started, Active, OK, Broken, Interrupted int
	// DNSFailed counts the lookups of a service name that failed.
	DNSFailed int
	// Seconds holds the same figures per second since the start: the
	// connections started, and finished ok, broken or interrupted, in that
	// second. A quiet second at the end may have no entry.
	Seconds []LoadSecond
	// ByTarget holds the same seconds per target (a VIP's address:port),
	// without the connections started, which have no target yet.
	ByTarget map[string][]LoadSecond
}

// LoadSecond is one second of LoadProgress.Seconds.
type LoadSecond struct {
	// Started counts the connections started in the second; OK, Broken
	// and Interrupted those that finished in it, by how; DNSFailed the
	// lookups that failed in it.
	Started, OK, Broken, Interrupted, DNSFailed int
	// P50 and P99 are the latencies of a request load's requests that
	// succeeded in the second.
	P50, P99 time.Duration
}

// LastSecond returns the figures of the last complete second of p: the
// second before the one in progress at p.Elapsed. It reports false during
// the first second, when no second is complete yet.
func (p *LoadProgress) LastSecond() (LoadSecond, bool) {
	t := traffic.Progress{Elapsed: p.Elapsed, Seconds: convert(p.Seconds, func(s LoadSecond) traffic.Second { return traffic.Second(s) })}
	s, ok := t.LastSecond()
	return LoadSecond(s), ok
}

// progressFrom is the public form of a load's progress.
func progressFrom(p traffic.Progress) *LoadProgress {
	lp := &LoadProgress{
		Elapsed: p.Elapsed, Started: p.Started, Active: p.Active, OK: p.OK, Broken: p.Broken,
		Interrupted: p.Interrupted, DNSFailed: p.DNSFailed,
		Seconds: convert(p.Seconds, func(s traffic.Second) LoadSecond { return LoadSecond(s) }),
	}
	if p.ByTarget != nil {
		lp.ByTarget = make(map[string][]LoadSecond, len(p.ByTarget))
		for k, v := range p.ByTarget {
			lp.ByTarget[k] = convert(v, func(s traffic.Second) LoadSecond { return LoadSecond(s) })
		}
	}
	return lp
}

// convertKeys maps f over the keys of m, keeping nil apart from empty.
func convertKeys[K, L comparable, V any](m map[K]V, f func(K) L) map[L]V {
	if m == nil {
		return nil
	}
	out := make(map[L]V, len(m))
	for k, v := range m {
		out[f(k)] = v
	}
	return out
}
