package journal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as with
// iproute2.
const NetnsDir = "/run/netns"

// processStart reads a process's start time (field 22 of /proc/PID/stat).
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read start time of process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the process pid still is the one that started at
// start.
func Alive(pid int, start uint64) bool {
	s, err := processStart(pid)
	return err == nil && s == start && !isZombie(pid)
}

// killProcess kills the process and its process group if it is still the
// process that was recorded, and waits (briefly) until it is gone.
func killProcess(pid int, start uint64) error {
	if !Alive(pid, start) {
		return nil
	}
	if pgid, err := unix.Getpgid(pid); err == nil && pgid == pid {
		_ = unix.Kill(-pid, unix.SIGKILL)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return waitGone(func() bool { return !Alive(pid, start) })
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func waitGone(gone func() bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for !gone() {
		if time.Now().After(deadline) {
			return errors.New("still present after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// RemoveNetns kills whatever still runs in the named namespace, then
// unmounts and removes its file; a namespace that does not exist is not an
// error.
func RemoveNetns(name string) error {
	path := filepath.Join(NetnsDir, name)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := KillNetnsProcesses(st.Ino); err != nil {
		return err
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SignalNetnsProcesses sends sig to every process whose network namespace
// has the inode ino.
func SignalNetnsProcesses(ino uint64, sig unix.Signal) error {
	for _, pid := range netnsProcesses(ino) {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal process %d: %w", pid, err)
		}
	}
	return nil
}

// netnsProcesses lists the live processes in the namespace with inode ino,
// this one excepted.
func netnsProcesses(ino uint64) []int {
	self := os.Getpid()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == ino && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillNetnsProcesses kills every process whose network namespace has the
// inode ino, and waits until they are gone. Only processes inside one of
// the lab's own namespaces are ever matched.
func KillNetnsProcesses(ino uint64) error {
	find := func() []int { return netnsProcesses(ino) }
	pids := find()
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if len(pids) == 0 {
		return nil
	}
	return waitGone(func() bool { return len(find()) == 0 })
}

// removeLink deletes a link of the host's namespace by name.
func removeLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return netlink.LinkDel(l)
}
