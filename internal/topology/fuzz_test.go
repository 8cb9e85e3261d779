package topology

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and returns either a topology or
// a non-empty *Errors whose problems all have a message.
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"testdata/*.yaml", "testdata/invalid/*.yaml", "../../topologies/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, m...)
	}
	if len(seeds) == 0 {
		f.Fatal("no seed files")
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse("fuzz.yaml", data)
		if err == nil {
			if topo == nil {
				t.Fatal("Parse returned neither a topology nor an error")
			}
			return
		}
		if topo != nil {
			t.Fatal("Parse returned both a topology and an error")
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 {
			t.Fatalf("Parse error is %T %v, want a non-empty *Errors", err, err)
		}
		for _, e := range errs.List {
			if e.Msg == "" || e.File == "" {
				t.Fatalf("problem without a message or file: %+v", e)
			}
		}
	})
}
