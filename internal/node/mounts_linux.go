package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// privateEtc gives the node its own /etc/lb without changing the host's
// /etc: inside the agent's mount namespace (cut off from the host's with
// MS_SLAVE), the host's /etc is bind-mounted to dir/host-etc, a tmpfs
// replaces /etc holding a symbolic link to every host entry, and /etc/lb is
// a bind mount of dir/lb, which the supervisor can read and write from the
// host. When dir holds a resolv.conf (the lab has dns nodes),
// /etc/resolv.conf is a link to it.
func privateEtc(dir string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	hostEtc := filepath.Join(dir, etcName)
	lb := filepath.Join(dir, LBDirName)
	for _, d := range []string{hostEtc, lb} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("/etc", hostEtc, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /etc: %w", err)
	}
	if err := unix.Mount("tmpfs", "/etc", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount tmpfs on /etc: %w", err)
	}
	ents, err := os.ReadDir(hostEtc)
	if err != nil {
		return err
	}
	// The lab's name servers, when it has some: the supervisor writes the
	// node's resolv.conf into its directory.
	resolv := filepath.Join(dir, ResolvConfName)
	ownResolv := false
	if _, err := os.Stat(resolv); err == nil {
		ownResolv = true
		if err := os.Symlink(resolv, "/etc/resolv.conf"); err != nil {
			return err
		}
	}
	for _, e := range ents {
		if e.Name() == "lb" || e.Name() == "resolv.conf" && ownResolv {
			continue
		}
		src := filepath.Join(hostEtc, e.Name())
		target := src
		// A relative symbolic link in /etc keeps its meaning only if it is
		// copied as it is.
		if e.Type()&os.ModeSymlink != 0 {
			if t, err := os.Readlink(src); err == nil && !filepath.IsAbs(t) {
				target = t
			}
		}
		if err := os.Symlink(target, filepath.Join("/etc", e.Name())); err != nil {
			return err
		}
	}
	if err := os.Mkdir(LBDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(lb, LBDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on /etc/lb: %w", lb, err)
	}
	return nil
}

// netnsSysfs remounts /sys so that /sys/class/net shows the node's own
// interfaces, as `ip netns exec` does.
func netnsSysfs() error {
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount /sys: %w", err)
	}
	return unix.Mount("sysfs", "/sys", "sysfs", 0, "")
}
