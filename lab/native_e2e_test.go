package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/cli"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/vm/vmtest"
	"github.com/lab-lb/lab/lab"
)

// TestE2ENative runs the lab natively on a stock host: a user-mode Linux
// guest whose /lib/modules holds its kernel's module tree with nothing
// loaded and module autoloading off, as a fresh Debian or Ubuntu machine
// looks to lab (except that there the kernel would autoload: here lab
// must load every module it uses itself). Through the command line as a
// user types it: `lab doctor` says native with modules to load, `lab up
// --vm never topologies/minimal.yaml` loads them and builds the lab; then
// a curl through the VIP, kill, freeze and revive of an LB4, impair, add
// and remove of an LB7, `lab down`; then a second lab, of
// topologies/services.yaml, whose DNS tier is checked (checkDNSTier) and
// whose supervisor is SIGKILLed before `lab down`. The host's links, routes, namespaces,
// mounts, sysctls, processes and /run/lab must be as before, apart from
// what loading the modules creates by itself.
func TestE2ENative(t *testing.T) {
	requireE2E(t)
	if !vmtest.InStockHost() {
		// Whatever this host's kernel: a fresh stock host is the
		// point, not one whose modules are already loaded.
		vmtest.Run(t, "^TestE2ENative$", vmtest.StockHost(), vmtest.Memory("2G"), vmtest.Timeout(12*time.Minute))
		return
	}
	ctx := context.Background()
	const name = "native"
	fresh := snapshotStockHost(t)
	if m := loadedLabModules(); len(m) > 0 {
		t.Fatalf("the stock host has lab modules loaded before lab up: %v", m)
	}

	// lab doctor: native, because what is missing is loadable.
	out := runCLI(t, "doctor", "-o", "json")
	var h lab.Host
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("lab doctor -o json: %v\n%s", err, out)
	}
	if h.Mode != lab.ModeNative {
		t.Errorf("lab doctor: mode %s (%s), want native", h.Mode, h.Reason)
	}
	for _, f := range h.Features {
		if f.State != lab.ModuleLoadable {
			t.Errorf("lab doctor: %s is %s, want loadable on a fresh stock host", f.Module, f.State)
		}
	}

	// lab up --vm never loads the modules and builds the lab.
	out = runCLI(t, "--name", name, "up", "--vm", "never", "../topologies/minimal.yaml")
	t.Logf("lab up:\n%s", out)
	t.Cleanup(func() { _ = lab.Down(context.Background(), name, nil) })
	for _, m := range []string{"ip_vs", "ip_vs_mh", "ipip", "ip6_tunnel", "veth", "bridge", "sch_netem"} {
		if !strings.Contains(out, m) {
			t.Errorf("lab up does not say it loaded %s", m)
		}
	}
	if got, want := loadedLabModules(), []string{"bridge", "ip6_tunnel", "ip_vs", "ip_vs_mh", "ipip", "sch_netem", "veth"}; !slices.Equal(got, want) {
		t.Errorf("modules loaded after lab up: %v, want %v", got, want)
	}
	l, err := lab.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Mode != lab.ModeNative {
		t.Fatalf("lab runs in mode %s, want native", l.Mode)
	}

	// The data path: every LB7 and backend answers through the VIP.
	lb7s, servers := curlFrom(t, l, "client1", "http://198.51.100.1/", sourceRange("203.0.113", 1, 12))
	if len(lb7s) != 2 || len(servers) != 2 {
		t.Errorf("through the VIP: LB7s %v, backends %v; want both of each", lb7s, servers)
	}
	var sources6 []string
	for i := 1; i <= 12; i++ {
		sources6 = append(sources6, fmt.Sprintf("2001:db8:ff::%x", i))
	}
	lb7s, servers = curlFrom(t, l, "client1", "http://[2001:db8:100::1]/", sources6)
	if len(lb7s) != 2 || len(servers) != 2 {
		t.Errorf("through the IPv6 VIP: LB7s %v, backends %v; want both of each", lb7s, servers)
	}

	// Crash, silent failure and revival of an LB4.
	hops := func(st *lab.Status) int {
		return len(tier[node.RouterStatus](t, st, "r1").Routes["198.51.100.1/32"])
	}
	if err := l.Kill(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 20*time.Second, "killed lb4-2 out of r1's route", func(st *lab.Status) bool { return hops(st) == 1 })
	if err := l.Revive(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 60*time.Second, "revived lb4-2 back in r1's route", func(st *lab.Status) bool { return hops(st) == 2 })
	if err := l.Freeze(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 30*time.Second, "frozen lb4-2 out of r1's route", func(st *lab.Status) bool { return hops(st) == 1 })
	if err := l.Revive(ctx, "lb4-2"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 60*time.Second, "thawed lb4-2 back in r1's route", func(st *lab.Status) bool { return hops(st) == 2 })

	// netem on both ends of a link, then removed.
	if err := l.Impair(ctx, "client1", "edge", lab.Impairment{Delay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if out, code := execOut(t, l, "client1", "ping", "-c1", "-W3", "192.0.2.2"); code != 0 || pingTime(out) < 95*time.Millisecond {
		t.Errorf("ping over a link with 50ms each way: exit %d, want a round trip of 100ms or more\n%s", code, out)
	}
	if err := l.Impair(ctx, "client1", "edge", lab.Impairment{}); err != nil {
		t.Fatal(err)
	}

	// An LB7 added at run time, then removed.
	if err := l.Add(ctx, "lb7-3", "lb7-1"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 60*time.Second, "lb7-3 on every LB4", func(st *lab.Status) bool {
		return len(destinations(t, st, "lb4-1")) == 3 && len(destinations(t, st, "lb4-2")) == 3
	})
	if err := l.Remove(ctx, "lb7-3"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, 60*time.Second, "lb7-3 gone from every LB4", func(st *lab.Status) bool {
		return len(destinations(t, st, "lb4-1")) == 2 && len(destinations(t, st, "lb4-2")) == 2
	})

	runCLI(t, "down", name)
	withModules := snapshotStockHost(t)
	checkModuleTraces(t, fresh, withModules)

	// The DNS tier, in a lab whose supervisor then crashes: lab down
	// cleans up all the same, and this time nothing at all may differ
	// (the modules are loaded already).
	runCLI(t, "--name", name, "up", "--vm", "never", "../topologies/services.yaml")
	l2, err := lab.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	checkDNSTier(t, l2)
	pid := l2.PID
	l2.Close()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatalf("kill the supervisor %d: %v", pid, err)
	}
	runCLI(t, "down", name)
	if diff := cmp.Diff(withModules, snapshotStockHost(t)); diff != "" {
		t.Errorf("host state changed by a lab whose supervisor crashed (-before +after):\n%s", diff)
	}
}

