package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"

	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/vm"
)

const (
	// runTimeout bounds a whole guest run: boot, tests, power-off.
	runTimeout = 5 * time.Minute
	// guestMargin is how much earlier than the host the guest's
	// -test.timeout fires, so that its goroutine dump reaches the console.
	guestMargin = 20 * time.Second
	// powerOffTimeout bounds the wait for the VM to end after its marker.
	powerOffTimeout = 30 * time.Second
	// guestMemory is the VM's memory: a test binary needs little.
	guestMemory = "1G"
	// pollInterval is how often the console and the VM are looked at.
	pollInterval = 25 * time.Millisecond
	// killTimeout bounds the retries of vm.Kill.
	killTimeout = 15 * time.Second
	// tapAttempts bounds the search for a free TAP name.
	tapAttempts = 10
)

// Run runs the tests matching name (a -test.run pattern) of the current
// test binary inside a fresh user-mode Linux VM and fails t if they fail
// there; the guest's console is copied into t.Log as it comes. It needs
// root, /dev/net/tun and linux.uml, and does not run in -short mode:
// otherwise it skips t with the reason, or fails it when
// LAB_REQUIRE_E2E=1. The run is bounded by five minutes (see [Timeout]; less if t's
// deadline is nearer); the VM is killed and its TAP removed when t ends.
// The test package's TestMain must call Main.
func Run(t testing.TB, name string, opts ...Option) {
	t.Helper()
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if vm.InGuest() {
		t.Fatalf("vmtest.Run(%q) called inside the vm: the test would boot vms forever", name)
	}
	kernel, reason := requirements()
	if reason != "" {
		testenv.SkipOrFail(t, "%s", reason)
	}
	if o.stockHost {
		if err := ensureDir(t, hostModules); err != nil {
			t.Fatalf("prepare a stock host: %v", err)
		}
	}
	code, err := run(t, kernel, name, o, func(line string) { t.Log("guest: " + line) })
	if err != nil {
		t.Fatalf("run %s in a vm: %v", name, err)
	}
	if code != 0 {
		t.Fatalf("%s failed in the vm with exit status %d: see the guest output above", name, code)
	}
}

func defaultOptions() options { return options{memory: guestMemory, timeout: runTimeout} }

// requirements returns the kernel, or why a VM cannot run here.
func requirements() (kernel, reason string) {
	if testing.Short() {
		return "", "a vm test does not run in -short mode"
	}
	if os.Geteuid() != 0 {
		return "", "not root: a vm needs a TAP device (CAP_NET_ADMIN)"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return "", "no /dev/net/tun on the host: a vm needs a TAP device"
	}
	kernel, err := vm.FindKernel()
	if err != nil {
		return "", err.Error()
	}
	return kernel, ""
}

// run boots a VM that runs the tests matching pattern, passes each line
// of its console to logLine and returns the tests' exit code. The VM is
// undone at the end of t.
func run(t testing.TB, kernel, pattern string, o options, logLine func(string)) (int, error) {
	t.Helper()
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		return 0, fmt.Errorf("find the test binary: %w", err)
	}
	dir, err := os.Getwd()
	if err != nil {
		return 0, fmt.Errorf("find the working directory: %w", err)
	}
	bound := o.timeout
	// A benchmark has no deadline of its own.
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok && time.Until(d)-guestMargin < bound {
			bound = time.Until(d) - guestMargin
		}
	}
	if bound <= guestMargin {
		return 0, fmt.Errorf("only %s left before the test deadline", bound+guestMargin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	s := spec{Run: pattern, Dir: dir, Timeout: bound - guestMargin, Nonce: newNonce(), StockHost: o.stockHost, Bench: o.bench}
	console := filepath.Join(t.TempDir(), "console.log")
	begin := time.Now()
	m, err := start(ctx, t, vm.Config{
		Kernel:     kernel,
		Memory:     o.memory,
		Init:       self,
		Env:        map[string]string{EnvSpec: s.encode()},
		ConsoleLog: console,
	})
	if err != nil {
		return 0, err
	}
	t.Logf("vm %d (tap %s) runs %s %s", m.PID, m.TAP, self, strings.Join(s.testArgs(), " "))
	code, err := follow(ctx, console, s.Nonce, func() bool { return alive(m.PID) }, logLine)
	if err != nil {
		return 0, err
	}
	t.Logf("guest tests ended with exit status %d after %s", code, time.Since(begin).Round(time.Millisecond))
	ended := waitEnd(ctx, m.PID, powerOffTimeout)
	t.Logf("vm powered off: %t, after %s", ended, time.Since(begin).Round(time.Millisecond))
	return code, nil
}

// start starts the VM on a TAP name and management subnet of its own,
// and undoes it at the end of t. The guest needs its management link to
// be set up, although nothing talks over it: the console is enough.
func start(ctx context.Context, t testing.TB, cfg vm.Config) (*vm.Machine, error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logWriter{t}, nil))
	for i := range tapAttempts {
		// "labvt" + at most 7 digits + "." + 1 digit: 14 characters.
		cfg.TAP = fmt.Sprintf("labvt%d.%d", os.Getpid(), i)
		host, guest, err := freeSubnet()
		if err != nil {
			return nil, err
		}
		cfg.HostAddr, cfg.GuestAddr = host, guest
		m, err := vm.Start(ctx, cfg, log)
		if errors.Is(err, os.ErrExist) {
			continue // another run of this process, or a stale one
		}
		if err != nil {
			return nil, fmt.Errorf("start vm: %w", err)
		}
		t.Cleanup(func() {
			if err := kill(m.PID, t.Logf); err != nil {
				t.Errorf("kill vm: %v", err)
			}
			if err := vm.DeleteTAP(m.TAP); err != nil {
				t.Errorf("delete tap: %v", err)
			}
			if err := removeUMID(m.TAP); err != nil {
				t.Errorf("remove uml directory: %v", err)
			}
		})
		return m, nil
	}
	return nil, fmt.Errorf("start vm: %d tap names taken", tapAttempts)
}

