package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/lab"
)

func newDoctorCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor [FILE]",
		Short: "Say what this host can do for a lab: kernel modules, user-mode Linux, privileges, and the mode lab up would choose",
		Long: `Say what this host can do for a lab: each kernel module a lab needs
(built in, loaded, loadable or missing), whether the user-mode Linux kernel
and HAProxy are installed, whether lab runs with the privileges it needs,
and which mode 'lab up --vm auto' would choose, and why. With a topology
FILE, only the IPVS schedulers its VIPs use count. It changes nothing, and
exits 1 when something would stop 'lab up'.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var schedulers []string
			if len(args) == 1 {
				t, err := topology.Load(args[0])
				if err != nil {
					return err
				}
				for _, v := range t.VIPs {
					schedulers = append(schedulers, v.Scheduler)
				}
			}
			h := lab.CheckHost(schedulers...)
			if err := g.print(cmd.OutOrStdout(), h, func(w io.Writer) { printHost(w, h) }); err != nil {
				return err
			}
			if len(h.Problems) > 0 {
				return failed("lab up cannot run here: %d problem(s), listed above", len(h.Problems))
			}
			return nil
		},
	}
	g.addOutputFlag(c)
	return c
}

func printHost(w io.Writer, h lab.Host) {
	tree := "no module tree: only built-in features count"
	if h.ModuleTree != "" {
		tree = "modules from " + h.ModuleTree
	}
	fmt.Fprintf(w, "kernel %s (%s)\n\n", h.Kernel, tree)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE\tSTATE\tFOR")
	for _, f := range h.Features {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Module, f.State, f.For)
	}
	tw.Flush()
	fmt.Fprintln(w)
	orNot := func(path, missing string) string {
		if path == "" {
			return missing
		}
		return path
	}
	fmt.Fprintf(w, "user-mode Linux  %s\n", orNot(h.UML, "not installed (apt-get install user-mode-linux)"))
	fmt.Fprintf(w, "haproxy          %s\n", orNot(h.HAProxy, "not installed (apt-get install haproxy)"))
	priv := "root"
	switch {
	case !h.Root:
		priv = "not root"
	case len(h.MissingCap) > 0:
		priv = "root, without " + strings.Join(h.MissingCap, ", ")
	}
	fmt.Fprintf(w, "privileges       %s\n", priv)
	fmt.Fprintf(w, "lab up would run %s: %s\n", h.Mode, h.Reason)
	for _, p := range h.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "version",
		Short: "Print lab's module version, commit and Go version, and the kernel features this host offers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := lab.CurrentVersion()
			return g.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				commit := v.Commit
				if commit == "" {
					commit = "unknown"
				} else if v.Modified {
					commit += " (modified)"
				}
				fmt.Fprintf(w, "lab %s, commit %s, built with %s\n", v.Module, commit, v.Go)
				fmt.Fprintf(w, "kernel %s: lab up would run %s (%s)\n", v.Host.Kernel, v.Host.Mode, v.Host.Reason)
				for _, f := range v.Host.Features {
					fmt.Fprintf(w, "  %-12s %-9s %s\n", f.Module, f.State, f.For)
				}
			})
		},
	}
	g.addOutputFlag(c)
	return c
}
