package vm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A UML VM is several host processes: the main one, I/O helper threads
// (separate processes sharing its memory) and one traced process per guest
// address space. After a SIGKILL of the main process the others live on,
// reparented to init. Start puts them all in a session of their own, whose
// id is the main process's PID, and no UML process leaves it.

// killTimeout bounds how long Kill waits for the processes to go.
const killTimeout = 10 * time.Second

// Kill ends a VM started by Start: it sends SIGKILL to every live host
// process of the session pid leads, waits until they are gone and removes
// the directory UML keeps for the VM. No such process is success. A session
// that does not look like a UML VM is left alone and reported.
func Kill(pid int) error {
	return killSession(pid, killTimeout)
}

func killSession(pid int, timeout time.Duration) error {
	const procDir = "/proc"
	if pid <= 1 {
		return fmt.Errorf("kill vm %d: invalid pid", pid)
	}
	members, err := sessionMembers(procDir, pid)
	if err != nil {
		return fmt.Errorf("kill vm %d: %w", pid, err)
	}
	if len(members) == 0 {
		return nil
	}
	args := umlArgs(procDir, members)
	if args == nil {
		return fmt.Errorf("kill vm %d: session %d is not a user-mode Linux vm", pid, pid)
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// Kill again on every round: a process may have been forked
		// between the scan and the signals.
		if err := unix.Kill(-pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill vm %d: %w", pid, err)
		}
		for _, m := range members {
			if err := unix.Kill(m, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill vm %d: process %d: %w", pid, m, err)
			}
		}
		<-tick.C
		if members, err = sessionMembers(procDir, pid); err != nil {
			return fmt.Errorf("kill vm %d: %w", pid, err)
		}
		if len(members) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill vm %d: processes %v still alive after %s", pid, members, timeout)
		}
	}
	if err := removeUMID(args); err != nil {
		return fmt.Errorf("kill vm %d: %w", pid, err)
	}
	return nil
}

// parseStat returns the state and the session id from the contents of
// /proc/PID/stat. The command name, in parentheses, may hold anything.
func parseStat(b []byte) (state byte, sid int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	// state ppid pgrp session ...
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 {
		return 0, 0, fmt.Errorf("short stat line %q", b)
	}
	if len(f[0]) != 1 || !(f[0][0] >= 'A' && f[0][0] <= 'Z' || f[0][0] >= 'a' && f[0][0] <= 'z') {
		return 0, 0, fmt.Errorf("bad state in stat line %q", b)
	}
	sid, err = strconv.Atoi(f[3])
	if err != nil {
		return 0, 0, fmt.Errorf("session id: %w", err)
	}
	return f[0][0], sid, nil
}

// sessionMembers returns the live processes (zombies excluded) of session
// sid.
func sessionMembers(procDir string, sid int) ([]int, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		state, s, err := parseStat(b)
		if err != nil || s != sid || state == 'Z' || state == 'X' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// umlArgs returns the command line of the first of pids that is a UML VM
// booting hostfs, or nil.
func umlArgs(procDir string, pids []int) []string {
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		for _, a := range args {
			if a == "rootfstype=hostfs" {
				return args
			}
		}
	}
	return nil
}

// removeUMID removes the directory named by the uml_dir= and umid=
// arguments, which UML removes itself only on a clean shutdown. Like UML,
// it removes the files in it, not subdirectories.
func removeUMID(args []string) error {
	var dir, umid string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "uml_dir="); ok {
			dir = v
		}
		if v, ok := strings.CutPrefix(a, "umid="); ok {
			umid = v
		}
	}
	if !filepath.IsAbs(dir) || !validTAP(umid) || umid == "." || umid == ".." {
		return nil
	}
	d := filepath.Join(dir, umid)
	ents, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove uml directory: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove uml directory: %w", err)
			}
		}
	}
	if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove uml directory: %w", err)
	}
	return nil
}
