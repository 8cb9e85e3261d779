package vmtest

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/kmod"
	"github.com/lab-lb/lab/internal/vm"
)

const (
	// guestTmp is the guest's TMPDIR, on the tmpfs SetupGuest mounts on
	// /run: temporary files of the tests do not land on the host.
	guestTmp = "/run/vmtest"
	// guestPath is PATH in the guest, whose init gets none.
	guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// exitSetup is the exit code reported when the guest could not be
	// prepared (m.Run uses 0 and 1).
	exitSetup = 3
)

// Main is called first thing in a test package's TestMain. Inside a VM
// started by Run (vm.InGuest() and LAB_VMTEST set) it sets the guest up
// (SetupGuest, LoadGuestModules), runs m.Run() with the
// -test.run pattern the host asked for, -test.v and -test.count=1, prints a
// final marker line with the exit code on the console, and powers off; it
// never returns there. Anywhere else it returns at once.
func Main(m *testing.M) {
	v, ok := os.LookupEnv(EnvSpec)
	if !ok || !vm.InGuest() {
		return
	}
	// The console is stdout; the marker goes on a line of its own.
	s, err := decodeSpec(v)
	if err != nil {
		// Without the nonce no marker can be trusted: the host sees
		// the VM end without one, and this message.
		fmt.Printf("\nvmtest: %v\n", err)
		vm.PowerOff()
		os.Exit(exitSetup)
	}
	code := runGuest(m, s)
	fmt.Printf("\n%s\n", marker(s.Nonce, code))
	vm.PowerOff()
	// PowerOff returned: the reboot system call failed. Exiting as PID 1
	// panics the guest kernel, which ends the VM too.
	os.Exit(code)
}

// runGuest prepares the guest and runs the tests, returning the exit code.
func runGuest(m *testing.M, s spec) int {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	if err := prepareGuest(log, s); err != nil {
		log.Error("vmtest: prepare guest", "err", err)
		return exitSetup
	}
	args := s.testArgs()
	log.Info("vmtest: running tests", "args", args, "dir", s.Dir)
	os.Args = append([]string{os.Args[0]}, args...)
	if err := flag.CommandLine.Parse(args); err != nil {
		log.Error("vmtest: parse test flags", "err", err)
		return exitSetup
	}
	return m.Run()
}

// prepareGuest mounts what the guest needs, loads the kernel modules and
// gives the tests the environment they would have on the host.
func prepareGuest(log *slog.Logger, s spec) error {
	if err := vm.SetupGuest(log); err != nil {
		return err
	}
	if s.StockHost {
		if err := stockHost(); err != nil {
			return err
		}
	} else if _, err := vm.LoadGuestModules(); err != nil {
		return err
	}
	if err := os.MkdirAll(guestTmp, 0o1777); err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	env := map[string]string{"TMPDIR": guestTmp, envRequireE2E: "1"}
	if os.Getenv("PATH") == "" {
		env["PATH"] = guestPath
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	if s.Dir != "" {
		if err := os.Chdir(s.Dir); err != nil {
			return fmt.Errorf("enter the test directory: %w", err)
		}
	}
	return nil
}

// hostModules is where a distribution keeps its kernels' module trees.
const hostModules = "/lib/modules"

// stockHost makes the guest a stock host with nothing loaded: a tmpfs on
// /lib/modules (the host's own directory stays untouched) holding the
// user-mode Linux module tree as /lib/modules/RELEASE, and module
// autoloading off.
func stockHost() error {
	release, err := kmod.Release()
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", hostModules, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", hostModules, err)
	}
	if err := os.Symlink(vm.GuestModuleTree(release), filepath.Join(hostModules, release)); err != nil {
		return fmt.Errorf("offer the module tree: %w", err)
	}
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte("\n"), 0); err != nil {
		return fmt.Errorf("turn module autoloading off: %w", err)
	}
	return nil
}
