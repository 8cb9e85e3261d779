package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lab-lb/lab/lab"
)

// TestUpInvalidTopologies hands every malformed topology of the topology
// package's test data to Up: each must fail with exactly its golden error
// (file:line: field: message) and leave no state behind. Validation comes
// before anything is created, so this needs neither root nor a VM.
func TestUpInvalidTopologies(t *testing.T) {
	dir := filepath.Join("..", "internal", "topology", "testdata", "invalid")
	inputs, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("want at least 20 malformed topologies, found %d", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(in, ".yaml") + ".err")
			if err != nil {
				t.Fatal(err)
			}
			before, _ := lab.Names()
			_, err = lab.Up(context.Background(), in, lab.Options{})
			if err == nil {
				t.Fatal("up succeeded on a malformed topology")
			}
			// The golden files name the file relative to the topology
			// package; Up names it as it was given.
			got := strings.ReplaceAll(err.Error(), filepath.ToSlash(dir)+"/", "testdata/invalid/")
			if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
				t.Errorf("error:\n%s\nwant:\n%s", got, want)
			}
			after, _ := lab.Names()
			if len(after) != len(before) {
				t.Errorf("labs before %v, after %v: a failed up left state behind", before, after)
			}
		})
	}
}