// runCLI runs the lab command line and returns what it printed; it fails
// t when the command fails.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := cli.Run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("lab %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// pingTime returns the round trip in ping's "time=12.3 ms", or 0.
func pingTime(out string) time.Duration {
	_, rest, ok := strings.Cut(out, "time=")
	if !ok {
		return 0
	}
	var ms float64
	fmt.Sscanf(rest, "%g", &ms)
	return time.Duration(ms * float64(time.Millisecond))
}

// loadedLabModules returns which of the modules a minimal lab loads by
// name are loaded, sorted.
func loadedLabModules() []string {
	var out []string
	for _, m := range []string{"bridge", "ip6_tunnel", "ip_vs", "ip_vs_mh", "ipip", "sch_netem", "veth"} {
		if _, err := os.Stat(filepath.Join("/sys/module", m, "initstate")); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// stockHostState is what a native lab must leave as it found it.
type stockHostState struct {
	Links     []string
	Routes    []string
	Netns     []string
	Mounts    []string
	Processes []string
	RunLab    []string
	Sysctl    map[string]string
}

// volatileSysctls change by themselves: counters, random values.
var volatileSysctls = []string{
	"fs.dentry-state", "fs.file-nr", "fs.inode-nr", "fs.inode-state", "fs.aio-nr",
	"kernel.ns_last_pid", "kernel.random.", "kernel.pty.nr", "kernel.tainted",
	"net.netfilter.nf_conntrack_count",
}

func snapshotStockHost(t *testing.T) stockHostState {
	t.Helper()
	base := snapshotHost(t)
	s := stockHostState{Links: base.Links, Routes: base.Routes, Mounts: base.Mounts, Sysctl: map[string]string{}}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			s.Netns = append(s.Netns, e.Name())
		}
	}
	// User-space processes other than this test (PID 1): kernel threads
	// have an empty command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if p == "/proc/1/cmdline" {
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			s.Processes = append(s.Processes, string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	_ = filepath.WalkDir("/run/lab", func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			s.RunLab = append(s.RunLab, p)
		}
		return nil
	})
	// Every readable sysctl of the host.
	_ = filepath.WalkDir("/proc/sys", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		key := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
		for _, v := range volatileSysctls {
			if key == v || (strings.HasSuffix(v, ".") && strings.HasPrefix(key, v)) {
				return nil
			}
		}
		if b, err := os.ReadFile(p); err == nil {
			s.Sysctl[key] = strings.TrimSpace(string(b))
		}
		return nil
	})
	slices.Sort(s.Processes)
	return s
}

