package traffic

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// maxListed is the number of broken connections WriteText lists.
const maxListed = 50

// WriteText writes a readable summary: totals, outcomes, the stall
// histogram, the figures per LB7 and per backend, the seconds with broken or
// interrupted connections, and the first broken connections.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	if r.Requests != nil {
		r.writeRequests(p)
	} else {
		r.writeDownloads(p)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write traffic report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write traffic report: %w", err)
	}
	return nil
}

// writeDownloads writes the text report of a download load.
func (r *Report) writeDownloads(p func(string, ...any)) {
	p("traffic from %s to %s (%s)\n", stamp(r.Start), stamp(r.End), round(r.End.Sub(r.Start)))
	p("read timeout %s, stall threshold %s\n", r.ReadTimeout, r.StallThreshold)
	if r.CPUBusy > 0 {
		p("machine CPU busy %.0f%% during the load (all CPUs, /proc/stat)\n", 100*r.CPUBusy)
	}
	p("\n")
	p("connections\t%d\n", r.Total)
	p("ok\t%d\t(interrupted %d, cut by stop %d)\n", r.OK, r.Interrupted, r.Stopped)
	p("broken\t%d\n", r.Broken)
	for _, o := range Outcomes()[1:] {
		if o.Broken() {
			p("  %s\t%d\n", o, r.ByOutcome[o])
		}
	}
	if slices.ContainsFunc(r.Conns, func(c Conn) bool { return c.Name != "" }) {
		p("dns failed\t%d\t(lookups of a service name that failed: no connection tried)\n", r.DNSFailed)
		p("fallbacks\t%d\t(addresses of a name that failed to connect before another)\n", r.Fallbacks)
	}
	p("\nlongest wait for data\tconnections\n")
	for _, b := range r.Stalls {
		p("  %s\t%d\n", b.Label(), b.Count)
	}
	// Per target: a load over a dual-stack VIP tells each family apart.
	target := func(c *Conn) string {
		if !c.Target.IsValid() {
			return ""
		}
		return c.Target.String()
	}
	r.writeGroups(p, "target", "(no connection)", target, r.countBy(target))
	if slices.ContainsFunc(r.Conns, func(c Conn) bool { return c.Name != "" }) {
		name := func(c *Conn) string { return c.Name }
		r.writeGroups(p, "name", "(by address)", name, r.countBy(name))
	}
	r.writeGroups(p, "lb7", "(no lb7 header)", func(c *Conn) string { return c.LB7 }, r.ByLB7)
	r.writeGroups(p, "server", "(no server header)", func(c *Conn) string { return c.Server }, r.ByServer)

	p("\nseconds with broken or interrupted connections\n")
	p("second\tstarted\tok\tbroken\tinterrupted\n")
	var sec Bucket
	quiet := true
	for i, b := range r.Series {
		sec.Started += b.Started
		sec.OK += b.OK
		sec.Broken += b.Broken
		sec.Interrupted += b.Interrupted
		if (i+1)%int(time.Second/SeriesStep) != 0 && i != len(r.Series)-1 {
			continue
		}
		if sec.Broken > 0 || sec.Interrupted > 0 {
			at := time.Duration(i) * SeriesStep / time.Second * time.Second
			p("+%s\t%d\t%d\t%d\t%d\n", at, sec.Started, sec.OK, sec.Broken, sec.Interrupted)
			quiet = false
		}
		sec = Bucket{}
	}
	if quiet {
		p("(none)\n")
	}

	r.writeFailed(p, "broken connections")
}

// writeFailed lists the first failed connections (requests).
func (r *Report) writeFailed(p func(string, ...any), title string) {
	p("\n%s\n", title)
	p("id\tsource\ttarget\tlb7\tserver\tstart\tduration\tbytes\toutcome\terror\n")
	listed := 0
	for i := range r.Conns {
		c := &r.Conns[i]
		if !c.Outcome.Broken() {
			continue
		}
		if listed++; listed > maxListed {
			continue
		}
		p("%d\t%s\t%s\t%s\t%s\t+%s\t%s\t%d\t%s\t%s\n", c.ID, sourceString(c), c.Target,
			dash(c.LB7), dash(c.Server), round(c.Start.Sub(r.Start)), round(c.End.Sub(c.Start)),
			c.Bytes, c.Outcome, c.Err)
	}
	switch {
	case listed == 0:
		p("(none)\n")
	case listed > maxListed:
		p("(%d more)\n", listed-maxListed)
	}
}

// writeGroups writes the connections, broken and interrupted ones per name
// of counts.
func (r *Report) writeGroups(p func(string, ...any), title, none string, name func(*Conn) string, counts map[string]int) {
	p("\n%s\tconnections\tbroken\tinterrupted\n", title)
	if len(counts) == 0 {
		p("%s\n", none)
		return
	}
	broken, interrupted := map[string]int{}, map[string]int{}
	for i := range r.Conns {
		c := &r.Conns[i]
		switch {
		case c.Outcome.Broken():
			broken[name(c)]++
		case c.Interrupted:
			interrupted[name(c)]++
		}
	}
	for _, n := range slices.Sorted(maps.Keys(counts)) {
		label := n
		if n == "" {
			label = none
		}
		p("%s\t%d\t%d\t%d\n", label, counts[n], broken[n], interrupted[n])
	}
}

