// Package cpustat says where a machine's CPU time goes: the whole
// machine's from /proc/stat, and each process's from /proc/PID/stat,
// grouped into kinds that the caller names (an LB4's agent, an LB7's
// HAProxy...). `lab cpu` reports it for the kernel a lab runs in: the
// user-mode Linux VM's one CPU, or the host's.
package cpustat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// UserHZ is the unit of the times in /proc: clock ticks per second. Linux
// reports 100 to user space whatever its internal tick rate.
const UserHZ = 100

// System is the whole machine's CPU time, in ticks, summed over its CPUs
// (the "cpu" line of /proc/stat).
type System struct {
	User, Nice, Kernel, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
	CPUs                                                  int
}

// Total is all the time counted.
func (s System) Total() uint64 {
	return s.User + s.Nice + s.Kernel + s.Idle + s.IOWait + s.IRQ + s.SoftIRQ + s.Steal
}

// Busy is the time not idle.
func (s System) Busy() uint64 { return s.Total() - s.Idle - s.IOWait }

// Process is one process's CPU time so far.
type Process struct {
	PID   int
	Comm  string // the program's name, at most 15 characters
	Ticks uint64 // user and system time
	Start uint64 // start time after boot, in ticks: tells a reused PID
	NetNS uint64 // inode of its network namespace; 0 when unknown
}

// ReadSystem reads the machine's CPU time from proc (normally "/proc").
func ReadSystem(proc string) (System, error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return System{}, err
	}
	return parseSystem(b)
}

func parseSystem(b []byte) (System, error) {
	var s System
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "cpu":
			if len(f) < 9 {
				return s, fmt.Errorf("parse /proc/stat: short cpu line %q", sc.Text())
			}
			var v [8]uint64
			for i := range v {
				n, err := strconv.ParseUint(f[i+1], 10, 64)
				if err != nil {
					return s, fmt.Errorf("parse /proc/stat: %w", err)
				}
				v[i] = n
			}
			s.User, s.Nice, s.Kernel, s.Idle, s.IOWait, s.IRQ, s.SoftIRQ, s.Steal = v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
			found = true
		case strings.HasPrefix(f[0], "cpu"):
			s.CPUs++
		}
	}
	if !found {
		return s, errors.New("parse /proc/stat: no cpu line")
	}
	return s, nil
}

// ReadProcesses reads every process's CPU time from proc. Processes that
// end while it reads are left out.
func ReadProcesses(proc string) ([]Process, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		p, err := parseProcess(b)
		if err != nil {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
		if link, err := os.Readlink(filepath.Join(proc, e.Name(), "ns", "net")); err == nil {
			p.NetNS = parseNSLink(link)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseProcess reads /proc/PID/stat: "PID (COMM) STATE PPID ...", where
// COMM may hold spaces and parentheses; utime and stime are fields 14 and
// 15, starttime field 22.
func parseProcess(b []byte) (Process, error) {
	var p Process
	s := string(bytes.TrimSpace(b))
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return p, fmt.Errorf("parse stat %q: no command", s)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return p, fmt.Errorf("parse stat: pid: %w", err)
	}
	p.PID, p.Comm = pid, s[open+1:end]
	f := strings.Fields(s[end+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return p, fmt.Errorf("parse stat of %d: %d fields", pid, len(f)+2)
	}
	num := func(field int) uint64 {
		if err != nil {
			return 0
		}
		var n uint64
		n, err = strconv.ParseUint(f[field-3], 10, 64)
		return n
	}
	p.Ticks = num(14) + num(15)
	p.Start = num(22)
	if err != nil {
		return p, fmt.Errorf("parse stat of %d: %w", pid, err)
	}
	return p, nil
}

// parseNSLink reads "net:[4026531840]".
func parseNSLink(link string) uint64 {
	_, rest, ok := strings.Cut(link, "[")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
	return n
}

// Snapshot is the machine and its processes at one moment.
type Snapshot struct {
	Time      time.Time
	System    System
	Processes []Process
}

// Take reads a Snapshot from proc.
func Take(proc string) (Snapshot, error) {
	s := Snapshot{Time: time.Now()}
	var err error
	if s.System, err = ReadSystem(proc); err != nil {
		return s, err
	}
	s.Processes, err = ReadProcesses(proc)
	return s, err
}

// Kind is the CPU time of one kind of process.
type Kind struct {
	Kind      string  `json:"kind"`
	Processes int     `json:"processes"`
	CPU       float64 `json:"cpu"` // in CPUs: 0.25 is a quarter of one CPU
}

// Report is where the CPU time went between two snapshots, or since boot.
type Report struct {
	Interval time.Duration `json:"interval_ns"` // 0: since boot (each process since it started)
	CPUs     int           `json:"cpus"`
	Busy     float64       `json:"busy"` // share of all CPUs' time not idle, 0 to 1
	// Kinds are the processes by kind, the busiest first. "other
	// (kernel, ended processes)" is the busy time no running process
	// accounts for: interrupts, kernel threads, processes that ended.
	Kinds []Kind `json:"kinds"`
}

// OtherKind names the busy time no live process accounts for.
const OtherKind = "other (kernel, ended processes)"

// Compare says where the CPU time went from before to after, grouping
// processes with kind (which returns "" for a process not to count
// apart: it then falls under OtherKind). Processes started in between
// count from their start.
func Compare(before, after Snapshot, kind func(Process) string) Report {
	prev := map[int]Process{}
	for _, p := range before.Processes {
		prev[p.PID] = p
	}
	total := after.System.Total() - before.System.Total()
	busy := after.System.Busy() - before.System.Busy()
	return report(after, total, busy, after.Time.Sub(before.Time), kind, func(p Process) uint64 {
		if q, ok := prev[p.PID]; ok && q.Start == p.Start && p.Ticks >= q.Ticks {
			return p.Ticks - q.Ticks
		}
		return p.Ticks
	})
}

// SinceBoot says where the CPU time went since the machine booted: each
// running process's since it started.
func SinceBoot(s Snapshot, kind func(Process) string) Report {
	return report(s, s.System.Total(), s.System.Busy(), 0, kind, func(p Process) uint64 { return p.Ticks })
}

func report(s Snapshot, total, busy uint64, interval time.Duration, kind func(Process) string, used func(Process) uint64) Report {
	cpus := max(s.System.CPUs, 1)
	r := Report{Interval: interval, CPUs: cpus}
	if total == 0 {
		return r
	}
	r.Busy = float64(busy) / float64(total)
	// Ticks summed over CPUs; in CPUs, a tick is 1/(total/cpus).
	perCPU := float64(total) / float64(cpus)
	byKind := map[string]*Kind{}
	var accounted uint64
	for _, p := range s.Processes {
		k := kind(p)
		if k == "" {
			continue
		}
		t := used(p)
		accounted += t
		if byKind[k] == nil {
			byKind[k] = &Kind{Kind: k}
		}
		byKind[k].Processes++
		byKind[k].CPU += float64(t) / perCPU
	}
	if busy > accounted {
		byKind[OtherKind] = &Kind{Kind: OtherKind, CPU: float64(busy-accounted) / perCPU}
	}
	for _, k := range byKind {
		r.Kinds = append(r.Kinds, *k)
	}
	slices.SortFunc(r.Kinds, func(a, b Kind) int {
		switch {
		case a.CPU > b.CPU:
			return -1
		case a.CPU < b.CPU:
			return 1
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return r
}
