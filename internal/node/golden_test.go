package node

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/topology"
)

func load(t *testing.T, name string) *topology.Topology {
	t.Helper()
	topo, err := topology.Load(filepath.Join("..", "..", "topologies", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// TestHAProxyGolden generates, through client-native, the HAProxy
// configuration of the first LB7 of each ready topology and compares it
// with testdata/TOPOLOGY.haproxy.cfg; each golden file must pass
// haproxy -c too.
func TestHAProxyGolden(t *testing.T) {
	testenv.RequireBinary(t, "haproxy") // client-native runs it
	for _, name := range []string{"minimal", "reference"} {
		t.Run(name, func(t *testing.T) {
			topo := load(t, name)
			lb7 := topo.NodesByRole(topology.RoleLB7)[0]
			cfg, err := HAProxyConfig(topo, lb7, "/run/lab/"+name+"/nodes/"+lb7.Name)
			if err != nil {
				t.Fatal(err)
			}
			text, err := haproxy.Generate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", name+".haproxy.cfg"), text)
		})
	}
}

// TestIPVSPlanGolden records the IPVS state every LB4 of each ready
// topology wants with all LB7s healthy, and with the second LB7 failed
// (weight 0, kept in its place so the Maglev table of the others stays).
func TestIPVSPlanGolden(t *testing.T) {
	for _, name := range []string{"minimal", "reference"} {
		t.Run(name, func(t *testing.T) {
			topo := load(t, name)
			lb4 := topo.NodesByRole(topology.RoleLB4)[0]
			var lb7s []LB7Dest
			for _, n := range topo.NodesByRole(topology.RoleLB7) {
				d := LB7Dest{Healthy: true}
				for _, f := range topology.Families {
					d.Addrs[f], _ = topo.AddressFacing(lb4.Name, n.Name, f)
				}
				if !d.Addrs[topology.IPv4].IsValid() {
					t.Fatalf("%s cannot reach %s", lb4.Name, n.Name)
				}
				lb7s = append(lb7s, d)
			}
			all := IPVSPlan(topo, lb7s, false)
			lb7s[1].Healthy = false
			failed := IPVSPlan(topo, lb7s, false)
			removed := IPVSPlan(topo, lb7s, true)
			b, err := json.MarshalIndent(map[string]any{"all-healthy": all, "second-lb7-failed": failed, "second-lb7-failed-remove-failed": removed}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", name+".ipvs.json"), append(b, '\n'))
		})
	}
}
