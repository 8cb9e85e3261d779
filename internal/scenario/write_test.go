package scenario

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/traffic"
)

// sampleRuns returns the results of two fake runs: one that passes, one
// whose wait times out and whose assertions fail.
func sampleRuns(t *testing.T) []*Result {
	t.Helper()
	const (
		ok      = traffic.OutcomeOK
		reset   = traffic.OutcomeReset
		timeout = traffic.OutcomeTimeout
	)
	crash := mustParse(t, `
name: lb4-crash
description: Kill one LB4 while the downloads run; Maglev must break none.
claim: kill one LB4 (crash)
steps:
  - load: start
  - sleep: 2s
  - kill: lb4-2
  - wait: {vip: www, next-hops: 1}
  - sleep: 4s
assert:
  - {broken: 0, vip: www, after: kill lb4-2}
  - {failover: 1s, vip: www, after: kill lb4-2}
  - interrupted: 2
`)
	clk := newFakeClock()
	lab := &fakeLab{clk: clk, vips: []VIP{vipWWW, vipAPI}, doTakes: ms(5), checks: map[string][]answer{
		"wait www next-hops 1": {{why: "r1 has 2"}, {why: "r1 has 2"}, {ok: true}},
	}, conns: []traffic.Conn{
		conn(1, vipWWW, 0, 1500, "lb7-1", ok),
		conn(2, vipAPI, 50, 1800, "lb7-2", ok),
		interrupted(conn(3, vipWWW, 500, 3100, "lb7-2", ok)),
		conn(4, vipAPI, 900, 2150, "lb7-1", reset),
		conn(5, vipAPI, 1200, 5500, "lb7-2", timeout),
		conn(6, vipWWW, 1900, 3700, "lb7-1", ok),
		conn(7, vipWWW, 2300, 6205, "lb7-2", ok),
		conn(8, vipAPI, 3000, 6205, "lb7-1", ok),
	}}
	lab.conns[6].Stopped = true
	lab.conns[7].Stopped = true
	r1, err := run(t.Context(), lab, crash, nil, clk)
	if err != nil {
		t.Fatal(err)
	}

	remove := mustParse(t, `
name: lb7-remove
steps:
  - load: start
  - sleep: 1s
  - {remove: lb7-2, label: "remove <lb7-2> & co"}
  - wait: {vip: www, lb7: lb7-2, weight: 0, timeout: 250ms}
  - {sleep: 1s, label: settle}
assert:
  - {broken-ratio: 1%, after: "remove <lb7-2> & co", except-lb7: lb7-2}
  - {broken: 0, after: settle}
`)
	clk = newFakeClock()
	lab = &fakeLab{clk: clk, vips: []VIP{vipWWW}, checks: map[string][]answer{
		"wait www lb7-2 weight 0": {{why: `lb4-1 gives lb7-2 weight 1 "for now"`}},
	}, conns: []traffic.Conn{
		conn(1, vipWWW, 0, 1100, "lb7-2", reset),
		conn(2, vipWWW, 100, 1250, "lb7-1", ok),
		conn(3, vipWWW, 600, 1250, "", reset),
	}}
	r2, err := run(t.Context(), lab, remove, nil, clk)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Passed() || r2.Passed() {
		t.Fatalf("passed: %v and %v, want true and false", r1.Passed(), r2.Passed())
	}
	// A real load measures the machine's CPU; the fake leaves it unknown
	// (r2), as it is off Linux.
	r1.Report.CPUBusy = 0.42
	return []*Result{r1, r2}
}

// TestWriters compares every output with its golden file.
func TestWriters(t *testing.T) {
	results := sampleRuns(t)
	cases := []struct {
		name  string
		file  string
		write func(io.Writer) error
		xml   bool
	}{
		{name: "text pass", file: "lb4-crash.txt", write: results[0].WriteText},
		{name: "text fail", file: "lb7-remove.txt", write: results[1].WriteText},
		{name: "junit", file: "junit.xml", write: func(w io.Writer) error { return WriteJUnit(w, results) }, xml: true},
		{name: "claims", file: "claims.txt", write: func(w io.Writer) error { return WriteClaims(w, results) }},
		{name: "claims markdown", file: "claims.md", write: func(w io.Writer) error { return WriteClaimsMarkdown(w, results) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(&b); err != nil {
				t.Fatal(err)
			}
			if tc.xml {
				wellFormed(t, b.Bytes())
			}
			testenv.Golden(t, "testdata/"+tc.file, b.Bytes())
		})
	}
}

// wellFormed fails t unless data is well-formed XML.
func wellFormed(t *testing.T, data []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
	}
}

// TestJUnitCounts checks the figures CI systems read from the JUnit XML.
func TestJUnitCounts(t *testing.T) {
	results := sampleRuns(t)
	var b bytes.Buffer
	if err := WriteJUnit(&b, results); err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	lines := []string{fmt.Sprintf("all %d %d", got.Tests, got.Failures)}
	for _, s := range got.Suites {
		lines = append(lines, fmt.Sprintf("%s %d %d", s.Name, s.Tests, s.Failures))
	}
	want := []string{"all 7 3", "lb4-crash 4 0", "lb7-remove 3 3"}
	if diff := cmp.Diff(lines, want); diff != "" {
		t.Errorf("junit counts (-got +want):\n%s", diff)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestWriteErrors checks that writers report a failed write.
func TestWriteErrors(t *testing.T) {
	results := sampleRuns(t)
	writers := map[string]func(io.Writer) error{
		"text":       results[0].WriteText,
		"png":        results[0].WritePNG,
		"svg":        results[0].WriteSVG,
		"junit":      func(w io.Writer) error { return WriteJUnit(w, results) },
		"claims":     func(w io.Writer) error { return WriteClaims(w, results) },
		"md":         func(w io.Writer) error { return WriteClaimsMarkdown(w, results) },
		"claims png": func(w io.Writer) error { return WriteClaimsPNG(w, results) },
		"claims svg": func(w io.Writer) error { return WriteClaimsSVG(w, results) },
	}
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			if err := write(failingWriter{}); err == nil {
				t.Error("no error from a failing writer")
			}
		})
	}
}
