package lab_test

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

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/vm"
	"github.com/lab-lb/lab/internal/vm/vmtest"
	"github.com/lab-lb/lab/lab"
)

// TestMain makes this test binary a complete lab binary: Up starts the
// running executable as the lab's supervisor, node agents and VM init.
// Inside the stock-host guest of TestE2ENative, vmtest.Main runs the test
// as the guest's init instead.
func TestMain(m *testing.M) {
	vmtest.Main(m)
	lab.MaybeRunInternal()
	os.Exit(m.Run())
}

// requireE2E skips an end-to-end test, saying why, when this machine cannot
// run labs; with LAB_REQUIRE_E2E=1 (as in CI) it fails instead, so that a
// green CI means the labs really ran.
func requireE2E(t testing.TB) {
	t.Helper()
	var reason string
	switch {
	case testing.Short():
		reason = "end-to-end test skipped in -short mode"
	case os.Geteuid() != 0:
		reason = "end-to-end test needs root (network namespaces, mounts, netlink)"
	default:
		if h := lab.CheckHost(); h.Mode == lab.ModeVM && h.UML == "" {
			reason = h.Reason + ", and " + vm.ErrNoKernel.Error()
		}
	}
	if reason == "" {
		return
	}
	testenv.SkipOrFail(t, "%s", reason)
}

// hostState is what a lab must leave exactly as it found it on the host.
type hostState struct {
	Links  []string
	Routes []string
	Mounts []string
	Sysctl map[string]string
}

func snapshotHost(t *testing.T) hostState {
	t.Helper()
	var s hostState
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		a := l.Attrs()
		s.Links = append(s.Links, fmt.Sprintf("%s %s mtu=%d %s", a.Name, l.Type(), a.MTU, a.OperState))
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			s.Routes = append(s.Routes, r.String())
		}
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			s.Mounts = append(s.Mounts, f[4]) // mount point
		}
	}
	s.Sysctl = map[string]string{}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/fib_multipath_hash_policy", "net/ipv6/conf/all/forwarding"} {
		v, _ := os.ReadFile("/proc/sys/" + k)
		s.Sysctl[k] = strings.TrimSpace(string(v))
	}
	slices.Sort(s.Links)
	slices.Sort(s.Routes)
	slices.Sort(s.Mounts)
	return s
}

// checkNothingLeft asserts that lab name left nothing on the host.
func checkNothingLeft(t *testing.T, name string, before hostState) {
	t.Helper()
	if diff := cmp.Diff(before, snapshotHost(t)); diff != "" {
		t.Errorf("host state changed by lab %s (-before +after):\n%s", name, diff)
	}
	if _, err := os.Stat(filepath.Join(lab.StateDir, name)); !os.IsNotExist(err) {
		t.Errorf("state directory of lab %s still exists (err %v)", name, err)
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "lab-"+name) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, "--lab "+name+" ") || strings.Contains(cmd, "--name "+name+" ") || strings.Contains(cmd, "LAB_NAME="+name+" ") {
			t.Errorf("process left behind: %s: %s", p, cmd)
		}
	}
	if _, err := os.Stat("/etc/lb"); err == nil {
		t.Errorf("/etc/lb exists on the host")
	}
}

// up brings topology topo up as lab name for an end-to-end test (which it
// skips, with the reason, where labs cannot run), after removing what a
// crashed earlier run may have left, and takes it down when the test ends.
func up(t *testing.T, topo, name string) *lab.Lab {
	t.Helper()
	requireE2E(t)
	_ = lab.Down(context.Background(), name, nil)
	// Generous: the 37-node lab takes two minutes in the one-CPU VM on a
	// quiet machine, and CI machines are not always quiet.
	const timeout = 12 * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	l, err := lab.Up(ctx, topo, lab.Options{Name: name, Timeout: timeout, Progress: func(p lab.Progress) {
		t.Logf("%6.2fs %s %v", p.Elapsed.Seconds(), p.Step, p.Attrs)
	}})
	if err != nil {
		t.Fatalf("up %s: %v", topo, err)
	}
	t.Logf("lab up %s: %s (mode %s: %s)", topo, time.Since(start).Round(time.Millisecond), l.Mode, l.Reason)
	t.Cleanup(func() {
		if err := lab.Down(context.Background(), name, nil); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	// Runs before the lab goes down: a failed test shows the lab's event
	// log, unless the test took the lab down itself (and logged it then).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if _, err := lab.Open(name); err != nil {
			return
		}
		logEvents(t, l)
	})
	return l
}

// logEvents logs the event log of l: health transitions, IPVS and route
// changes, injections.
func logEvents(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := l.Events(ctx)
	if err != nil {
		t.Logf("events: %v", err)
		return
	}
	for _, e := range evs {
		t.Logf("event %s %-8s %-12s %s", e.Time.Format("15:04:05.000"), e.Node, e.Kind, e.Msg)
	}
}

func execOut(t *testing.T, l *lab.Lab, node string, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	code, err := l.Exec(ctx, node, argv, nil, &out, &out)
	if err != nil {
		t.Fatalf("exec %v on %s: %v", argv, node, err)
	}
	return out.String(), code
}

