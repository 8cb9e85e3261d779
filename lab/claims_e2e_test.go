package lab_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/lab-lb/lab/lab"
)

// TestE2EClaims runs the shipped claim scenarios (testdata/scenarios) on
// one minimal lab, under load: an LB4 crashing, frozen, cut off by a dark
// link, added, disabled, an LB7 added or killed, both failing together, a
// backend drained. Each scenario asserts the design's claim for Maglev (0
// broken connections, or at most the dead LB7's own share + 1%; a silent
// LB4 out of every route within 1s), and restores the lab at its end.
func TestE2EClaims(t *testing.T) {
	const name = "e2e-claims"
	l := up(t, "../topologies/minimal.yaml", name)
	files, err := filepath.Glob("../testdata/scenarios/*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("scenarios: %v %v", files, err)
	}
	var results []*lab.ScenarioResult
	for _, f := range files {
		s, err := lab.LoadScenario(f)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		res, err := l.RunScenario(ctx, s, nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		results = append(results, res)
		var out bytes.Buffer
		_ = res.WriteText(&out)
		if !res.Passed() {
			t.Errorf("scenario %s failed:\n%s", s.Name, out.String())
		}
	}
	var table bytes.Buffer
	_ = lab.WriteClaims(&table, results)
	t.Logf("claims on the minimal topology (Maglev):\n%s", table.String())
}