// countBy counts every connection by name.
func (r *Report) countBy(name func(*Conn) string) map[string]int {
	counts := map[string]int{}
	for i := range r.Conns {
		counts[name(&r.Conns[i])]++
	}
	return counts
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write traffic report as json: %w", err)
	}
	return nil
}

// WriteJSONLines writes one JSON object per connection, one per line.
func (r *Report) WriteJSONLines(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range r.Conns {
		if err := enc.Encode(&r.Conns[i]); err != nil {
			return fmt.Errorf("write connection %d as json: %w", r.Conns[i].ID, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write connections as json lines: %w", err)
	}
	return nil
}

// stamp formats t in UTC with milliseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// round rounds d to the millisecond.
func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// sourceString returns the connection's source address and port.
func sourceString(c *Conn) string {
	switch {
	case !c.Source.IsValid():
		return "-"
	case c.SourcePort == 0:
		return c.Source.String()
	default:
		return netip.AddrPortFrom(c.Source, c.SourcePort).String()
	}
}

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeRequests writes the text report of a request load: totals, errors
// by class, latency, and every second.
func (r *Report) writeRequests(p func(string, ...any)) {
	q := r.Requests
	keep := "a new connection per request"
	if q.KeepAlive {
		keep = "keep-alive"
	}
	p("requests from %s to %s (%s)\n", stamp(r.Start), stamp(r.End), round(r.End.Sub(r.Start)))
	p("%d workers x %g a second, %s, timeout %s\n", q.Workers, q.Rate, keep, r.ReadTimeout)
	if r.CPUBusy > 0 {
		p("machine CPU busy %.0f%% during the load (all CPUs, /proc/stat)\n", 100*r.CPUBusy)
	}
	p("\n")
	p("requests\t%d\n", q.Requests)
	p("ok\t%d\t(cut by stop %d)\n", r.OK, r.Stopped)
	p("errors\t%d\t(%.2f%%)\n", q.Errors, 100*q.ErrorRatio)
	for _, o := range Outcomes()[1:] {
		p("  %s\t%d\n", o, r.ByOutcome[o])
	}
	p("\nlatency\tp50\tp90\tp99\tmax\tmean\tstddev\n")
	p("%s\n", latencyRow(fmt.Sprintf("%d ok", q.Latency.Count), q.Latency))
	r.writeGroups(p, "lb7", "(no lb7 header)", func(c *Conn) string { return c.LB7 }, r.ByLB7)
	r.writeGroups(p, "server", "(no server header)", func(c *Conn) string { return c.Server }, r.ByServer)
	p("\nsecond\trequests\terrors\tp50\tp90\tp99\tmax\n")
	for _, s := range q.Seconds {
		p("+%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Offset, s.Requests, errorsString(s), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max))
	}
	r.writeFailed(p, "failed requests")
}

// WriteText writes how service fared after each injection: latency
// against the steady state, errors and the time to repair.
func (rs Repairs) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("latency\tp50\tp90\tp99\tmax\tmean\tstddev\n")
	p("%s\n", latencyRow("steady", rs.Steady))
	for _, a := range rs.After {
		if a.Latency.Count > 0 {
			p("%s\n", latencyRow("after "+a.Label, a.Latency))
		}
	}
	p("\ninjection\terrors\tp99\tp99 - steady\tstddev - steady\ttime to repair\n")
	if len(rs.After) == 0 {
		p("(none)\n")
	}
	for _, a := range rs.After {
		if a.Latency.Count == 0 && a.Errors == 0 {
			p("%s\t-\t-\t-\t-\t(no request after it)\n", a.Label)
			continue
		}
		repaired := round(a.Repaired).String()
		if a.Unrepaired {
			repaired = ">" + repaired + " (not repaired)"
		}
		p("%s\t%d\t%s\t%+dms\t%+dms\t%s\n", a.Label, a.Errors, ms(a.Latency.P99),
			(a.Latency.P99 - rs.Steady.P99).Milliseconds(), (a.Latency.StdDev - rs.Steady.StdDev).Milliseconds(), repaired)
	}
	p("(repaired: the last request failed, or took over %s (twice the steady p99, %s above it at least) in a second whose p99 did, with %d such requests or more, before %d clean seconds in a row)\n",
		ms(rs.Bound), RepairSlack, minSlow, RepairSettle)
	for _, a := range rs.After {
		if a.LateSlow > 0 {
			p("(%s: %d slow seconds after service had settled, left out as the machine's noise)\n", a.Label, a.LateSlow)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write repairs: %w", err)
	}
	return nil
}

// latencyRow is one row of a latency table.
func latencyRow(label string, s LatencyStats) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", label, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max), ms(s.Mean), ms(s.StdDev))
}

// ms formats d in milliseconds with a tenth, or "-" for none.
func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// errorsString writes a second's errors by outcome: "3 (2 refused, 1
// timeout)", or "0".
func errorsString(s RequestSecond) string {
	if s.ErrorCount() == 0 {
		return "0"
	}
	var parts []string
	for _, o := range Outcomes()[1:] {
		if n := s.Errors[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	return fmt.Sprintf("%d (%s)", s.ErrorCount(), strings.Join(parts, ", "))
}
