package scenario

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes a readable report: the verdict, the steps with their
// offsets, the connections per VIP, the failover after each injection and
// every assertion with PASS or FAIL.
func (r *Result) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	p("scenario %s: %s\n", r.Name, verdict(r.Passed()))
	if r.Description != "" {
		p("  %s\n", r.Description)
	}
	if r.Claim != "" {
		p("claim: %s\n", r.Claim)
	}
	p("ran for %s\n", formatDuration(r.End.Sub(r.Start)))
	if r.Err != nil {
		p("error: %s\n", r.Err)
	}

	p("\nsteps\n  at\ttook\tstep\tresult\n")
	for _, s := range r.Steps {
		label := s.Step.Label
		if s.Implied {
			label += " (implied)"
		}
		switch {
		case !s.Ran:
			p("  -\t-\t%s\tnot run\n", label)
		case s.Err != nil:
			p("  %s\t%s\t%s\tFAILED: %s\n", offset(s.At), formatDuration(s.Took), label, s.Err)
		case len(s.Nodes) > 0:
			p("  %s\t%s\t%s\tok: %s\n", offset(s.At), formatDuration(s.Took), label, strings.Join(s.Nodes, ", "))
		default:
			p("  %s\t%s\t%s\tok\n", offset(s.At), formatDuration(s.Took), label)
		}
	}

	if r.Report == nil {
		p("\ntraffic: none measured\n")
	} else {
		p("\ntraffic: read timeout %s, stall threshold %s", r.Report.ReadTimeout, r.Report.StallThreshold)
		if r.Report.CPUBusy > 0 {
			p(", machine CPU busy %.0f%%", 100*r.Report.CPUBusy)
		}
		p("\n")
		p("  vip\tscheduler\tstarted\tok\tbroken\tinterrupted\n")
		for _, t := range r.Totals() {
			p("  %s\t%s\t%d\t%d\t%d\t%d\n", t.VIP, dash(t.Scheduler), t.Started, t.OK, t.Broken, t.Interrupted)
		}
	}

	if len(r.Failovers) > 0 {
		p("\nfailover after each injection (reroute: until every router dropped the node)\n  step\tat\treroute\tfailover\tbroken")
		for _, v := range r.VIPs {
			p("\t%s", v.Name)
		}
		p("\n")
		for _, f := range r.Failovers {
			p("  %s\t%s\t%s\t%s\t%d", f.Step, offset(f.At), rerouteText(f.Reroute), formatDuration(f.Failover), f.Broken)
			for _, v := range f.ByVIP {
				p("\t%s/%d", formatDuration(v.Failover), v.Broken)
			}
			p("\n")
		}
	}

	if q := r.Report; q != nil && q.Requests != nil && r.Repairs != nil {
		keep := "a new connection per request"
		if q.Requests.KeepAlive {
			keep = "keep-alive"
		}
		p("\nrequests: %d workers x %g a second, %s; %d requests, %d failed (%s)\n", q.Requests.Workers, q.Requests.Rate,
			keep, q.Requests.Requests, q.Requests.Errors, formatPercent(q.Requests.ErrorRatio))
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write scenario report: %w", err)
		}
		if err := r.Repairs.WriteText(bw); err != nil {
			return err
		}
	}

	if len(r.Assertions) > 0 {
		p("\nassertions\n")
		for _, a := range r.Assertions {
			p("  %s  %s\n", verdict(a.Passed), a.Message())
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write scenario report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write scenario report: %w", err)
	}
	return nil
}

