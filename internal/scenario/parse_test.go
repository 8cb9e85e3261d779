package scenario

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/testenv"
)

// TestExample parses testdata/example.yaml and example-requests.yaml,
// checks that together they use every step kind and every metric, and
// compares each parsed scenario with its golden file.
func TestExample(t *testing.T) {
	kinds := map[Kind]bool{}
	metrics := map[Metric]bool{}
	for _, name := range []string{"example", "example-requests"} {
		in := "testdata/" + name + ".yaml"
		s, err := LoadFile(in)
		if err != nil {
			t.Fatalf("LoadFile(%q):\n%v", in, err)
		}
		for _, st := range s.Steps {
			kinds[st.Kind] = true
		}
		for _, a := range s.Assert {
			metrics[a.Metric] = true
		}
		if _, err := os.Stat(s.Topology); err != nil {
			t.Errorf("topology %q of %s: %v", s.Topology, in, err)
		}
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		testenv.Golden(t, "testdata/"+name+".golden.json", append(b, '\n'))
	}
	for _, k := range []Kind{KindLoadStart, KindLoadStop, KindSleep, KindWait, KindKill, KindFreeze,
		KindRevive, KindMaint, KindAgent, KindLink, KindImpair, KindAdd, KindRemove, KindExec} {
		if !kinds[k] {
			t.Errorf("the examples have no %s step", k)
		}
	}
	for _, m := range Metrics() {
		if !metrics[m] {
			t.Errorf("the examples have no %s assertion", m)
		}
	}
}

// TestInvalid parses every file under testdata/invalid and compares the
// error text with the .err file beside it.
func TestInvalid(t *testing.T) {
	inputs, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("want at least 20 invalid inputs, found %d", len(inputs))
	}
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".yaml"), func(t *testing.T) {
			s, err := LoadFile(in)
			if err == nil {
				t.Fatalf("LoadFile(%q) = %+v, want an error", in, s)
			}
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("LoadFile(%q) error is %T %v, want a non-empty *Errors", in, err, err)
			}
			for _, e := range errs.List {
				if e.File != in || e.Line < 1 {
					t.Errorf("problem %q: want file %q and a line", e.Error(), in)
				}
			}
			testenv.Golden(t, strings.TrimSuffix(in, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(absent) error = %v, want os.ErrNotExist", err)
	}
}

