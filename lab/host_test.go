package lab

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/topology"
)

func TestAutoMode(t *testing.T) {
	f := func(states ...ModuleState) []KernelFeature {
		names := []string{"ip_vs", "ip_vs_mh", "ipip", "sch_netem"}
		var out []KernelFeature
		for i, s := range states {
			out = append(out, KernelFeature{Module: names[i], State: s})
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		features   []KernelFeature
		wantMode   Mode
		wantReason string
	}{
		{
			name:       "stock kernel, nothing loaded",
			features:   f(ModuleLoadable, ModuleLoadable, ModuleBuiltIn, ModuleLoaded),
			wantMode:   ModeNative,
			wantReason: "host kernel 6.1.0-test has every module the lab needs (ip_vs, ip_vs_mh to load)",
		},
		{
			name:       "everything there",
			features:   f(ModuleLoaded, ModuleLoaded, ModuleBuiltIn, ModuleBuiltIn),
			wantMode:   ModeNative,
			wantReason: "host kernel 6.1.0-test has every module the lab needs",
		},
		{
			name:       "no IPVS, no netem",
			features:   f(ModuleMissing, ModuleMissing, ModuleBuiltIn, ModuleMissing),
			wantMode:   ModeVM,
			wantReason: "host kernel 6.1.0-test lacks ip_vs, ip_vs_mh, sch_netem: running the lab in a user-mode Linux VM",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode, reason := autoMode("6.1.0-test", tc.features)
			if mode != tc.wantMode || reason != tc.wantReason {
				t.Errorf("autoMode() = %s, %q; want %s, %q", mode, reason, tc.wantMode, tc.wantReason)
			}
		})
	}
}

func TestChooseModeForced(t *testing.T) {
	for _, tc := range []struct {
		m    VMMode
		want Mode
	}{{VMAlways, ModeVM}, {VMNever, ModeNative}} {
		if got, _, err := ChooseMode(tc.m); got != tc.want || err != nil {
			t.Errorf("ChooseMode(%s) = %s, %v; want %s", tc.m, got, err, tc.want)
		}
	}
	if _, _, err := ChooseMode("sometimes"); err == nil || err.Error() != `--vm "sometimes": want auto, always or never` {
		t.Errorf("ChooseMode(sometimes) error = %v", err)
	}
}

func TestMissingCaps(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, capEff string
		want         []string
	}{
		{"root", "000001ffffffffff", []string{}},
		{"a container with docker's default capabilities", "00000000a80425fb", []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_MODULE"}},
		{"a privileged container without CAP_SYS_MODULE", "000001fffffeffff", []string{"CAP_SYS_MODULE"}},
		{"no capabilities", "0000000000000000", []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_MODULE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte("Name:\tlab\nCapInh:\t0000000000000000\nCapEff:\t"+tc.capEff+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			got := missingCaps(p)
			if got == nil {
				got = []string{}
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("missingCaps() (-got +want):\n%s", diff)
			}
		})
	}
	if got := missingCaps(filepath.Join(dir, "none")); got != nil {
		t.Errorf("missingCaps(no file) = %v, want nil", got)
	}
}

func TestSchedulersOf(t *testing.T) {
	top := &topology.Topology{VIPs: []topology.VIP{{Scheduler: "sh"}, {Scheduler: "mh"}, {Scheduler: "sh"}}}
	if diff := cmp.Diff(schedulersOf(top), []string{"sh", "mh"}); diff != "" {
		t.Errorf("schedulersOf() (-got +want):\n%s", diff)
	}
}
