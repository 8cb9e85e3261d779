package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/lab-lb/lab/lab"
)

// TestE2EClaims runs the shipped claim scenarios (testdata/scenarios),
// each on a lab of its own topology (one lab per topology, one after the
// other), under load: an LB4 crashing, frozen, cut off by a dark link,
// added, disabled, an LB7 added or killed, both failing together, a
// backend drained, one VIP of a name withdrawn. Each scenario asserts the
// design's claim for Maglev (0 broken connections, or at most the dead
// LB7's own share + 1%; a silent LB4 out of every route within 1s; a
// withdrawn VIP out of the DNS answers within the TTL and a bound), and
// restores the lab at its end.
func TestE2EClaims(t *testing.T) {
	files, err := filepath.Glob("../testdata/scenarios/*.yaml")
	if err != nil || len(files) < 11 {
		t.Fatalf("scenarios: %v %v", files, err)
	}
	byTopology := map[string][]*lab.Scenario{}
	var topologies []string
	for _, f := range files {
		s, err := lab.LoadScenario(f)
		if err != nil {
			t.Fatal(err)
		}
		if byTopology[s.Topology] == nil {
			topologies = append(topologies, s.Topology)
		}
		byTopology[s.Topology] = append(byTopology[s.Topology], s)
	}
	var results []*lab.ScenarioResult
	for i, topo := range topologies {
		name := fmt.Sprintf("e2e-claims-%d", i+1)
		l := up(t, topo, name)
		failed := false
		for _, s := range byTopology[topo] {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			res, err := l.RunScenario(ctx, s, nil)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", s.File, err)
			}
			results = append(results, res)
			var out bytes.Buffer
			_ = res.WriteText(&out)
			if !res.Passed() {
				t.Errorf("scenario %s failed:\n%s", s.Name, out.String())
				failed = true
			}
		}
		if failed {
			logEvents(t, l) // while the lab is up
		}
		// One VM at a time: the next lab comes up once this one is down.
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("down %s: %v", name, err)
		}
	}
	var table bytes.Buffer
	_ = lab.WriteClaims(&table, results)
	t.Logf("claims (Maglev):\n%s", table.String())
}