// freeSubnet returns the host and guest ends of a /30 in
// 169.254.216.0/24 that no host interface uses. Nothing is routed over
// it: a clash with a concurrent run is harmless.
func freeSubnet() (host, guest netip.Prefix, err error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return host, guest, fmt.Errorf("list host addresses: %w", err)
	}
	used := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			used[netip.PrefixFrom(p.Addr(), 30).Masked()] = true
		}
	}
	for i := 0; i < 256; i += 4 {
		base := netip.AddrFrom4([4]byte{169, 254, 216, byte(i)})
		if !used[netip.PrefixFrom(base, 30)] {
			return netip.PrefixFrom(base.Next(), 30), netip.PrefixFrom(base.Next().Next(), 30), nil
		}
	}
	return host, guest, errors.New("no free /30 in 169.254.216.0/24")
}

// follow reads the console file as it grows, passes each line to logLine
// and returns the exit code from the marker of nonce. It fails when the VM
// ends before the marker (isAlive reports false), when ctx ends, or when
// the tests matched nothing.
func follow(ctx context.Context, console, nonce string, isAlive func() bool, logLine func(string)) (int, error) {
	f, err := os.Open(console)
	if err != nil {
		return 0, fmt.Errorf("open console: %w", err)
	}
	defer f.Close()
	rd := bufio.NewReader(f)
	var partial string
	noTests := false
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		// Liveness first: what the VM wrote before it ended is read
		// below.
		running := isAlive()
		for {
			line, err := rd.ReadString('\n')
			partial += line
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("read console: %w", err)
			}
			line = strings.TrimRight(partial, "\r\n")
			partial = ""
			logLine(line)
			if strings.Contains(line, noTestsLine) {
				noTests = true
			}
			if code, ok := parseMarker(line, nonce); ok {
				if noTests {
					return code, errNoTests
				}
				return code, nil
			}
		}
		if !running {
			if partial != "" {
				logLine(strings.TrimRight(partial, "\r\n"))
			}
			return 0, errors.New("vm ended before the tests finished: see the guest output above")
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("guest tests not finished: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// kill ends the VM with vm.Kill. While the processes of a crashed VM are
// exiting, vm.Kill may find them without a command line and refuse them as
// not a VM: it is tried again until they are gone, at most killTimeout.
func kill(pid int, logf func(format string, args ...any)) error {
	deadline := time.Now().Add(killTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for retry := false; ; retry = true {
		err := vm.Kill(pid)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if !retry {
			logf("kill vm: %v: trying again", err)
		}
		<-tick.C
	}
}

// ensureDir creates dir when it does not exist, and removes it again at
// the end of t; an existing dir is left alone.
func ensureDir(t testing.TB, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return nil
}

// umidDir returns the directory UML keeps for the VM on TAP while it runs
// (pid file, management console socket): vm.Start names the VM after its
// TAP, under $TMPDIR/lab-uml.
func umidDir(tap string) string { return filepath.Join(os.TempDir(), "lab-uml", tap) }

// removeUMID removes the VM's UML directory. UML removes it on a clean
// power-off and vm.Kill while the VM runs, but after a guest kernel panic
// (UML aborts) nobody does. The TAP name is this run's own.
func removeUMID(tap string) error {
	dir := umidDir(tap)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// alive reports whether the main process of the VM still runs. Start
// reaps it as soon as it ends.
func alive(pid int) bool {
	return !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// waitEnd waits until the VM's main process ends, at most timeout; it
// reports whether it did.
func waitEnd(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// logWriter sends log lines to t.Log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
