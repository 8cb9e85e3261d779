package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/journal"
	"github.com/lab-lb/lab/internal/supervisor"
	"github.com/lab-lb/lab/internal/vm"
)

// Down takes the lab down and waits until nothing of it is left.
func (l *Lab) Down(ctx context.Context) error {
	l.client.Close()
	return Down(ctx, l.Name, nil)
}

// Down takes the lab called name down. A lab that is not up is not an
// error. A lab whose supervisor crashed is cleaned from its journals.
func Down(ctx context.Context, name string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := os.Stat(labDir(name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return cleanup(ctx, name, log)
}

// cleanup asks a live lab to take itself down, then undoes whatever the
// journals still name and removes the lab's state directory.
func cleanup(ctx context.Context, name string, log *slog.Logger) error {
	dir := labDir(name)
	in, err := readInfo(name)
	if err == nil && in.Alive() {
		if err := askDown(ctx, in); err != nil {
			log.Warn("lab did not take itself down, cleaning up from its journal", "lab", name, "err", err)
		}
		waitExit(in, 20*time.Second)
	}
	var errs []error
	if err == nil && in.Mode == ModeVM && in.PID > 0 {
		// A VM is several host processes; vm.Kill finds them all. Right
		// after a power-off, processes on their way out may not look like
		// UML any more: try again for a moment.
		var kerr error
		for range 30 {
			if kerr = vm.Kill(in.PID); kerr == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if kerr != nil {
			errs = append(errs, kerr)
		}
	}
	// The supervisor's journal (native mode) then the host's: the VM or
	// supervisor process, the TAP.
	for _, j := range []string{supervisor.JournalName, hostJournalName} {
		if err := journal.Undo(filepath.Join(dir, j), log); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
		_ = os.Remove(StateDir) // only when no other lab is left
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take lab %s down: %w", name, err)
	}
	return nil
}

func askDown(ctx context.Context, in *Info) error {
	c, err := control.NewClient(control.Endpoint(in.Endpoint), in.Token)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// A lab that dies meanwhile (a VM powering off) never answers: stop
	// asking as soon as its process is gone.
	go func() {
		for in.Alive() && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	return c.Post(ctx, "/v1/down", nil)
}

// waitExit waits for the supervisor (or the VM) to exit after `down`.
func waitExit(in *Info, d time.Duration) {
	deadline := time.Now().Add(d)
	for in.Alive() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
