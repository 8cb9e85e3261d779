package fabric

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestPlanGolden checks the kernel objects planned for the shipped
// topologies against testdata/*.plan.
func TestPlanGolden(t *testing.T) {
	for _, name := range []string{"minimal", "reference"} {
		t.Run(name, func(t *testing.T) {
			topo, err := topology.Load(filepath.Join("..", "..", "topologies", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			got := NewPlan(topo, name).String()
			golden := filepath.Join("testdata", name+".plan")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("plan of %s differs (-want +got):\n%s", name, diff)
			}
		})
	}
}

// TestPlanShape checks properties every plan must have, whatever the
// topology: no interface created in the host's namespace, one namespace per
// node plus the bridges', names within the kernel's 15-character limit,
// and unique interface names per namespace.
func TestPlanShape(t *testing.T) {
	topo, err := topology.Load(filepath.Join("..", "..", "topologies", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPlan(topo, "reference")
	if got, want := len(p.Namespaces), len(topo.Nodes)+1; got != want {
		t.Errorf("%d namespaces, want %d", got, want)
	}
	seen := map[string]bool{}
	for _, v := range p.Veths {
		for _, end := range [][2]string{{v.NS, v.Name}, {v.PeerNS, v.PeerName}} {
			if end[0] == "" {
				t.Errorf("veth %+v has an end in the host's namespace", v)
			}
			if len(end[1]) > 15 {
				t.Errorf("interface name %q longer than 15 characters", end[1])
			}
			key := end[0] + "/" + end[1]
			if seen[key] {
				t.Errorf("interface %s created twice", key)
			}
			seen[key] = true
		}
	}
	for _, r := range p.Routes {
		if len(r.Via) == 0 {
			t.Errorf("route %+v has no next hop", r)
		}
	}
}