// moduleTraces are what loading the lab's modules creates in the host's
// own namespace by itself: the fallback devices tunl0 (ipip) and ip6tnl0
// (ip6_tunnel), IPv6 (a module
// in this kernel, which ip_vs depends on: its sysctls, lo's ::1 and the
// local routes), and the sysctls of IPVS, conntrack and the devices.
var moduleTraces = struct {
	links   []string
	sysctls []string // prefixes
}{
	links: []string{"tunl0 ipip", "ip6tnl0 ip6tnl"},
	sysctls: []string{
		"net.ipv4.vs.", "net.ipv6.", "net.netfilter.", "net.nf_conntrack_max",
		"net.ipv4.conf.tunl0.", "net.ipv4.neigh.tunl0.", "net.ipv4.conf.ip6tnl0.", "net.ipv4.neigh.ip6tnl0.", "net.core.bridge",
	},
}

// checkModuleTraces compares the fresh host with the host after a lab
// came and went: only moduleTraces may differ.
func checkModuleTraces(t *testing.T, fresh, after stockHostState) {
	t.Helper()
	var newLinks []string
	for _, l := range after.Links {
		if !slices.Contains(fresh.Links, l) {
			newLinks = append(newLinks, l)
			if !slices.ContainsFunc(moduleTraces.links, func(p string) bool { return strings.HasPrefix(l, p) }) {
				t.Errorf("link left on the host: %s", l)
			}
		}
	}
	t.Logf("links the modules created: %v", newLinks)
	for _, r := range after.Routes {
		// IPv6 itself (a module here) adds lo's local and multicast routes.
		if !slices.Contains(fresh.Routes, r) && !strings.Contains(r, ":") {
			t.Errorf("route left on the host: %s", r)
		}
	}
	var newKeys int
	for k, v := range after.Sysctl {
		old, ok := fresh.Sysctl[k]
		switch {
		case ok && old != v:
			t.Errorf("sysctl %s changed on the host: %q -> %q", k, old, v)
		case !ok:
			newKeys++
			if !slices.ContainsFunc(moduleTraces.sysctls, func(p string) bool { return strings.HasPrefix(k, p) }) {
				t.Errorf("sysctl %s appeared on the host (= %q)", k, v)
			}
		}
	}
	t.Logf("sysctls the modules created: %d", newKeys)
	for k := range fresh.Sysctl {
		if _, ok := after.Sysctl[k]; !ok {
			t.Errorf("sysctl %s vanished from the host", k)
		}
	}
	same := func(what string, a, b []string) {
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("%s changed on the host (-before +after):\n%s", what, diff)
		}
	}
	same("mounts", fresh.Mounts, after.Mounts)
	same("network namespaces", fresh.Netns, after.Netns)
	same("processes", fresh.Processes, after.Processes)
	same("files under /run/lab", fresh.RunLab, after.RunLab)
}
