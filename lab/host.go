package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/kmod"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/vm"
)

// ModuleState is what the host kernel offers of one kernel module.
type ModuleState string

// The states of a module.
const (
	ModuleBuiltIn  ModuleState = "built-in" // compiled into the kernel
	ModuleLoaded   ModuleState = "loaded"   // loaded
	ModuleLoadable ModuleState = "loadable" // in the kernel's module tree: lab up loads it
	ModuleMissing  ModuleState = "missing"  // none of the above
)

// KernelFeature is one kernel module a lab needs and what the host offers
// of it.
type KernelFeature struct {
	// Module is the kernel module (ip_vs, ipip...), For what the lab uses
	// it for, and State what the host offers of it.
	Module string      `json:"module"`
	For    string      `json:"for"`
	State  ModuleState `json:"state"`
}

// Host is what this machine can do for a lab: what `lab doctor` prints,
// and the mode `lab up --vm auto` picks, from the same facts.
type Host struct {
	Kernel     string          `json:"kernel"`       // release, as uname -r
	ModuleTree string          `json:"module_tree"`  // where loadable modules are; "" when the kernel has none
	Features   []KernelFeature `json:"features"`     // what a lab needs of the kernel
	UML        string          `json:"uml"`          // the user-mode Linux kernel; "" when not installed
	HAProxy    string          `json:"haproxy"`      // the haproxy program; "" when not installed
	Root       bool            `json:"root"`         // effective user id 0
	MissingCap []string        `json:"missing_caps"` // capabilities lab needs and lacks
	Mode       Mode            `json:"mode"`         // what lab up --vm auto would choose
	Reason     string          `json:"reason"`       // why
	Problems   []string        `json:"problems"`     // what stops lab up here, and what to do
}

// CheckHost looks at this machine for a lab whose VIPs use the given IPVS
// schedulers (none: every scheduler a topology may name). It reads the
// kernel's module state and configuration and touches nothing.
func CheckHost(schedulers ...string) Host {
	h := Host{Problems: []string{}}
	k, err := kmod.Running()
	if err != nil {
		h.Problems = append(h.Problems, err.Error())
	}
	h.Kernel = k.Release
	if _, err := os.Stat(filepath.Join(k.Tree, "modules.dep")); err == nil {
		h.ModuleTree = k.Tree
	}
	for _, f := range k.Probe(kmod.Needs(schedulers...)) {
		h.Features = append(h.Features, KernelFeature{Module: f.Module, For: f.For, State: ModuleState(f.State)})
	}
	var umlErr error
	if h.UML, umlErr = vm.FindKernel(); umlErr != nil {
		h.UML = ""
	}
	if p, err := haproxy.Binary(); err == nil {
		h.HAProxy = p
	} else {
		h.Problems = append(h.Problems, "haproxy is not installed (the LB7s run it): apt-get install haproxy")
	}
	h.Root = os.Geteuid() == 0
	h.MissingCap = missingCaps("/proc/self/status")
	if h.MissingCap == nil {
		h.MissingCap = []string{}
	}
	switch {
	case !h.Root:
		h.Problems = append(h.Problems, "not root: lab needs root (network namespaces, mounts, netlink); run it with sudo")
	case len(h.MissingCap) > 0:
		h.Problems = append(h.Problems, "root without "+strings.Join(h.MissingCap, ", ")+" (a container?): run lab on the host or give it these capabilities")
	}
	h.Mode, h.Reason = autoMode(h.Kernel, h.Features)
	if h.Mode == ModeVM && umlErr != nil {
		h.Problems = append(h.Problems, umlErr.Error())
	}
	return h
}

// missing returns the modules the host can neither use nor load.
func missing(fs []KernelFeature) []string {
	var out []string
	for _, f := range fs {
		if f.State == ModuleMissing {
			out = append(out, f.Module)
		}
	}
	return out
}

// autoMode is the decision of --vm auto: natively when the host kernel
// offers every module the lab needs (built in, loaded or loadable),
// otherwise in the VM.
func autoMode(release string, fs []KernelFeature) (Mode, string) {
	if m := missing(fs); len(m) > 0 {
		return ModeVM, fmt.Sprintf("host kernel %s lacks %s: running the lab in a user-mode Linux VM",
			release, strings.Join(m, ", "))
	}
	var load []string
	for _, f := range fs {
		if f.State == ModuleLoadable {
			load = append(load, f.Module)
		}
	}
	if len(load) > 0 {
		return ModeNative, fmt.Sprintf("host kernel %s has every module the lab needs (%s to load)",
			release, strings.Join(load, ", "))
	}
	return ModeNative, fmt.Sprintf("host kernel %s has every module the lab needs", release)
}

// ChooseMode decides how a lab whose VIPs use these schedulers runs, and
// says why.
func ChooseMode(m VMMode, schedulers ...string) (Mode, string, error) {
	switch m {
	case "", VMAuto:
		h := CheckHost(schedulers...)
		return h.Mode, h.Reason, nil
	case VMAlways:
		return ModeVM, "--vm always", nil
	case VMNever:
		return ModeNative, "--vm never", nil
	}
	return "", "", fmt.Errorf("--vm %q: want auto, always or never", m)
}

// loadModules loads, natively, the kernel modules a lab with these
// schedulers needs and that the kernel has not loaded yet; it returns
// their names, dependencies included.
func loadModules(schedulers []string) ([]string, error) {
	k, err := kmod.Running()
	if err != nil {
		return nil, err
	}
	loaded, err := k.Load(kmod.Needs(schedulers...))
	var me *kmod.MissingError
	switch {
	case errors.As(err, &me):
		return nil, fmt.Errorf("%w; install the kernel's modules (Debian: linux-image-%s; Ubuntu: linux-modules-extra-%s), or run the lab in a VM with --vm always",
			err, k.Release, k.Release)
	case errors.Is(err, unix.EPERM):
		return loaded, fmt.Errorf("%w: this process may not load kernel modules (a container without CAP_SYS_MODULE?); load them on the host first (modprobe %s) or run the lab in a VM with --vm always",
			err, strings.Join(kmod.Names(kmod.Needs(schedulers...)), " "))
	case err != nil:
		return loaded, err
	}
	return loaded, nil
}

// labCaps are the capabilities a lab uses: namespaces and mounts
// (CAP_SYS_ADMIN), links, routes and IPVS (CAP_NET_ADMIN), modules
// (CAP_SYS_MODULE).
var labCaps = []struct {
	bit  uint
	name string
}{
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
	{unix.CAP_SYS_MODULE, "CAP_SYS_MODULE"},
}

// missingCaps reads the effective capabilities from a /proc/PID/status
// file and returns those of labCaps that are not there; nil when the file
// cannot be read.
func missingCaps(status string) []string {
	f, err := os.Open(status)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil
		}
		var out []string
		for _, c := range labCaps {
			if eff&(1<<c.bit) == 0 {
				out = append(out, c.name)
			}
		}
		return out
	}
	return nil
}

// schedulersOf returns the IPVS schedulers a topology's VIPs use, each
// once, in VIP order.
func schedulersOf(t *topology.Topology) []string {
	var out []string
	for _, v := range t.VIPs {
		if !slices.Contains(out, v.Scheduler) {
			out = append(out, v.Scheduler)
		}
	}
	return out
}
