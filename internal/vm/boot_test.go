package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"

	"github.com/google/go-cmp/cmp"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/kmod"
)

// The boot tests run this test binary as the VM's init: TestMain sees it is
// PID 1 with LAB_VM_ADDR set and runs guestMain instead of the tests.

const (
	envTestPort = "LAB_VM_TEST_PORT" // port the guest serves its report on
	envTestHold = "LAB_VM_TEST_HOLD" // "1": keep serving, never power off
	testPort    = 7447
)

func TestMain(m *testing.M) {
	if InGuest() {
		guestMain()
		return
	}
	os.Exit(m.Run())
}

// guestReport is what the guest answers to the host.
type guestReport struct {
	Release    string   `json:"release"`
	Hostname   string   `json:"hostname"`
	Interface  string   `json:"interface"`
	Modules    []string `json:"modules"` // from /proc/modules, sorted
	IPVSFamily uint16   `json:"ipvs_family"`
	IPIPLink   string   `json:"ipip_link"` // type of the link made in a new netns
	Devices    []string `json:"devices"`   // device nodes and mounts present
	Errors     []string `json:"errors"`
	// Timings: guest uptime when init started, then durations.
	Uptime  time.Duration `json:"uptime"`
	Setup   time.Duration `json:"setup"`
	Load    time.Duration `json:"load"`
	Checked time.Duration `json:"checked"`
}

// guestMain is the guest side of the boot tests, run as init.
func guestMain() {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	defer PowerOff()
	t0 := time.Now()
	r := guestReport{}
	fail := func(what string, err error) {
		r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", what, err))
		log.Error(what, "err", err)
	}
	if err := SetupGuest(log); err != nil {
		fail("setup guest", err)
		return // no management link: nobody to answer
	}
	r.Setup = time.Since(t0)
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		var up float64
		if _, err := fmt.Sscan(string(b), &up); err == nil {
			r.Uptime = time.Duration(up*float64(time.Second)) - r.Setup
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		fail("uname", err)
	}
	r.Release = unix.ByteSliceToString(uts.Release[:])
	r.Hostname, _ = os.Hostname()
	t1 := time.Now()
	if _, err := LoadGuestModules(); err != nil {
		fail("load modules", err)
	}
	r.Load = time.Since(t1)
	if b, err := os.ReadFile("/proc/modules"); err != nil {
		fail("read modules", err)
	} else {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			r.Modules = append(r.Modules, strings.Fields(line)[0])
		}
		slices.Sort(r.Modules)
	}
	if id, err := ipvsFamily(); err != nil {
		fail("ipvs family", err)
	} else {
		r.IPVSFamily = id
	}
	if typ, err := ipipInNewNetns(); err != nil {
		fail("ipip link", err)
	} else {
		r.IPIPLink = typ
	}
	for _, p := range []string{"/dev/null", "/dev/net/tun", "/dev/pts/ptmx", "/dev/shm", "/dev/fd", "/run/netns", "/sys/fs/cgroup/cgroup.controllers"} {
		if _, err := os.Stat(p); err == nil {
			r.Devices = append(r.Devices, p)
		}
	}
	addr, _ := netip.ParsePrefix(os.Getenv(EnvAddr))
	r.Interface = interfaceWith(addr.Addr())
	r.Checked = time.Since(t0)

	ln, err := net.Listen("tcp", net.JoinHostPort(addr.Addr().String(), os.Getenv(envTestPort)))
	if err != nil {
		fail("listen", err)
		return
	}
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Error("accept", "err", err)
			return
		}
		err = json.NewEncoder(conn).Encode(r)
		conn.Close()
		if err != nil {
			log.Error("send report", "err", err)
		}
		if os.Getenv(envTestHold) != "1" {
			return
		}
	}
}

// ipvsFamily returns the id of the generic netlink family IPVS.
func ipvsFamily() (uint16, error) {
	h, err := netlink.NewHandle(unix.NETLINK_GENERIC)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	f, err := h.GenlFamilyGet("IPVS")
	if err != nil {
		return 0, err
	}
	return f.ID, nil
}

// ipipInNewNetns creates an IPIP tunnel in a new network namespace and
// returns the type the kernel reports for it.
func ipipInNewNetns() (string, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return "", err
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		return "", err
	}
	defer ns.Close()
	if err := netns.Set(orig); err != nil {
		return "", err
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return "", err
	}
	defer h.Close()
	tun := &netlink.Iptun{
		LinkAttrs: netlink.LinkAttrs{Name: "lb-tun"},
		Local:     net.ParseIP("192.0.2.1"),
		Remote:    net.ParseIP("192.0.2.2"),
	}
	if err := h.LinkAdd(tun); err != nil {
		return "", err
	}
	link, err := h.LinkByName("lb-tun")
	if err != nil {
		return "", err
	}
	return link.Type(), nil
}