// TestParseValues checks conversions and defaults on small files.
func TestParseValues(t *testing.T) {
	two, zero := 2, 0
	cases := []struct {
		name string
		file string
		yaml string
		// get picks what to compare from the scenario.
		get  func(*Scenario) any
		want any
	}{
		{
			name: "percentages are fractions, loss stays in percent",
			yaml: "load: {early-stop: 0.5%}\nsteps:\n  - load: start\n  - impair: {node: a, peer: b, loss: 2.5%}\n",
			get:  func(s *Scenario) any { return []float64{s.Load.EarlyStop, s.Steps[1].Action.Loss} },
			want: []float64{0.005, 2.5},
		},
		{
			name: "zero pause and early stop disable them",
			yaml: "load: {pause: 0s, early-stop: 0%}\nsteps:\n  - load: start\n",
			get:  func(s *Scenario) any { return []float64{float64(s.Load.Pause), s.Load.EarlyStop} },
			want: []float64{-1, -1},
		},
		{
			name: "default labels",
			yaml: `steps:
  - load: start
  - sleep: 1500ms
  - wait: {converged: true}
  - wait: {vip: www, next-hops: 2}
  - wait: {vip: www, lb7: lb7-2, weight: 0}
  - maint: {node: lb4-1, state: on}
  - maint: {vip: www1, state: on}
  - agent: {node: s-1, state: up 50%}
  - link: {node: lb4-1, peer: infra, state: down}
  - impair: {node: lb4-1, peer: infra, delay: 1s}
  - add: {node: lb7-3, like: lb7-1}
  - remove: lb7-2
  - exec: {node: lb4-1, argv: [touch, /etc/lb/disable]}
  - {kill: lb4-2, label: crash}
  - load: stop
`,
			get: func(s *Scenario) any {
				var labels []string
				for _, st := range s.Steps {
					labels = append(labels, st.Label)
				}
				return labels
			},
			want: []string{"load start", "sleep 1.5s", "wait converged", "wait www next-hops 2",
				"wait www lb7-2 weight 0", "maint lb4-1 on", "maint vip www1 on", "agent s-1 up 50%", "link lb4-1 infra down",
				"impair lb4-1 infra", "add lb7-3", "remove lb7-2", "exec lb4-1 touch /etc/lb/disable",
				"crash", "load stop"},
		},
		{
			name: "wait conditions and their default timeout",
			yaml: "steps:\n  - wait: {vip: www, next-hops: 2}\n  - wait: {vip: www, lb7: l, weight: 0, timeout: 1m}\n",
			get:  func(s *Scenario) any { return []Condition{s.Steps[0].Wait, s.Steps[1].Wait} },
			want: []Condition{
				{VIP: "www", NextHops: &two, Timeout: DefaultWaitTimeout},
				{VIP: "www", LB7: "l", Weight: &zero, Timeout: time.Minute},
			},
		},
		{
			name: "assertion limits and scope",
			yaml: `steps:
  - load: start
  - kill: lb4-2
assert:
  - {broken-ratio: 1.5%, vip: www, after: kill lb4-2, settled: 2s, before: kill lb4-2, except-lb7: lb7-1}
  - {failover: 750ms, after: kill lb4-2}
  - interrupted: 3
`,
			get: func(s *Scenario) any { return s.Assert },
			want: []Assertion{
				{Metric: MetricBrokenRatio, Limit: 0.015, Line: 6, Scope: Scope{
					VIP: "www", After: "kill lb4-2", Settled: 2 * time.Second, Before: "kill lb4-2", ExceptLB7: "lb7-1"}},
				{Metric: MetricFailover, Limit: float64(750 * time.Millisecond), Line: 7, Scope: Scope{After: "kill lb4-2"}},
				{Metric: MetricInterrupted, Limit: 3, Line: 8},
			},
		},
		{
			name: "topology relative to the file",
			file: "dir/sub/s.yaml",
			yaml: "topology: ../t.yaml\nsteps:\n  - sleep: 1s\n",
			get:  func(s *Scenario) any { return s.Topology },
			want: "dir/t.yaml",
		},
		{
			name: "absolute topology",
			file: "dir/s.yaml",
			yaml: "topology: /etc/t.yaml\nsteps:\n  - sleep: 1s\n",
			get:  func(s *Scenario) any { return s.Topology },
			want: "/etc/t.yaml",
		},
		{
			name: "aliases are followed",
			yaml: "claim: &n lb4-1\nsteps:\n  - kill: *n\n",
			get:  func(s *Scenario) any { return s.Steps[0].Action },
			want: Action{Kind: KindKill, Node: "lb4-1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = "s.yaml"
			}
			s, err := Parse(file, []byte("name: t\n"+tc.yaml))
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			if diff := cmp.Diff(tc.get(s), tc.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestValidateInCode checks scenarios built without a file: the same rules
// apply, and the problems have no line.
func TestValidateInCode(t *testing.T) {
	cases := []struct {
		name string
		s    Scenario
		want []string
	}{
		{
			name: "valid",
			s: Scenario{Name: "ok", Steps: []Step{
				{Kind: KindLoadStart},
				{Kind: KindKill, Action: Action{Kind: KindKill, Node: "lb4-1"}},
			}, Assert: []Assertion{{Metric: MetricBroken, Scope: Scope{After: "kill lb4-1"}}}},
		},
		{
			name: "problems",
			s: Scenario{Name: "Bad", File: "code", Steps: []Step{
				{Kind: "dance"},
				{Kind: KindMaint, Action: Action{Kind: KindKill, Node: "lb4-1", State: "on"}},
				{Kind: KindWait, Wait: Condition{Converged: true, Timeout: -time.Second}},
				{Kind: KindMaint, Action: Action{Kind: KindMaint, Node: "lb4-1", VIP: "www", State: "on"}},
				{Kind: KindMaint, Action: Action{Kind: KindMaint, VIP: "Www", State: "off"}},
			}, Assert: []Assertion{{Metric: "speed"}}},
			want: []string{
				`code: name: "Bad": want lower-case letters, digits and dashes, at most 63`,
				`code: steps[0]: unknown step kind "dance"`,
				`code: steps[1].maint: action kind "kill" in a maint step`,
				`code: steps[2].wait.timeout: want a positive duration such as 30s`,
				`code: steps[3].maint: node and vip: want one of them`,
				`code: steps[4].maint.vip: "Www" is not a VIP name (lower-case letters, digits and dashes, starting with a letter; /v4 or /v6 for one family of a dual-stack name)`,
				`code: assert[0]: unknown metric "speed"`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			var got []string
			if err != nil {
				var errs *Errors
				if !errors.As(err, &errs) {
					t.Fatalf("Validate error is %T, want *Errors", err)
				}
				for _, e := range errs.List {
					got = append(got, e.Error())
				}
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("Validate (-got +want):\n%s", diff)
			}
			if tc.s.Steps[0].Label != "" {
				t.Errorf("Validate changed the scenario: label %q", tc.s.Steps[0].Label)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and fails only with *Errors.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/invalid/*.yaml")
	seeds = append(seeds, "testdata/example.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("f.yaml", data)
		if err == nil {
			if s == nil {
				t.Fatal("Parse returned neither a scenario nor an error")
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 {
			t.Fatalf("Parse error is %T %v, want a non-empty *Errors", err, err)
		}
	})
}
