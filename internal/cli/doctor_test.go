package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

func TestPrintHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		host lab.Host
	}{
		{"stock-host", lab.Host{
			Kernel: "6.1.0-28-amd64", ModuleTree: "/lib/modules/6.1.0-28-amd64",
			Features: []lab.KernelFeature{
				{Module: "ip_vs", For: "IPVS on the LB4s (tier 2)", State: lab.ModuleLoadable},
				{Module: "ip_vs_mh", For: "IPVS scheduler mh", State: lab.ModuleLoadable},
				{Module: "veth", For: "links between nodes", State: lab.ModuleLoaded},
				{Module: "bridge", For: "segments with more than two nodes", State: lab.ModuleBuiltIn},
			},
			UML: "/usr/bin/linux.uml", HAProxy: "/usr/sbin/haproxy", Root: true,
			Mode: lab.ModeNative, Reason: "host kernel 6.1.0-28-amd64 has every module the lab needs (ip_vs, ip_vs_mh to load)",
		}},
		{"no-ipvs-not-root", lab.Host{
			Kernel: "6.18.44",
			Features: []lab.KernelFeature{
				{Module: "ip_vs", For: "IPVS on the LB4s (tier 2)", State: lab.ModuleMissing},
				{Module: "veth", For: "links between nodes", State: lab.ModuleBuiltIn},
			},
			Mode: lab.ModeVM, Reason: "host kernel 6.18.44 lacks ip_vs: running the lab in a user-mode Linux VM",
			Problems: []string{"not root: lab needs root (network namespaces, mounts, netlink); run it with sudo",
				"user-mode Linux kernel not found: apt-get install user-mode-linux"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printHost(&b, tc.host)
			testenv.Golden(t, filepath.Join("testdata", "doctor-"+tc.name+".txt"), b.Bytes())
		})
	}
}

// TestDoctor runs lab doctor on this machine: whatever it finds, -o json
// must describe every module a lab needs, and the text must agree with it.
func TestDoctor(t *testing.T) {
	var js, text, errOut bytes.Buffer
	errJSON := Run(context.Background(), []string{"doctor", "-o", "json"}, &js, &errOut)
	var h lab.Host
	if err := json.Unmarshal(js.Bytes(), &h); err != nil {
		t.Fatalf("lab doctor -o json: %v\n%s", err, js.String())
	}
	if len(h.Features) != 11 || h.Features[0].Module != "ip_vs" {
		t.Errorf("lab doctor lists %d features starting with %+v, want the 11 modules of a lab, ip_vs first", len(h.Features), h.Features)
	}
	if (errJSON != nil) != (len(h.Problems) > 0) {
		t.Errorf("lab doctor returned %v with problems %q: it must fail exactly when it finds problems", errJSON, h.Problems)
	}
	_ = Run(context.Background(), []string{"doctor"}, &text, &errOut)
	if want := "lab up would run " + string(h.Mode) + ": " + h.Reason; !strings.Contains(text.String(), want) {
		t.Errorf("lab doctor text lacks %q:\n%s", want, text.String())
	}
}

func TestDoctorTopology(t *testing.T) {
	var js, errOut bytes.Buffer
	_ = Run(context.Background(), []string{"doctor", "-o", "json", "../../topologies/minimal.yaml"}, &js, &errOut)
	var h lab.Host
	if err := json.Unmarshal(js.Bytes(), &h); err != nil {
		t.Fatalf("lab doctor -o json minimal.yaml: %v\n%s", err, js.String())
	}
	var mods []string
	for _, f := range h.Features {
		mods = append(mods, f.Module)
	}
	if got, want := strings.Join(mods, " "), "ip_vs ip_vs_mh ipip ipv6 ip6_tunnel veth bridge sch_netem"; got != want {
		t.Errorf("modules for the minimal topology: %s, want %s", got, want)
	}
	err := Run(context.Background(), []string{"doctor", "no-such.yaml"}, &js, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no-such.yaml") {
		t.Errorf("lab doctor no-such.yaml: error %v, want one naming the file", err)
	}
}
