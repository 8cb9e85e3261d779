// Package vm runs the lab inside a user-mode Linux (UML) kernel when the
// host kernel lacks IPVS or IPIP.
//
// The host side creates a TAP device for a management link and starts
// Debian's linux.uml detached, booting the host's root filesystem through
// hostfs with a program of ours (normally the lab binary itself) as init;
// Kill and DeleteTAP undo it. The guest side, run by that init as PID 1,
// mounts the pseudo file systems, configures the management interface and
// loads kernel modules with finit_module(2), so the lab's code then runs
// unchanged inside the guest.
package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Machine is a started VM.
type Machine struct {
	PID int    // main linux.uml process, leader of its own session
	TAP string // host end of the management link
}

// Start creates the TAP device cfg.TAP (persistent, with cfg.HostAddr, up)
// and starts linux.uml detached from the caller: in its own session, stdin
// /dev/null, console to cfg.ConsoleLog. It returns once the process runs,
// not once the guest has booted. On failure it removes what it created.
// The VM outlives ctx and the calling process; end it with Kill, then
// DeleteTAP.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Machine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := umlDirIn(os.TempDir())
	if err := cfg.validate(dir); err != nil {
		return nil, fmt.Errorf("invalid vm configuration: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()

	if err := createTAP(h, cfg.TAP, cfg.HostAddr.String()); err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			if err := deleteTAP(h, cfg.TAP); err != nil {
				log.Warn("remove tap after failed start", "tap", cfg.TAP, "err", err)
			}
		}
	}()

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create uml directory: %w", err)
	}
	console, err := os.OpenFile(cfg.ConsoleLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open console log: %w", err)
	}
	defer console.Close()

	cmd := exec.Command(cfg.Kernel, cfg.kernelArgs(dir)...)
	// Files, not pipes, are handed to the child: nothing breaks (SIGPIPE)
	// when this process exits.
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.Dir = "/" // UML looks for a disk image named root_fs in its working directory.
	// A session of its own: no controlling terminal (no SIGHUP when the
	// caller's terminal goes), and Kill finds every host process of the VM
	// by its session id.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Kernel, err)
	}
	started = true
	pid := cmd.Process.Pid
	// A guest kernel panic makes UML abort(): no core file of a 2 GB VM.
	if err := unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil); err != nil {
		log.Debug("disable vm core dumps", "pid", pid, "err", err)
	}
	// Reap the process when it ends, as long as this process lives.
	go func() { _ = cmd.Wait() }()
	log.Info("vm started", "pid", pid, "tap", cfg.TAP, "guest", cfg.GuestAddr, "console", cfg.ConsoleLog)
	return &Machine{PID: pid, TAP: cfg.TAP}, nil
}

// createTAP creates a persistent TAP device with an address, up. An
// existing link of that name is an error matching fs.ErrExist: it may
// belong to a running VM.
func createTAP(h *netlink.Handle, name, addr string) error {
	if _, err := h.LinkByName(name); err == nil {
		return fmt.Errorf("create tap %s: %w", name, os.ErrExist)
	} else if !isLinkNotFound(err) {
		return fmt.Errorf("create tap %s: %w", name, err)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// UML sets its own flags when it attaches; TUN_EXCL makes the
		// creation fail rather than attach to a device made meanwhile.
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_TUN_EXCL,
	}
	if err := h.LinkAdd(tap); err != nil {
		return fmt.Errorf("create tap %s: %w", name, err)
	}
	// The device persists; our queue must be closed for UML to attach.
	for _, f := range tap.Fds {
		f.Close()
	}
	ipnet, err := netlink.ParseIPNet(addr)
	if err == nil {
		err = h.AddrAdd(tap, &netlink.Addr{IPNet: ipnet})
	}
	if err == nil {
		err = h.LinkSetUp(tap)
	}
	if err != nil {
		if derr := deleteTAP(h, name); derr != nil {
			err = errors.Join(err, derr)
		}
		return fmt.Errorf("configure tap %s: %w", name, err)
	}
	return nil
}

// DeleteTAP removes a TAP device made by Start. A missing device is
// success; a link of that name that is not a TAP is left alone and
// reported.
func DeleteTAP(name string) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	return deleteTAP(h, name)
}

func deleteTAP(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Tuntap); !ok {
		return fmt.Errorf("delete tap %s: link is a %s, not a tap", name, link.Type())
	}
	if err := h.LinkDel(link); err != nil && !isLinkNotFound(err) {
		return fmt.Errorf("delete tap %s: %w", name, err)
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
