package scenario

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	File      string      `xml:"file,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
	SystemOut *junitText  `xml:"system-out,omitempty"`
}

// junitText is text kept readable in the XML.
type junitText struct {
	Text string `xml:",cdata"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

// WriteJUnit writes results as JUnit XML: one testsuite per scenario, with
// a testcase "run" that fails when a step failed, then one testcase per
// assertion whose failure message gives the scope, the limit and the
// measured value. Each suite's system-out holds its WriteText report.
func WriteJUnit(w io.Writer, results []*Result) error {
	all := junitSuites{Name: "lab scenarios"}
	var total float64
	for _, r := range results {
		secs := r.End.Sub(r.Start).Seconds()
		total += secs
		var text bytes.Buffer
		if err := r.WriteText(&text); err != nil {
			return err
		}
		s := junitSuite{
			Name:      r.Name,
			Time:      fmt.Sprintf("%.3f", secs),
			Timestamp: r.Start.UTC().Format("2006-01-02T15:04:05"),
			File:      r.File,
			SystemOut: &junitText{Text: text.String()},
		}
		run := junitCase{Name: "run", Classname: r.Name, Time: s.Time}
		if r.Err != nil {
			run.Failure = &junitFailure{Message: r.Err.Error(), Type: "step", Text: stepList(r)}
		}
		s.Cases = append(s.Cases, run)
		for _, a := range r.Assertions {
			c := junitCase{Name: a.Assertion.String(), Classname: r.Name, Time: "0.000"}
			if !a.Passed {
				c.Failure = &junitFailure{Message: a.Message(), Type: "assertion"}
			}
			s.Cases = append(s.Cases, c)
		}
		for _, c := range s.Cases {
			s.Tests++
			if c.Failure != nil {
				s.Failures++
			}
		}
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Suites = append(all.Suites, s)
	}
	all.Time = fmt.Sprintf("%.3f", total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	return nil
}

// stepList lists the steps with their offsets and errors, one per line.
func stepList(r *Result) string {
	var b strings.Builder
	for _, s := range r.Steps {
		switch {
		case !s.Ran:
			fmt.Fprintf(&b, "not run  %s\n", s.Step.Label)
		case s.Err != nil:
			fmt.Fprintf(&b, "%s  %s: %s\n", offset(s.At), s.Step.Label, s.Err)
		case s.Implied:
			fmt.Fprintf(&b, "%s  %s (implied)\n", offset(s.At), s.Step.Label)
		default:
			fmt.Fprintf(&b, "%s  %s\n", offset(s.At), s.Step.Label)
		}
	}
	return b.String()
}
