package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

func TestPrintStatus(t *testing.T) {
	st := &lab.Status{
		Name: "minimal", Mode: lab.ModeVM, Kernel: "6.1.176", Phase: "ready", UpTime: 13900 * time.Millisecond,
		Nodes: []lab.NodeStatus{
			{Name: "client1", Role: "client", Loopback: 50,
				Interfaces: []lab.InterfaceStatus{{Name: "edge", Addresses: []string{"192.0.2.1/27"}}},
				Agent:      lab.AgentStatus{State: "running", Ready: true}},
			{Name: "r1", Role: "router",
				Interfaces: []lab.InterfaceStatus{{Name: "edge", Addresses: []string{"192.0.2.2/27"}}, {Name: "infra", Addresses: []string{"192.0.2.129/25"}}},
				Agent:      lab.AgentStatus{State: "running", Ready: false, Waiting: "198.51.100.1/32 has 1 of 2 next hops", Summary: "bgp 2/2 up; 198.51.100.1/32 via 1"}},
			{Name: "lb4-2", Role: "lb4",
				Interfaces: []lab.InterfaceStatus{{Name: "infra", Addresses: []string{"192.0.2.131/25", "2001:db8:0:2::3/64"}}},
				Agent:      lab.AgentStatus{State: "frozen"}},
		},
		VIPs: []lab.VIPStatus{
			{Name: "www1", Address: "198.51.100.1:80", Protocol: "tcp", Scheduler: "mh", Names: []string{"www1.example.org.", "www.example.org."}, Allocated: true},
			{Name: "wlc-1", Address: "[2001:db8:100::5]:80", Protocol: "tcp", Scheduler: "wlc", Names: []string{"wlc-1.example.org."}},
		},
	}
	var b bytes.Buffer
	printStatus(&b, st)
	testenv.Golden(t, filepath.Join("testdata", "status.txt"), b.Bytes())
}

// TestOutputFlag checks -o on a command that prints state: json is
// valid JSON of the value, text calls the printer, anything else is
// refused with what is expected.
func TestOutputFlag(t *testing.T) {
	v := map[string]int{"nodes": 8}
	for _, tc := range []struct {
		output, want, wantErr string
	}{
		{"json", "{\n  \"nodes\": 8\n}\n", ""},
		{"text", "8 nodes\n", ""},
		{"", "8 nodes\n", ""},
		{"yaml", "", `-o "yaml": want text or json`},
	} {
		g := &globals{output: tc.output}
		var b bytes.Buffer
		err := g.print(&b, v, func(w io.Writer) { fmt.Fprintf(w, "%d nodes\n", v["nodes"]) })
		if (err != nil || tc.wantErr != "") && (err == nil || err.Error() != tc.wantErr) {
			t.Errorf("-o %q: error %v, want %q", tc.output, err, tc.wantErr)
		}
		if b.String() != tc.want {
			t.Errorf("-o %q printed %q, want %q", tc.output, b.String(), tc.want)
		}
		if tc.output == "json" && !json.Valid(b.Bytes()) {
			t.Errorf("-o json printed invalid JSON")
		}
	}
}

// TestNoLab checks what commands that act on a lab say when none is up.
func TestNoLab(t *testing.T) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"--name", "no-such-lab-here", "status"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no-such-lab-here") {
		t.Errorf("lab status of a lab that is not up: error %v, want one naming it", err)
	}
	err = Run(context.Background(), []string{"up"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "accepts 1 arg") {
		t.Errorf("lab up without a file: error %v", err)
	}
}

// TestDryRunJSON checks that lab up --dry-run -o json shows the VIPs the
// pool allocates, with their DNS names, touching nothing.
func TestDryRunJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"up", "--dry-run", "-o", "json", "../../topologies/services.yaml"}, &out, &errOut); err != nil {
		t.Fatalf("lab up --dry-run -o json: %v\n%s", err, errOut.String())
	}
	var plan struct {
		VIPs []struct {
			Name, Address string
			Allocated     bool
			Names         []string
		}
	}
	if err := json.Unmarshal(out.Bytes(), &plan); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if len(plan.VIPs) != 4 || plan.VIPs[0].Address != "198.51.100.1" || !plan.VIPs[0].Allocated ||
		!slices.Contains(plan.VIPs[0].Names, "www.example.org.") {
		t.Errorf("VIPs %+v, want mh-1 first at 198.51.100.1 from the pool, named www", plan.VIPs)
	}
	if err := Run(context.Background(), []string{"up", "-o", "json", "../../topologies/services.yaml"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--dry-run") {
		t.Errorf("lab up -o json without --dry-run: %v, want an error naming --dry-run", err)
	}
}

// TestCheckScenarios checks lab test --check: the shipped scenarios pass
// with no lab up; a bad one fails with its lines.
func TestCheckScenarios(t *testing.T) {
	files, err := filepath.Glob("../../testdata/scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("scenarios: %v %v", files, err)
	}
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), append([]string{"test", "--check"}, files...), &out, &errOut); err != nil {
		t.Errorf("lab test --check of the shipped scenarios: %v\n%s", err, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	topo, err := filepath.Abs(filepath.Join("..", "..", "topologies", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := "name: bad\ntopology: " + topo + "\nsteps:\n  - kill: lb4-9\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = Run(context.Background(), []string{"test", "--check", bad}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), bad+":4: steps[0].kill: no node lb4-9") {
		t.Errorf("lab test --check of a bad scenario: error %v, output %q", err, out.String())
	}
}