// execOK runs argv on node and fails t unless it exits 0.
func execOK(t *testing.T, l *lab.Lab, node string, argv ...string) {
	t.Helper()
	if out, code := execOut(t, l, node, argv...); code != 0 {
		t.Fatalf("%v on %s: exit %d\n%s", argv, node, code, out)
	}
}

func status(t *testing.T, l *lab.Lab) *lab.Status {
	t.Helper()
	st, err := l.Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	// What `lab status -o json` prints must be valid JSON that reads back.
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back lab.Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("status JSON does not read back: %v", err)
	}
	return st
}

// TestE2EMinimal brings the minimal topology up, pings every neighbour on
// every link, checks that /etc/lb is private to each node and that exit
// statuses pass through, and checks that down leaves nothing behind.
func TestE2EMinimal(t *testing.T) {
	const name = "e2e-minimal"
	requireE2E(t)
	_ = lab.Down(context.Background(), name, nil) // what a crashed run left
	before := snapshotHost(t)
	l := up(t, "../topologies/minimal.yaml", name)

	st := status(t, l)
	if len(st.Nodes) != 8 {
		t.Errorf("status lists %d nodes, want 8", len(st.Nodes))
	}
	// Every pair of nodes sharing a segment must reach each other.
	bySegment := map[string][]string{} // segment -> addresses
	for _, n := range st.Nodes {
		if n.Agent.State != "running" {
			t.Errorf("agent of %s: %+v", n.Name, n.Agent)
		}
		for _, i := range n.Interfaces {
			for _, a := range i.Addresses {
				bySegment[i.Segment] = append(bySegment[i.Segment], strings.Split(a, "/")[0])
			}
		}
	}
	for _, n := range st.Nodes {
		var targets []string
		for _, i := range n.Interfaces {
			self := map[string]bool{}
			for _, a := range i.Addresses {
				self[strings.Split(a, "/")[0]] = true
			}
			for _, a := range bySegment[i.Segment] {
				if !self[a] {
					targets = append(targets, a)
				}
			}
		}
		script := `for a in "$@"; do ping -c1 -W3 "$a" >/dev/null 2>&1 || echo "unreachable $a"; done`
		out, code := execOut(t, l, n.Name, append([]string{"sh", "-c", script, "ping"}, targets...)...)
		if code != 0 || out != "" {
			t.Errorf("%s cannot reach its neighbours: exit %d: %s", n.Name, code, out)
		}
	}

	// /etc/lb is private to each node.
	if out, code := execOut(t, l, "lb4-1", "touch", "/etc/lb/disable"); code != 0 {
		t.Fatalf("touch /etc/lb/disable on lb4-1: %d %s", code, out)
	}
	if _, code := execOut(t, l, "lb4-1", "test", "-e", "/etc/lb/disable"); code != 0 {
		t.Errorf("lb4-1 does not see its own /etc/lb/disable")
	}
	if _, code := execOut(t, l, "lb4-2", "test", "-e", "/etc/lb/disable"); code == 0 {
		t.Errorf("lb4-2 sees lb4-1's /etc/lb/disable")
	}
	if _, err := os.Stat("/etc/lb/disable"); err == nil {
		t.Errorf("the host sees lb4-1's /etc/lb/disable")
	}
	// The rest of /etc is the host's.
	if _, code := execOut(t, l, "client1", "test", "-r", "/etc/passwd"); code != 0 {
		t.Errorf("client1 cannot read /etc/passwd")
	}
	if out, code := execOut(t, l, "client1", "sh", "-c", "echo out; echo err >&2; exit 7"); code != 7 || !strings.Contains(out, "out") || !strings.Contains(out, "err") {
		t.Errorf("exec: exit %d output %q, want exit 7 with both streams", code, out)
	}

	if err := l.Down(context.Background()); err != nil {
		t.Fatalf("down: %v", err)
	}
	checkNothingLeft(t, name, before)
	// down is idempotent.
	if err := lab.Down(context.Background(), name, nil); err != nil {
		t.Errorf("second down: %v", err)
	}
}

// TestE2ECrashCleanup kills the lab's supervisor with SIGKILL and checks
// that `down` still removes everything.
func TestE2ECrashCleanup(t *testing.T) {
	const name = "e2e-crash"
	requireE2E(t)
	_ = lab.Down(context.Background(), name, nil) // what a crashed run left
	before := snapshotHost(t)
	l := up(t, "../topologies/minimal.yaml", name)
	st := status(t, l)
	// The supervisor runs in the lab's kernel: kill it from inside a node,
	// which shares the lab kernel's process IDs (in VM mode, the host
	// cannot see it).
	// The answer may be cut short: the command kills what relays it.
	_, _ = l.Exec(context.Background(), "client1", []string{"kill", "-9", fmt.Sprint(st.SupervisorPID)}, nil, io.Discard, io.Discard)
	if l.Mode == lab.ModeVM {
		// A hard crash of the VM itself too.
		_ = unix.Kill(l.PID, unix.SIGKILL)
	}
	if err := lab.Down(context.Background(), name, nil); err != nil {
		t.Fatalf("down after crash: %v", err)
	}
	checkNothingLeft(t, name, before)
}
