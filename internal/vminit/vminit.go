// Package vminit is the init program of a lab's user-mode Linux VM: the
// lab binary started as PID 1 by the UML kernel. It prepares the guest
// (mounts, kernel modules, management link), starts the very same
// supervisor a native lab runs, reaps orphaned processes as PID 1 must, and
// powers the VM off when the supervisor exits.
package vminit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/supervisor"
	"github.com/lab-lb/lab/internal/vm"
)

// HostDir is where the guest sees the lab's state directory on the host.
const HostDir = "/run/lab-host"

// Run is the whole life of the VM's init; it never returns.
func Run() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(log); err != nil {
		log.Error("lab failed", "err", "vm init: "+err.Error())
	}
	vm.PowerOff()
}

func run(log *slog.Logger) error {
	// The token sits in the host's /run, which the guest's tmpfs hides:
	// read it first.
	token, err := os.ReadFile(os.Getenv("LAB_TOKEN_FILE"))
	if err != nil {
		return fmt.Errorf("read control token: %w", err)
	}
	// The kernel starts init with almost no environment.
	if os.Getenv("PATH") == "" {
		os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	name := os.Getenv("LAB_NAME")
	// The lab's state directory on the host (generated configurations)
	// disappears under the guest's /run: hold it open, and bind it at
	// HostDir once /run is the guest's.
	hostDir, err := os.Open(filepath.Join("/run/lab", name))
	if err != nil {
		return fmt.Errorf("open the lab's host directory: %w", err)
	}
	defer hostDir.Close()
	if err := vm.SetupGuest(log); err != nil {
		return err
	}
	if err := os.MkdirAll(HostDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", hostDir.Fd()), HostDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the lab's host directory: %w", err)
	}
	if _, err := vm.LoadGuestModules(); err != nil {
		return err
	}
	// Every module the lab needs is loaded now. The guest has no module
	// tree of its own under /lib/modules, so a kernel request for another
	// one could only spawn a modprobe that fails: turn those requests off.
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte("\n"), 0); err != nil {
		log.Warn("disable module autoloading", "err", err)
	}
	log.Info("progress", "step", "vm booted")
	dir := filepath.Join("/run/lab", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, token, 0o600); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, supervisor.ArgSupervise, "--name", name, "--topology", os.Getenv("LAB_TOPOLOGY"),
		"--dir", dir, "--listen", os.Getenv("LAB_LISTEN"), "--mode", string(control.ModeVM), "--token-file", tokenFile,
		"--configs", filepath.Join(HostDir, supervisor.ConfigsDir))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	// As PID 1, reap every child; stop when the supervisor is gone.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid == cmd.Process.Pid {
			return nil
		}
	}
}
