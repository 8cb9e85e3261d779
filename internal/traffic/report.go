package traffic

import (
	"time"
)

// SeriesStep is the width of one Report.Series bucket.
const SeriesStep = 100 * time.Millisecond

// Report is the result of a run, or of a part of it (Between).
type Report struct {
	// Mode is the kind of load; empty in reports of downloads made before
	// there was a request mode.
	Mode  Mode      `json:"mode,omitempty"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// ReadTimeout and StallThreshold are the run's settings, which define
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
	Fallbacks   int `json:"fallbacks"`
	Interrupted int `json:"interrupted"`
	Stopped     int `json:"stopped"`
	// ByOutcome counts the connections per outcome; every outcome is
	// present.
	ByOutcome map[Outcome]int `json:"by_outcome"`
	// Stalls is the distribution of LongestStall over the connections that
	// received a response header.
	Stalls Histogram `json:"stalls"`
	// Series counts, per SeriesStep from Start, the connections started and
	// the ones that finished (ok, broken, interrupted) in that step.
	Series []Bucket `json:"series"`
	// ByLB7 and ByServer count the connections per X-Lab-LB7 and
	// X-Lab-Server header; connections without the header are left out.
	ByLB7    map[string]int `json:"by_lb7"`
	ByServer map[string]int `json:"by_server"`
	// CPUBusy is the share of the machine's CPU time (every CPU, from
	// /proc/stat; in VM mode the VM's) spent busy during the load, from 0
	// to 1; 0 when unknown. Above about 0.9, stalls may be the machine's
	// doing, not the lab's.
	CPUBusy float64 `json:"cpu_busy,omitempty"`
	// Requests holds the figures of a request load (Mode ModeRequests):
	// latency and errors per second, and over the run.
	Requests *RequestReport `json:"requests,omitempty"`
	// Conns holds every connection (every request of a request load), in
	// the order they started.
	Conns []Conn `json:"conns"`
}

// settings are what a report keeps of its run's configuration.
type settings struct {
	mode                        Mode
	readTimeout, stallThreshold time.Duration
	workers                     int
	rate                        float64
	keepAlive                   bool
}

// settings returns the settings of r's run.
func (r *Run) settings() settings {
	c := &r.cfg
	return settings{mode: c.Mode, readTimeout: c.ReadTimeout, stallThreshold: c.StallThreshold,
		workers: c.Workers, rate: c.Rate, keepAlive: c.KeepAlive}
}

// settings returns the settings of the run r reports on.
func (r *Report) settings() settings {
	s := settings{mode: r.Mode, readTimeout: r.ReadTimeout, stallThreshold: r.StallThreshold}
	if q := r.Requests; q != nil {
		s.workers, s.rate, s.keepAlive = q.Workers, q.Rate, q.KeepAlive
	}
	return s
}

// Histogram is a distribution of durations.
type Histogram []HistogramBucket

// HistogramBucket counts the durations d with Min <= d < Max.
type HistogramBucket struct {
	Min time.Duration `json:"min_ns"`
	// Max is 0 for the last bucket, which has no upper bound.
	Max   time.Duration `json:"max_ns,omitempty"`
	Count int           `json:"count"`
}

// Label names the bucket, such as "<100ms", "100ms-250ms" or ">=3s".
func (b HistogramBucket) Label() string {
	switch {
	case b.Max == 0:
		return ">=" + b.Min.String()
	case b.Min == 0:
		return "<" + b.Max.String()
	default:
		return b.Min.String() + "-" + b.Max.String()
	}
}

// Bucket is one step of Report.Series.
type Bucket struct {
	// Offset is the bucket's start, from Report.Start.
	Offset      time.Duration `json:"offset_ns"`
	Started     int           `json:"started"`
	OK          int           `json:"ok"`
	Broken      int           `json:"broken"`
	Interrupted int           `json:"interrupted"`
	DNSFailed   int           `json:"dns_failed,omitempty"`
}

// newStalls returns the empty stall histogram: <100ms, <250ms, <500ms,
// <1s, <2s, <3s, >=3s.
func newStalls() Histogram {
	bounds := [...]time.Duration{
		100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 3 * time.Second,
	}
	h := make(Histogram, 0, len(bounds)+1)
	var lo time.Duration
	for _, b := range bounds {
		h = append(h, HistogramBucket{Min: lo, Max: b})
		lo = b
	}
	return append(h, HistogramBucket{Min: lo})
}

// add counts d.
func (h Histogram) add(d time.Duration) {
	for i := range h {
		if d >= h[i].Min && (h[i].Max == 0 || d < h[i].Max) {
			h[i].Count++
			return
		}
	}
}

// newReport computes the figures of conns over [start, end].
func newReport(start, end time.Time, set settings, conns []Conn) *Report {
	r := &Report{
		Mode:           set.mode,
		Start:          start,
		End:            end,
		ReadTimeout:    set.readTimeout,
		StallThreshold: set.stallThreshold,
		ByOutcome:      map[Outcome]int{},
		Stalls:         newStalls(),
		Series:         []Bucket{},
		ByLB7:          map[string]int{},
		ByServer:       map[string]int{},
		Conns:          conns,
	}
	if r.Conns == nil {
		r.Conns = []Conn{}
	}
	for _, o := range Outcomes() {
		r.ByOutcome[o] = 0
	}
	if span := end.Sub(start); span > 0 {
		n := int((span + SeriesStep - 1) / SeriesStep)
		r.Series = make([]Bucket, n)
		for i := range r.Series {
			r.Series[i].Offset = time.Duration(i) * SeriesStep
		}
	}
	for i := range conns {
		c := &conns[i]
		r.Total++
		r.ByOutcome[c.Outcome]++
		r.Fallbacks += c.Fallbacks
		switch {
		case c.Outcome == OutcomeDNS:
			r.DNSFailed++
		case c.Outcome.Broken():
			r.Broken++
		default:
			r.OK++
			if c.Interrupted {
				r.Interrupted++
			}
			if c.Stopped {
				r.Stopped++
			}
		}
		if c.Status != 0 {
			r.Stalls.add(c.LongestStall)
		}
		if c.LB7 != "" {
			r.ByLB7[c.LB7]++
		}
		if c.Server != "" {
			r.ByServer[c.Server]++
		}
		if b := r.bucket(c.Start); b != nil {
			b.Started++
		}
		if b := r.bucket(c.End); b != nil {
			switch {
			case c.Outcome == OutcomeDNS:
				b.DNSFailed++
			case c.Outcome.Broken():
				b.Broken++
			case c.Interrupted:
				b.OK++
				b.Interrupted++
			default:
				b.OK++
			}
		}
	}
	if set.mode == ModeRequests {
		r.Requests = newRequestReport(start, end, set, conns)
	}
	return r
}

// bucket returns the series bucket of t, nil when t is outside the
// report's span.
func (r *Report) bucket(t time.Time) *Bucket {
	if len(r.Series) == 0 || t.Before(r.Start) || t.After(r.End) {
		return nil
	}
	i := min(int(t.Sub(r.Start)/SeriesStep), len(r.Series)-1)
	return &r.Series[i]
}

// Between returns the figures of the connections active at some time in
// [from, to): started before to, and started at from or later or ended
// after from. A connection that spans several such windows counts in each,
// with its final outcome; the series only counts the events inside the
// window.
func (r *Report) Between(from, to time.Time) *Report {
	var conns []Conn
	for _, c := range r.Conns {
		if c.Start.Before(to) && (!c.Start.Before(from) || c.End.After(from)) {
			conns = append(conns, c)
		}
	}
	return newReport(from, to, r.settings(), conns)
}