// interfaceWith returns the name of the interface holding addr.
func interfaceWith(addr netip.Addr) string {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == addr {
				return i.Name
			}
		}
	}
	return ""
}

// skipOrFail skips the test, or fails it when LAB_REQUIRE_E2E=1.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	testenv.SkipOrFail(t, "%s", reason)
}

// requireTAP skips unless this test can create TAP devices.
func requireTAP(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "not root: creating a TAP device needs CAP_NET_ADMIN")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		skipOrFail(t, "no /dev/net/tun on the host")
	}
}

// requireVM skips unless a VM can run here, and returns the kernel.
func requireVM(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		// make test runs the unit tests under -race with -short, and a
		// race-instrumented init cannot start in the guest (its shadow
		// memory does not fit).
		skipOrFail(t, "a vm test does not run in -short mode")
	}
	requireTAP(t)
	kernel, err := FindKernel()
	if err != nil {
		skipOrFail(t, err.Error())
	}
	return kernel
}

// waitFor polls cond until it is true, fails the test at the deadline.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		<-tick.C
	}
}

// freeSubnet returns a /30 in 169.254.213.0/24 that no host interface uses.
func freeSubnet(t *testing.T) (host, guest netip.Prefix) {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	used := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			used[netip.PrefixFrom(p.Addr(), 30).Masked()] = true
		}
	}
	for i := 0; i < 256; i += 4 {
		base := netip.AddrFrom4([4]byte{169, 254, 213, byte(i)})
		if !used[netip.PrefixFrom(base, 30)] {
			return netip.PrefixFrom(base.Next(), 30), netip.PrefixFrom(base.Next().Next(), 30)
		}
	}
	t.Fatal("no free /30 in 169.254.213.0/24")
	return
}

// testVM is a VM started for a test, undone at its end.
type testVM struct {
	*Machine
	cfg   Config
	start time.Time
}

func startTestVM(t *testing.T, kernel, tag string, env map[string]string) *testVM {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host, guest := freeSubnet(t)
	if env == nil {
		env = map[string]string{}
	}
	env[envTestPort] = fmt.Sprint(testPort)
	cfg := Config{
		Kernel:     kernel,
		Memory:     "512M",
		Init:       self,
		Env:        env,
		TAP:        fmt.Sprintf("labvm%s%d", tag, os.Getpid()%1000000),
		HostAddr:   host,
		GuestAddr:  guest,
		ConsoleLog: filepath.Join(t.TempDir(), "console.log"),
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	vm := &testVM{cfg: cfg, start: time.Now()}
	vm.Machine, err = Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	t.Logf("command line: %s %s", kernel, strings.Join(cfg.kernelArgs(umlDirIn(os.TempDir())), " "))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(cfg.ConsoleLog)
			t.Logf("console of %s:\n%s", cfg.TAP, b)
		}
		if err := Kill(vm.PID); err != nil {
			t.Errorf("Kill() error = %v", err)
		}
		if err := DeleteTAP(cfg.TAP); err != nil {
			t.Errorf("DeleteTAP() error = %v", err)
		}
	})
	return vm
}

// report connects to the guest until it answers, and decodes its report.
func (vm *testVM) report(t *testing.T, timeout time.Duration) guestReport {
	t.Helper()
	addr := net.JoinHostPort(vm.cfg.GuestAddr.Addr().String(), fmt.Sprint(testPort))
	var r guestReport
	waitFor(t, timeout, "guest answer on "+addr, func() (bool, error) {
		if members, err := sessionMembers("/proc", vm.PID); err != nil || len(members) == 0 {
			return false, fmt.Errorf("vm ended before answering (members %v, %v)", members, err)
		}
		conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
		if err != nil {
			return false, nil
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return false, err
		}
		b, err := io.ReadAll(conn)
		if err != nil {
			return false, err
		}
		return true, json.Unmarshal(b, &r)
	})
	return r
}

// linkExists reports whether a host link of that name exists.
func linkExists(t *testing.T, name string) bool {
	t.Helper()
	_, err := netlink.LinkByName(name)
	if err == nil {
		return true
	}
	if !isLinkNotFound(err) {
		t.Fatalf("look up link %s: %v", name, err)
	}
	return false
}

