// Package journal records every object a lab creates on a machine, as it is
// created, in an append-only file, so that the lab can be taken down in
// reverse order by the process that built it, by a later `lab down` after
// that process crashed, or by a failed `up` rolling itself back.
//
// Each record is one JSON line written and synced before the caller goes on,
// so a SIGKILL at any point leaves a journal that names at least everything
// that exists. Undoing a record is idempotent: an object already gone counts
// as removed.
package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// Kind says what sort of object a record names and so how it is undone.
type Kind string

// The kinds of objects a lab creates.
const (
	// KindNetns is a named network namespace under /run/netns. Undo kills
	// every process still inside it, then unmounts and removes it; the links,
	// addresses and routes inside go with it.
	KindNetns Kind = "netns"
	// KindProcess is a process (and its process group) identified by pid
	// and start time, so that a recycled pid is never killed.
	KindProcess Kind = "process"
	// KindLink is a network interface in the host's own namespace (the VM's
	// TAP), removed by name.
	KindLink Kind = "link"
	// KindDir is a directory removed with everything below it.
	KindDir Kind = "dir"
	// KindEmptyDir is a directory the lab created where others may put
	// files too (/run/netns): removed only if it is empty.
	KindEmptyDir Kind = "emptydir"
)

// Record names one created object.
type Record struct {
	Kind  Kind   `json:"kind"`
	Name  string `json:"name,omitempty"`  // netns or link name
	Path  string `json:"path,omitempty"`  // directory
	PID   int    `json:"pid,omitempty"`   // process
	Start uint64 `json:"start,omitempty"` // process start time, clock ticks since boot
}

func (r Record) String() string {
	switch r.Kind {
	case KindProcess:
		return fmt.Sprintf("process %d", r.PID)
	case KindDir, KindEmptyDir:
		return string(r.Kind) + " " + r.Path
	default:
		return string(r.Kind) + " " + r.Name
	}
}

// Journal appends records to a file.
type Journal struct {
	mu   sync.Mutex
	path string
	f    *os.File
	log  *slog.Logger
}

// Open opens (creating it if needed) the journal at path for appending.
func Open(path string, log *slog.Logger) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return &Journal{path: path, f: f, log: log}, nil
}

// Path returns the journal's file name.
func (j *Journal) Path() string { return j.path }

// Add records r durably. Call it right after the object exists (or, where
// creation cannot be undone half-way, right before creating it).
func (j *Journal) Add(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode journal record: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	return nil
}

// AddProcess records a running process by pid and start time, and
// returns the record.
func (j *Journal) AddProcess(pid int) (Record, error) {
	start, err := processStart(pid)
	if err != nil {
		return Record{}, err
	}
	r := Record{Kind: KindProcess, PID: pid, Start: start}
	return r, j.Add(r)
}

// Close closes the file; the records stay.
func (j *Journal) Close() error { return j.f.Close() }

// Read returns the records of the journal at path, oldest first. A missing
// journal has no records. A torn last line (a crash mid-write) is ignored.
func Read(path string) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Undo removes every object the journal at path names, newest first, then
// the journal itself. It goes on past failures and returns them joined, so
// that one stuck object does not leave the others behind.
func Undo(path string, log *slog.Logger) error {
	recs, err := Read(path)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if err := undo(r); err != nil {
			log.Warn("undo failed", "object", r.String(), "err", err)
			errs = append(errs, fmt.Errorf("remove %s: %w", r, err))
			continue
		}
		log.Debug("undone", "object", r.String())
	}
	if len(errs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove journal: %w", err))
		}
	}
	return errors.Join(errs...)
}

func undo(r Record) error {
	switch r.Kind {
	case KindNetns:
		return RemoveNetns(r.Name)
	case KindProcess:
		return killProcess(r.PID, r.Start)
	case KindLink:
		return removeLink(r.Name)
	case KindDir:
		if err := os.RemoveAll(r.Path); err != nil {
			return err
		}
		return nil
	case KindEmptyDir:
		err := os.Remove(r.Path)
		if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return nil
		}
		return err
	default:
		return fmt.Errorf("unknown journal record kind %q", r.Kind)
	}
}
