package ipvs

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/vm"
	"github.com/lab-lb/lab/internal/vm/vmtest"
)

// needE2E skips the test with the reason, or fails it when
// LAB_REQUIRE_E2E=1.
func needE2E(t *testing.T, format string, args ...any) {
	t.Helper()
	testenv.SkipOrFail(t, format, args...)
}

func TestOpen(t *testing.T) {
	t.Run("current namespace", func(t *testing.T) {
		// The kernel creates /proc/net/ip_vs in every namespace once
		// IPVS is there: Open must agree with it.
		_, statErr := os.Stat("/proc/self/net/ip_vs")
		tbl, err := Open("")
		switch {
		case statErr == nil && err != nil:
			t.Fatalf("Open failed although /proc/net/ip_vs exists: %v", err)
		case statErr == nil:
			if _, err := tbl.Dump(); err != nil {
				t.Errorf("Dump: %v", err)
			}
			if err := tbl.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		case !errors.Is(err, ErrNoIPVS):
			t.Fatalf("Open without IPVS (no /proc/net/ip_vs): error %v, want %v", err, ErrNoIPVS)
		case err.Error() != "kernel has no IPVS (generic netlink family IPVS missing): load ip_vs or use --vm":
			t.Errorf("error message %q", err)
		}
	})
	t.Run("missing namespace", func(t *testing.T) {
		path := t.TempDir() + "/no-such-netns"
		_, err := Open(path)
		if err == nil || errors.Is(err, ErrNoIPVS) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%q): error %v, want one naming the path", path, err)
		}
	})
}

// testNetns creates a network namespace with lo up and the given addresses
// on lo, removed at cleanup, and returns its path.
func testNetns(t *testing.T, suffix string, addrs ...string) string {
	t.Helper()
	name := fmt.Sprintf("lab-ipvs-test-%d-%s", os.Getpid(), suffix)
	errc := make(chan error, 1)
	go func() {
		// The thread ends up in the new namespace: it stays locked and
		// dies with the goroutine.
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		needE2E(t, "cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	path := "/run/netns/" + name
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(lo, addr); err != nil {
			t.Fatalf("add %s to lo: %v", a, err)
		}
	}
	return path
}

func openTable(t *testing.T, path string) *Table {
	t.Helper()
	tbl, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { tbl.Close() })
	return tbl
}

// checkDump compares the kernel state with want, counters left out.
func checkDump(t *testing.T, tbl *Table, want []Desired) {
	t.Helper()
	got, err := tbl.Dump()
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	opts := cmp.Options{
		cmpopts.EquateComparable(netip.Addr{}),
		cmpopts.EquateEmpty(),
		cmpopts.IgnoreTypes(Stats{}),
	}
	if diff := cmp.Diff(got, want, opts); diff != "" {
		t.Errorf("kernel state (-got +want):\n%s", diff)
	}
}

// applyTwice applies want, checks that a second Apply changes nothing and
// that the kernel holds dump.
func applyTwice(t *testing.T, tbl *Table, want, dump []Desired) []Change {
	t.Helper()
	changes := mustApply(t, tbl, want)
	if again := mustApply(t, tbl, want); len(again) != 0 {
		t.Errorf("second Apply changed:\n%s", strings.Join(lines(again), "\n"))
	}
	checkDump(t, tbl, dump)
	return changes
}

// withFlags returns d with the service flags the kernel reports.
func withFlags(d Desired, flags ...string) Desired {
	d.Service.Flags = flags
	return d
}

func TestKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		needE2E(t, "needs root for network namespaces")
	}
	if !vm.InGuest() {
		// IPVS must answer here, now: loadable is not enough.
		if err := checkFamily(""); err != nil {
			// The real kernel IPVS is in the user-mode Linux VM.
			t.Logf("running in a vm: %v", err)
			vmtest.Run(t, "^TestKernel$")
			return
		}
	}
	if err := checkFamily(""); err != nil {
		needE2E(t, "%v", err)
	}
	const client = "203.0.113.1"
	pathA := testNetns(t, "a", vip1+"/32", client+"/32")
	pathB := testNetns(t, "b", vip1+"/32", client+"/32")
	pathC := testNetns(t, "c", vip1+"/32", client+"/32")
	a := openTable(t, pathA)
	b := openTable(t, pathB)
	c := openTable(t, pathC)

	vip6 := "2001:db8::c633:6401"
	healthy := mhService(lb7s(lb71, lb72, lb74)...)
	joined := mhService(lb7s(lb71, lb72, lb73, lb74)...)
	failed := mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1), dest(lb74, 1))
	final := mhService(dest(lb72, 0), dest(lb73, 1), dest(lb74, 1))

	t.Run("fresh", func(t *testing.T) {
		changes := applyTwice(t, a, []Desired{healthy}, []Desired{withFlags(healthy, FlagFallback, FlagPort)})
		if len(changes) != 4 {
			t.Errorf("changes %q, want a service and three destinations", lines(changes))
		}
	})
	t.Run("add destination in the middle", func(t *testing.T) {
		applyTwice(t, a, []Desired{joined}, []Desired{withFlags(joined, FlagFallback, FlagPort)})
	})
	t.Run("weight 0 on failure", func(t *testing.T) {
		changes := applyTwice(t, a, []Desired{failed}, []Desired{withFlags(failed, FlagFallback, FlagPort)})
		if diff := cmp.Diff(lines(changes), []string{"update destination 192.0.2.140 weight 0 in tcp/198.51.100.1:80: weight 1 -> 0"}); diff != "" {
			t.Errorf("changes (-got +want):\n%s", diff)
		}
	})
	t.Run("remove destination", func(t *testing.T) {
		applyTwice(t, a, []Desired{final}, []Desired{withFlags(final, FlagFallback, FlagPort)})
	})
	t.Run("scheduler changes", func(t *testing.T) {
		for _, s := range []struct {
			sched string
			flags []string
			dump  []string
		}{
			{SchedulerSH, []string{FlagPort}, []string{FlagFallback, FlagPort}},
			{SchedulerWLC, nil, nil},
			{SchedulerRR, nil, nil},
			{SchedulerMH, []string{FlagPort}, []string{FlagFallback, FlagPort}},
		} {
			d := final
			d.Service = service(vip1, s.sched, s.flags...)
			changes := applyTwice(t, a, []Desired{d}, []Desired{withFlags(d, s.dump...)})
			if len(changes) != 1 || changes[0].Action != ActionUpdate || changes[0].Destination != nil {
				t.Errorf("to %s: changes %q, want one service update", s.sched, lines(changes))
			}
		}
	})
	t.Run("IPv6 and UDP services", func(t *testing.T) {
		v6 := Desired{Service: service(vip6, SchedulerMH, FlagPort), Destinations: lb7s("2001:db8::139", "2001:db8::140")}
		udp := mhService(lb7s(lb71)...)
		udp.Service.Protocol = ProtocolUDP
		applyTwice(t, a, []Desired{final, v6, udp}, []Desired{
			withFlags(final, FlagFallback, FlagPort),
			withFlags(udp, FlagFallback, FlagPort),
			withFlags(v6, FlagFallback, FlagPort),
		})
	})
	t.Run("same flows whatever the history", func(t *testing.T) {
		// a went through the history above, where the failed LB7 was
		// healthy first; b starts fresh; in c the failed LB7 never was
		// healthy and is re-added when another LB7 joins before it.
		applyTwice(t, a, []Desired{final}, []Desired{withFlags(final, FlagFallback, FlagPort)})
		applyTwice(t, b, []Desired{final}, []Desired{withFlags(final, FlagFallback, FlagPort)})
		for _, h := range []Desired{
			mhService(dest(lb71, 1), dest(lb72, 0), dest(lb74, 1)),
			mhService(dest(lb71, 1), dest(lb72, 0), dest(lb73, 1), dest(lb74, 1)),
		} {
			mustApply(t, c, []Desired{h})
		}
		applyTwice(t, c, []Desired{final}, []Desired{withFlags(final, FlagFallback, FlagPort)})

		ports := make([]int, 300)
		for i := range ports {
			ports[i] = 20000 + i
		}
		flowsA := scheduledFlows(t, pathA, client, vip1, ports)
		flowsB := scheduledFlows(t, pathB, client, vip1, ports)
		flowsC := scheduledFlows(t, pathC, client, vip1, ports)
		if diff := cmp.Diff(flowsA, flowsB); diff != "" {
			t.Errorf("flows scheduled differently (-a +b):\n%s", diff)
		}
		if diff := cmp.Diff(flowsC, flowsB); diff != "" {
			t.Errorf("flows scheduled differently (-c +b):\n%s", diff)
		}
		perDest := map[string]int{}
		for _, d := range flowsB {
			perDest[d]++
		}
		if perDest[lb72] != 0 || perDest[lb73] == 0 || perDest[lb74] == 0 {
			t.Errorf("flows per destination %v: want none to the failed %s and some to each other", perDest, lb72)
		}
		t.Logf("flows per destination: %v", perDest)
	})
	t.Run("empty state clears the table", func(t *testing.T) {
		applyTwice(t, a, nil, nil)
	})
}