func TestBootGuest(t *testing.T) {
	kernel := requireVM(t)
	vm := startTestVM(t, kernel, "b", nil)
	if !linkExists(t, vm.TAP) {
		t.Fatalf("tap %s missing after Start", vm.TAP)
	}
	r := vm.report(t, 90*time.Second)
	t.Logf("boot to first answer: %s", time.Since(vm.start).Round(time.Millisecond))
	t.Logf("guest: kernel booted to init in %s; SetupGuest %s, LoadModules %s, report ready %s after init started",
		r.Uptime.Round(time.Millisecond), r.Setup.Round(time.Millisecond), r.Load.Round(time.Millisecond), r.Checked.Round(time.Millisecond))
	t.Logf("guest report: %+v", r)

	if len(r.Errors) > 0 {
		t.Errorf("guest errors:\n%s", strings.Join(r.Errors, "\n"))
	}
	if r.Hostname != "lab" {
		t.Errorf("guest hostname = %q, want lab", r.Hostname)
	}
	if r.Interface != mgmtInterface {
		t.Errorf("guest management interface = %q, want %s", r.Interface, mgmtInterface)
	}
	if r.IPVSFamily == 0 {
		t.Error("guest has no generic netlink family IPVS")
	}
	if r.IPIPLink != "ipip" {
		t.Errorf("link made in a new netns has type %q, want ipip", r.IPIPLink)
	}
	for _, m := range kmod.Names(GuestModules()) {
		if !slices.Contains(r.Modules, m) {
			t.Errorf("module %s not loaded in the guest (loaded: %v)", m, r.Modules)
		}
	}
	wantDevices := []string{"/dev/null", "/dev/net/tun", "/dev/pts/ptmx", "/dev/shm", "/dev/fd", "/run/netns", "/sys/fs/cgroup/cgroup.controllers"}
	if diff := cmp.Diff(r.Devices, wantDevices); diff != "" {
		t.Errorf("guest devices (-got +want):\n%s", diff)
	}

	// Having answered once, the guest powers off.
	waitFor(t, 60*time.Second, "vm power-off", func() (bool, error) {
		members, err := sessionMembers("/proc", vm.PID)
		return len(members) == 0, err
	})
	if _, err := os.Stat(filepath.Join(umlDirIn(os.TempDir()), vm.TAP)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("uml directory of %s left after power-off: %v", vm.TAP, err)
	}
	if err := Kill(vm.PID); err != nil {
		t.Errorf("Kill() after power-off error = %v", err)
	}
	if !linkExists(t, vm.TAP) {
		t.Errorf("persistent tap %s gone with the vm", vm.TAP)
	}
	for i := range 2 { // idempotent
		if err := DeleteTAP(vm.TAP); err != nil {
			t.Errorf("DeleteTAP() #%d error = %v", i+1, err)
		}
	}
	if linkExists(t, vm.TAP) {
		t.Errorf("tap %s still exists after DeleteTAP", vm.TAP)
	}
}

func TestKillVM(t *testing.T) {
	kernel := requireVM(t)
	vm := startTestVM(t, kernel, "k", map[string]string{envTestHold: "1"})
	vm.report(t, 90*time.Second)
	members, err := sessionMembers("/proc", vm.PID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host processes of the running vm: %v", members)

	// A crash of the main process leaves the others running.
	if err := unix.Kill(vm.PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "main uml process gone", func() (bool, error) {
		members, err = sessionMembers("/proc", vm.PID)
		return !slices.Contains(members, vm.PID), err
	})
	t.Logf("host processes left after SIGKILL of the main one: %v", members)

	if err := Kill(vm.PID); err != nil {
		t.Fatalf("Kill() error = %v", err)
	}
	if members, err := sessionMembers("/proc", vm.PID); err != nil || len(members) != 0 {
		t.Errorf("after Kill(), session members = %v, %v, want none", members, err)
	}
	if _, err := os.Stat(filepath.Join(umlDirIn(os.TempDir()), vm.TAP)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("uml directory of %s left after Kill: %v", vm.TAP, err)
	}
	if err := Kill(vm.PID); err != nil {
		t.Errorf("second Kill() error = %v", err)
	}
	if err := DeleteTAP(vm.TAP); err != nil {
		t.Fatalf("DeleteTAP() error = %v", err)
	}
	if linkExists(t, vm.TAP) {
		t.Errorf("tap %s still exists after DeleteTAP", vm.TAP)
	}
}

func TestStartRollsBack(t *testing.T) {
	requireTAP(t)
	host, guest := freeSubnet(t)
	cfg := Config{
		Kernel:     filepath.Join(t.TempDir(), "missing-linux.uml"),
		Init:       "/bin/true",
		TAP:        fmt.Sprintf("labvmr%d", os.Getpid()%1000000),
		HostAddr:   host,
		GuestAddr:  guest,
		ConsoleLog: filepath.Join(t.TempDir(), "console.log"),
	}
	t.Cleanup(func() { _ = DeleteTAP(cfg.TAP) })
	_, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start() with a missing kernel: error = %v, want one matching os.ErrNotExist", err)
	}
	if linkExists(t, cfg.TAP) {
		t.Errorf("tap %s left after a failed Start", cfg.TAP)
	}

	// An existing link of that name is not taken over.
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: cfg.TAP}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(cfg.TAP); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	_, err = Start(context.Background(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("Start() over an existing link: error = %v, want one matching os.ErrExist", err)
	}
	if err := DeleteTAP(cfg.TAP); err == nil {
		t.Error("DeleteTAP() removed a link that is not a tap")
	}
	if !linkExists(t, cfg.TAP) {
		t.Error("existing link removed by a failed Start or DeleteTAP")
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