// WriteClaims writes the claims table as aligned text: one row per result
// (its claim, or its name), one column per VIP and scheduler with "broken/
// total" connections, the longest reroute (when the lab told it) and
// failover, how busy the machine's CPU was
// during the load (a busy VM makes stalls of its own) and the verdict.
//
// The results of request loads, which say how long service degraded
// rather than what broke, get a table of their own after it (repairRows).
func WriteClaims(w io.Writer, results []*Result) error {
	bw := bufio.NewWriter(w)
	for i, table := range claimTables(results) {
		if i > 0 {
			fmt.Fprintln(bw)
		}
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		for _, row := range table {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write claims table: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write claims table: %w", err)
	}
	return nil
}

// claimTables returns the tables of WriteClaims: the connections a change
// broke (download loads), and the repairs (request loads); each is left
// out when no result has rows for it.
func claimTables(results []*Result) [][][]string {
	var downloads, requests []*Result
	for _, r := range results {
		if r.requests() {
			requests = append(requests, r)
		} else {
			downloads = append(downloads, r)
		}
	}
	var tables [][][]string
	if len(downloads) > 0 || len(requests) == 0 {
		tables = append(tables, claimRows(downloads))
	}
	if len(requests) > 0 {
		tables = append(tables, repairRows(requests))
	}
	return tables
}

// requests reports whether r measured a request load.
func (r *Result) requests() bool { return r.Report != nil && r.Report.Requests != nil }

// repairRows returns the table of the request loads, header first: per
// injection step, the requests that failed after it, the p99 latency of
// the steady part and after it, and the time to repair.
func repairRows(results []*Result) [][]string {
	rows := [][]string{{"claim (requests)", "injection", "failed", "p99 steady", "p99 after", "time to repair", "cpu busy", "result"}}
	for _, r := range results {
		name := r.Claim
		if name == "" {
			name = r.Name
		}
		cpu := "-"
		if r.Report.CPUBusy > 0 {
			cpu = fmt.Sprintf("%.0f%%", 100*r.Report.CPUBusy)
		}
		windows := 0
		if r.Repairs != nil {
			for _, w := range r.Repairs.After {
				if w.Latency.Count == 0 && w.Errors == 0 {
					continue // after the load
				}
				windows++
				repaired := formatDuration(w.Repaired)
				if w.Unrepaired {
					repaired = ">" + repaired
				}
				rows = append(rows, []string{name, w.Label, fmt.Sprintf("%d/%d", w.Errors, w.Errors+w.Latency.Count),
					millis(r.Repairs.Steady.P99), millis(w.Latency.P99), repaired, cpu, verdict(r.Passed())})
			}
		}
		if windows == 0 {
			rows = append(rows, []string{name, "-", fmt.Sprintf("%d/%d", r.Report.Requests.Errors, r.Report.Requests.Requests),
				"-", millis(r.Report.Requests.Latency.P99), "-", cpu, verdict(r.Passed())})
		}
	}
	return rows
}

// millis writes d in milliseconds with a tenth, "-" for none.
func millis(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// WriteClaimsMarkdown writes the claims table of WriteClaims as a Markdown
// table, for the README.
func WriteClaimsMarkdown(w io.Writer, results []*Result) error {
	bw := bufio.NewWriter(w)
	for t, table := range claimTables(results) {
		if t > 0 {
			fmt.Fprintln(bw)
		}
		for i, row := range table {
			for j := range row {
				row[j] = strings.ReplaceAll(row[j], "|", `\|`)
			}
			fmt.Fprintf(bw, "| %s |\n", strings.Join(row, " | "))
			if i == 0 {
				fmt.Fprintf(bw, "|%s\n", strings.Repeat("---|", len(row)))
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write claims table: %w", err)
	}
	return nil
}

// claimRows returns the claims table, header first.
func claimRows(results []*Result) [][]string {
	var cols []string
	index := map[string]int{}
	for _, r := range results {
		for _, v := range r.VIPs {
			c := vipColumn(v)
			if _, ok := index[c]; !ok {
				index[c] = len(cols)
				cols = append(cols, c)
			}
		}
	}
	rows := [][]string{append(append([]string{"claim"}, cols...), "reroute", "failover", "cpu busy", "result")}
	for _, r := range results {
		row := make([]string, len(cols)+5)
		row[0] = r.Claim
		if row[0] == "" {
			row[0] = r.Name
		}
		for i := range cols {
			row[i+1] = "-"
		}
		totals := r.Totals()
		for i, v := range r.VIPs {
			row[index[vipColumn(v)]+1] = fmt.Sprintf("%d/%d", totals[i].Broken, totals[i].Started)
		}
		var reroute *time.Duration
		for _, f := range r.Failovers {
			if f.Reroute != nil && (reroute == nil || *f.Reroute > *reroute) {
				reroute = f.Reroute
			}
		}
		row[len(cols)+1] = rerouteText(reroute)
		row[len(cols)+2] = "-"
		if len(r.Failovers) > 0 {
			var worst time.Duration
			for _, f := range r.Failovers {
				worst = max(worst, f.Failover)
			}
			row[len(cols)+2] = formatDuration(worst)
		}
		row[len(cols)+3] = "-"
		if r.Report != nil && r.Report.CPUBusy > 0 {
			row[len(cols)+3] = fmt.Sprintf("%.0f%%", 100*r.Report.CPUBusy)
		}
		row[len(cols)+4] = verdict(r.Passed())
		rows = append(rows, row)
	}
	return rows
}

// rerouteText writes a reroute time, "-" when the lab did not tell.
func rerouteText(d *time.Duration) string {
	if d == nil {
		return "-"
	}
	return formatDuration(*d)
}

// vipColumn names a VIP's column in the claims table, such as "www (mh)".
func vipColumn(v VIP) string {
	if v.Scheduler == "" {
		return v.Name
	}
	return fmt.Sprintf("%s (%s)", v.Name, v.Scheduler)
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// offset writes an offset from the start of the run, such as "+5.002s".
func offset(d time.Duration) string {
	return fmt.Sprintf("+%.3fs", d.Seconds())
}

// dash returns s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
