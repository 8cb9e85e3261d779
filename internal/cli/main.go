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
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/internal/yamlerr"
	"github.com/lab-lb/lab/lab"
)

// Main runs the lab command with os.Args and exits.
func Main() {
	lab.MaybeRunInternal()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee exitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintln(os.Stderr, "lab:", err)
	}
	os.Exit(ExitCode(err))
}

// Exit statuses of lab (`lab exec` passes its command's through).
const (
	ExitOK     = 0 // done
	ExitFailed = 1 // a check or an assertion failed: a scenario, lab test --check, lab doctor, lab curl, an invalid topology or scenario file
	ExitUsage  = 2 // the command line is wrong: unknown command or flag, wrong arguments
	ExitLab    = 3 // the lab failed: it did not come up, is not up, or did not do what was asked
)

// ExitCode is the exit status for err, what Run returned.
func ExitCode(err error) int {
	var ee exitError
	var ue usageError
	var fe failedError
	var ye *yamlerr.Errors
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return int(ee)
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &fe), errors.As(err, &ye):
		return ExitFailed
	}
	return ExitLab
}

// usageError is a mistake in the command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// failedError is a check or an assertion that failed: the answer is no.
type failedError struct{ error }

func (e failedError) Unwrap() error { return e.error }

// failed marks err as a failed check or assertion (exit status 1).
func failed(format string, args ...any) error { return failedError{fmt.Errorf(format, args...)} }

// Run runs the lab command with args (without the program name), writing
// to stdout and stderr; tests drive the command line through it. An error
// is what Main prints after "lab:"; `lab exec` returns the command's exit
// status as an error whose ExitCode method gives it.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	markArgErrors(root)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = usageError{err}
	}
	return err
}

// exitError passes a command's exit status through `lab exec`.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// ExitCode is the exit status lab passes through.
func (e exitError) ExitCode() int { return int(e) }

// markArgErrors makes the argument checks of c and its subcommands return
// usage errors.
func markArgErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markArgErrors(sub)
	}
}
