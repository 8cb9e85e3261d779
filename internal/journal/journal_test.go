package journal

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestUndoInReverse records objects, undoes the journal and checks every
// object is gone and the journal too; a second Undo is a no-op.
func TestUndoInReverse(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	path := filepath.Join(dir, "journal")
	j, err := Open(path, log)
	if err != nil {
		t.Fatal(err)
	}
	outer := filepath.Join(dir, "outer")
	inner := filepath.Join(outer, "inner")
	shared := filepath.Join(dir, "shared")
	for _, d := range []string{outer, inner, shared} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Someone else's file in the shared directory: it must survive.
	if err := os.WriteFile(filepath.Join(shared, "theirs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	for _, add := range []func() error{
		func() error { return j.Add(Record{Kind: KindEmptyDir, Path: shared}) },
		func() error { return j.Add(Record{Kind: KindDir, Path: outer}) },
		func() error { _, err := j.AddProcess(cmd.Process.Pid); return err },
		func() error { return j.Add(Record{Kind: KindDir, Path: inner}) },
	} {
		if err := add(); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()

	recs, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []Kind
	for _, r := range recs {
		kinds = append(kinds, r.Kind)
	}
	if diff := cmp.Diff([]Kind{KindEmptyDir, KindDir, KindProcess, KindDir}, kinds); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if err := Undo(path, log); err != nil {
		t.Fatalf("undo: %v", err)
	}
	<-done // the process was killed
	for _, gone := range []string{outer, path} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s still exists", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(shared, "theirs")); err != nil {
		t.Errorf("a file the lab did not create was removed: %v", err)
	}
	if err := Undo(path, log); err != nil {
		t.Errorf("second undo: %v", err)
	}
}

// TestReadTornLine checks that a journal cut mid-line by a crash still
// yields its complete records.
func TestReadTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	data := `{"kind":"dir","path":"/tmp/a"}` + "\n" + `{"kind":"netns","na`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Record{{Kind: KindDir, Path: "/tmp/a"}}, recs); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestRecycledPID checks that a process record whose start time does not
// match (the pid was reused) kills nothing.
func TestRecycledPID(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	start, err := processStart(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := killProcess(cmd.Process.Pid, start+1); err != nil {
		t.Fatal(err)
	}
	if !Alive(cmd.Process.Pid, start) {
		t.Errorf("a process with another start time was killed")
	}
}
