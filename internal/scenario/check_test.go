package scenario

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/lab-lb/lab/internal/testenv"
)

// checkTopo is a minimal lab's: one dual-stack VIP www (mh), no dns.
var checkTopo = Topology{
	Nodes: map[string]string{
		"client1": "client", "r1": "router", "lb4-1": "lb4", "lb4-2": "lb4",
		"lb7-1": "lb7", "lb7-2": "lb7", "server-1": "server", "server-2": "server",
	},
	VIPs: []VIP{
		{Name: "www/v4", Service: "www", Target: netip.MustParseAddrPort("198.51.100.1:80"), Scheduler: "mh"},
		{Name: "www/v6", Service: "www", Target: netip.MustParseAddrPort("[2001:db8:100::1]:80"), Scheduler: "mh"},
	},
	Segments: []string{"edge", "infra", "servers"},
}

func TestCheckFile(t *testing.T) {
	path := filepath.Join("testdata", "check", "bad.yaml")
	_, err := CheckFile(path, checkTopo)
	if err == nil {
		t.Fatal("CheckFile of a scenario naming what the topology lacks: no error")
	}
	testenv.Golden(t, filepath.Join("testdata", "check", "bad.err"), []byte(err.Error()+"\n"))

	// The shipped example is right for its topology.
	if _, err := CheckFile(filepath.Join("testdata", "check", "good.yaml"), checkTopo); err != nil {
		t.Errorf("CheckFile of a good scenario: %v", err)
	}
}
