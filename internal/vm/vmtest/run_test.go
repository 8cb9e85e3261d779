package vmtest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/vm"
)

// These tests run twice: on the host, where they boot a VM running
// themselves, and inside it, where they check the guest.

// requireVM skips unless a VM can run here, or fails when
// LAB_REQUIRE_E2E=1, and returns the kernel.
func requireVM(t *testing.T) string {
	t.Helper()
	kernel, reason := requirements()
	if reason == "" {
		return kernel
	}
	if os.Getenv(envRequireE2E) == "1" {
		t.Fatalf("LAB_REQUIRE_E2E=1 but %s", reason)
	}
	t.Skipf("skipping: %s (LAB_REQUIRE_E2E=1 makes this a failure)", reason)
	return ""
}

// checkLeftovers makes t fail if, once its other cleanups have run, a VM
// of this process left a TAP, a UML directory or a process behind. It must
// be called before the VM starts: cleanups run last in, first out.
func checkLeftovers(t *testing.T) {
	t.Helper()
	prefix := fmt.Sprintf("labvt%d.", os.Getpid())
	t.Cleanup(func() {
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, prefix) {
				t.Errorf("tap %s left behind", l.Attrs().Name)
			}
		}
		dirs, err := filepath.Glob(umidDir(prefix + "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(dirs) > 0 {
			t.Errorf("uml directories left behind: %v", dirs)
		}
		procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs {
			b, _ := os.ReadFile(p) // gone meanwhile: fine
			if strings.Contains(string(b), "\x00umid="+prefix) {
				t.Errorf("vm process %s left behind", filepath.Dir(p))
			}
		}
	})
}

func TestRunInGuest(t *testing.T) {
	if !vm.InGuest() {
		checkLeftovers(t)
		Run(t, "^TestRunInGuest$")
		return
	}
	// What Main promises the tests inside the VM.
	if !testing.Verbose() {
		t.Error("tests in the guest do not run with -test.v")
	}
	if f := flag.Lookup("test.count"); f == nil || f.Value.String() != "1" {
		t.Errorf("-test.count in the guest = %v, want 1", f)
	}
	if os.Getenv(envRequireE2E) != "1" {
		t.Errorf("%s=%q in the guest, want 1", envRequireE2E, os.Getenv(envRequireE2E))
	}
	if os.Getenv("PATH") == "" {
		t.Error("no PATH in the guest")
	}
	// The working directory is the package's, as on the host.
	if _, err := os.Stat("vmtest.go"); err != nil {
		t.Errorf("working directory is not the package's: %v", err)
	}
	// Temporary files stay in the guest.
	if got := os.TempDir(); got != guestTmp {
		t.Errorf("os.TempDir() = %q, want %q", got, guestTmp)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(t.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Errorf("t.TempDir() is on a file system of type %#x, want tmpfs", st.Type)
	}
	// The kernel has what the VM is booted for.
	h, err := netlink.NewHandle(unix.NETLINK_GENERIC)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.GenlFamilyGet("IPVS"); err != nil {
		t.Errorf("no generic netlink family IPVS in the guest: %v", err)
	}
	mods, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ip_vs_mh", "ipip"} {
		if !strings.Contains(string(mods), m+" ") {
			t.Errorf("module %s not loaded in the guest", m)
		}
	}
}

const deliberate = "deliberate failure inside the vm"

func TestRunReportsFailure(t *testing.T) {
	if vm.InGuest() {
		t.Log("this test fails on purpose in the guest")
		t.Error(deliberate)
		return
	}
	kernel := requireVM(t)
	checkLeftovers(t)
	var out []string
	code, err := run(t, kernel, "^TestRunReportsFailure$", defaultOptions(), func(line string) {
		out = append(out, line)
		t.Log("guest: " + line)
	})
	if err != nil {
		t.Fatalf("run() error = %v", err)
	}
	if code != 1 {
		t.Errorf("run() exit status = %d, want 1", code)
	}
	for _, want := range []string{deliberate, "--- FAIL: TestRunReportsFailure"} {
		if !slices.ContainsFunc(out, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("guest output lacks %q", want)
		}
	}
}

func TestRunNoTests(t *testing.T) {
	kernel := requireVM(t)
	checkLeftovers(t)
	_, err := run(t, kernel, "^TestNoSuchTest$", defaultOptions(), func(line string) { t.Log("guest: " + line) })
	if !errors.Is(err, errNoTests) {
		t.Errorf("run() with a pattern that matches nothing: error = %v, want %v", err, errNoTests)
	}
}

const crash = "deliberate panic inside the vm"

func TestRunGuestCrash(t *testing.T) {
	if vm.InGuest() {
		// The test binary is init: its exit panics the guest kernel.
		panic(crash)
	}
	kernel := requireVM(t)
	checkLeftovers(t)
	var out []string
	_, err := run(t, kernel, "^TestRunGuestCrash$", defaultOptions(), func(line string) {
		out = append(out, line)
		t.Log("guest: " + line)
	})
	if err == nil || !strings.Contains(err.Error(), "vm ended before the tests finished") {
		t.Errorf("run() error = %v, want the vm to end before the tests finished", err)
	}
	if !slices.ContainsFunc(out, func(l string) bool { return strings.Contains(l, "panic: "+crash) }) {
		t.Errorf("guest output lacks the panic message %q", crash)
	}
}
