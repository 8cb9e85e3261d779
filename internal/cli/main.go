// Package cli is the `lab` command line: parsing and printing only, over
// the lab package. It is a package of its own kept apart from cmd/lab so that
// the binary's main stays one line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lab-lb/lab/lab"
)

// Main runs the lab command with os.Args and exits.
func Main() {
	lab.MaybeRunInternal()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
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

// Run runs the lab command with args (without the program name), writing
// to stdout and stderr; tests drive the command line through it. An error
// is what Main prints after "lab:"; `lab exec` returns the command's exit
// status as an error whose ExitCode method gives it.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// exitError passes a command's exit status through `lab exec`.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// ExitCode is the exit status lab passes through.
func (e exitError) ExitCode() int { return int(e) }
