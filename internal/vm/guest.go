package vm

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/kmod"
)

// mgmtInterface is the name UML's vector driver gives the first device
// (vec0 on the command line).
const mgmtInterface = "vec0"

// InGuest reports whether this process is the init of a VM made by Start.
func InGuest() bool {
	return os.Getpid() == 1 && os.Getenv(EnvAddr) != ""
}

// mount is one file system SetupGuest mounts if it is not there yet.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	optional               bool // failure is logged, not returned
}

// guestMounts lists, in order, what the guest needs. The root file system
// is the host's, through hostfs: every directory not mounted over here is
// the host's own, and writes to it land on the host. The kernel mounts
// devtmpfs on /dev itself (CONFIG_DEVTMPFS_MOUNT), which gives the device
// nodes, /dev/net/tun included once tun is loaded; ptys need devpts.
func guestMounts() []mount {
	const nosuid, nodev, noexec = unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC
	return []mount{
		{"proc", "/proc", "proc", nosuid | nodev | noexec, "", false},
		{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, "", false},
		{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755", false},
		{"devpts", "/dev/pts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620", false},
		{"tmpfs", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777", false},
		{"tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755", false},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid | nodev | noexec, "", true},
	}
}

// SetupGuest prepares the guest for the lab, as its init (PID 1): pseudo
// file systems (/proc, /sys, /dev with ptys and shared memory, a tmpfs on
// /run with /run/netns, cgroup2), hostname "lab", lo up, and the management
// interface up with the address from LAB_VM_ADDR. It writes nothing to the
// host's file system and can be called again.
func SetupGuest(log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr, err := netip.ParsePrefix(os.Getenv(EnvAddr))
	if err != nil {
		return fmt.Errorf("parse %s: %w", EnvAddr, err)
	}
	for _, m := range guestMounts() {
		err := mountOnce(m)
		if err != nil && m.optional {
			log.Warn("optional mount failed", "target", m.target, "err", err)
			continue
		}
		if err != nil {
			return err
		}
		if m.target == "/dev" {
			// Directories and links inside /dev: on the guest's devtmpfs.
			if err := populateDev(); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		return fmt.Errorf("create /run/netns: %w", err)
	}
	if err := unix.Sethostname([]byte("lab")); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	name, err := configureLinks(addr)
	if err != nil {
		return err
	}
	log.Info("guest ready", "interface", name, "addr", addr)
	return nil
}

// mountOnce mounts m unless its target already is a mount point of that
// type. /proc is recognised by its magic number (hostfs reports its own),
// the others from /proc/self/mounts.
func mountOnce(m mount) error {
	if m.target == "/proc" {
		var st unix.Statfs_t
		if err := unix.Statfs(m.target, &st); err == nil && st.Type == unix.PROC_SUPER_MAGIC {
			return nil
		}
	} else {
		b, err := os.ReadFile("/proc/self/mounts")
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
		if mounted(b, m.target, m.fstype) {
			return nil
		}
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// mounted reports whether a /proc/self/mounts text has a file system of
// type fstype on target.
func mounted(mounts []byte, target, fstype string) bool {
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == target && f[2] == fstype {
			return true
		}
	}
	return false
}

// populateDev adds to the guest's /dev what devtmpfs lacks and programs
// expect: mount points for ptys and shared memory, and the /dev/fd links.
func populateDev() error {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("populate /dev: %w", err)
	}
	if !mounted(b, "/dev", "devtmpfs") {
		// Never create anything in the host's /dev.
		return errors.New("populate /dev: not a devtmpfs")
	}
	for _, d := range []string{"/dev/pts", "/dev/shm"} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("populate /dev: %w", err)
		}
	}
	for name, target := range map[string]string{
		"/dev/fd":     "/proc/self/fd",
		"/dev/stdin":  "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1",
		"/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, name); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("populate /dev: %w", err)
		}
	}
	return nil
}

// configureLinks brings lo up and gives the management interface its
// address; it returns the interface's name.
func configureLinks(addr netip.Prefix) (string, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return "", fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return "", fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return "", fmt.Errorf("set lo up: %w", err)
	}
	link, err := mgmtLink(h)
	if err != nil {
		return "", err
	}
	name := link.Attrs().Name
	ipnet, err := netlink.ParseIPNet(addr.String())
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", addr, err)
	}
	if err := h.AddrReplace(link, &netlink.Addr{IPNet: ipnet}); err != nil {
		return "", fmt.Errorf("add address %s to %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return "", fmt.Errorf("set %s up: %w", name, err)
	}
	return name, nil
}

// mgmtLink finds the management interface: vec0, else the only link other
// than lo.
func mgmtLink(h *netlink.Handle) (netlink.Link, error) {
	if link, err := h.LinkByName(mgmtInterface); err == nil {
		return link, nil
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var names []string
	var other []netlink.Link
	for _, l := range links {
		names = append(names, l.Attrs().Name)
		if l.Attrs().Flags&net.FlagLoopback == 0 {
			other = append(other, l)
		}
	}
	if len(other) != 1 {
		return nil, fmt.Errorf("find management interface: no %s among %s", mgmtInterface, strings.Join(names, ", "))
	}
	return other[0], nil
}

// PowerOff flushes the file systems and powers the VM off. It returns only
// if the reboot system call fails (not PID 1, or not privileged).
func PowerOff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// GuestModules returns the kernel modules loaded in the guest: every
// module any lab needs (kmod.Needs), and what the guest's own set-up and
// tests use besides (/dev/net/tun, dummy links, overlays).
func GuestModules() []kmod.Module {
	mods := kmod.Needs()
	for _, name := range []string{"nf_conntrack", "dummy", "overlay", "tun"} {
		mods = append(mods, kmod.Module{Name: name, For: "the guest"})
	}
	return mods
}

// GuestModuleTree is where the guest's modules are: Debian's user-mode
// Linux package installs them there, not under /lib/modules.
func GuestModuleTree(release string) string {
	return filepath.Join("/usr/lib/uml/modules", release)
}

// LoadGuestModules loads GuestModules from GuestModuleTree and returns the
// names of those it loaded.
func LoadGuestModules() ([]string, error) {
	k, err := kmod.Running()
	if err != nil {
		return nil, err
	}
	return k.WithTree(GuestModuleTree(k.Release)).Load(GuestModules())
}
