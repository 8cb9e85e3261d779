// Package cli is the `lab` command line: parsing and printing only, over
// the lab package. It is a package of its own kept apart from cmd/lab so that
// the binary's main stays one line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lab-lb/lab/lab"
)

// Main runs the lab command with os.Args and exits.
func Main() {
	lab.MaybeRunInternal()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case err != nil:
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// exitError passes a command's exit status through `lab exec`.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