// scheduledFlows opens one TCP connection from client:port to vip:80 per
// port inside the namespace and returns the destination IPVS scheduled
// each of them to, read from /proc/net/ip_vs_conn. The SYNs go nowhere: the
// destinations are not routed, but IPVS creates its connection entry before
// it tries to send.
func scheduledFlows(t *testing.T, nsPath, client, vip string, ports []int) map[int]string {
	t.Helper()
	type result struct {
		flows map[int]string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		// The thread joins the namespace and dies with the goroutine.
		runtime.LockOSThread()
		flows, err := scheduleIn(nsPath, client, vip, ports)
		done <- result{flows, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.flows
}

func scheduleIn(nsPath, client, vip string, ports []int) (map[int]string, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	src := netip.MustParseAddr(client).As4()
	dst := netip.MustParseAddr(vip).As4()
	for _, p := range ports {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return nil, err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: p, Addr: src}); err != nil {
			return nil, fmt.Errorf("bind %s:%d: %w", client, p, err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 80, Addr: dst}); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return nil, fmt.Errorf("connect from port %d: %w", p, err)
		}
	}
	// The entries are made while connect sends the SYN; poll in case.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		flows, err := readConns(client, ports)
		if err != nil || len(flows) == len(ports) {
			return flows, err
		}
		select {
		case <-deadline:
			return flows, fmt.Errorf("IPVS scheduled %d of %d connections", len(flows), len(ports))
		case <-tick.C:
		}
	}
}

// readConns parses this thread's /proc/net/ip_vs_conn: client port to
// destination address, for the given client and ports.
func readConns(client string, ports []int) (map[int]string, error) {
	f, err := os.Open("/proc/thread-self/net/ip_vs_conn")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	flows := map[int]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		// Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires ...
		fields := strings.Fields(s.Text())
		if len(fields) < 7 || fields[0] != "TCP" {
			continue
		}
		from, err1 := hexAddr(fields[1])
		port, err2 := strconv.ParseUint(fields[2], 16, 16)
		to, err3 := hexAddr(fields[5])
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("parse ip_vs_conn line %q: %w", s.Text(), err)
		}
		if from.String() == client && want[int(port)] {
			flows[int(port)] = to.String()
		}
	}
	return flows, s.Err()
}

// hexAddr parses an IPv4 address printed as %08X in network order.
func hexAddr(s string) (netip.Addr, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return netip.Addr{}, fmt.Errorf("not an IPv4 address in hex: %q", s)
	}
	return netip.AddrFrom4([4]byte(b)), nil
}
