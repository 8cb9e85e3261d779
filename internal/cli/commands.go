package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/lab"
)

func newUpCmd(g *globals) *cobra.Command {
	var vmMode string
	var dryRun bool
	c := &cobra.Command{
		Use:   "up FILE",
		Short: "Build a lab from a topology file and wait until it is ready",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if dryRun {
				plan, err := lab.Plan(args[0], g.name)
				if err != nil {
					return err
				}
				return g.print(out, plan, func(w io.Writer) { fmt.Fprint(w, plan.String()) })
			}
			if g.output == "json" {
				return fmt.Errorf("-o json goes with --dry-run (lab status -o json describes a lab that is up)")
			}
			start := time.Now()
			l, err := lab.Up(cmd.Context(), args[0], lab.Options{
				Name: g.name, VM: lab.VMMode(vmMode), Log: g.logger(),
				Progress: func(p lab.Progress) {
					if why, ok := p.Attrs["why"]; ok { // the run mode comes first
						fmt.Fprintf(out, "%s: %s\n", p.Step, why)
						return
					}
					fmt.Fprintf(out, "  %6.2fs  %s%s\n", p.Elapsed.Seconds(), p.Step, formatAttrs(p.Attrs))
				},
			})
			if err != nil {
				return err
			}
			defer l.Close()
			fmt.Fprintf(out, "lab %s is up (%s, %.1fs); try `lab status` and `lab down %s`\n", l.Name, l.Mode, time.Since(start).Seconds(), l.Name)
			return nil
		},
	}
	c.Flags().StringVar(&vmMode, "vm", "auto", "run inside a user-mode Linux VM: auto (when the host kernel lacks IPVS/IPIP), always, never")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "validate the topology and print the kernel objects it would create (-o json with --dry-run)")
	g.addOutputFlag(c)
	return c
}

func formatAttrs(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, m[k])
	}
	return b.String()
}

func newDownCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "down [NAME]",
		Short: "Take a lab down and remove everything it created (no lab up is not an error)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			switch {
			case all:
				var err error
				if names, err = lab.Names(); err != nil {
					return err
				}
			case len(args) == 1:
				names = args
			case g.name != "":
				names = []string{g.name}
			default:
				var err error
				if names, err = lab.Names(); err != nil {
					return err
				}
				if len(names) > 1 {
					return fmt.Errorf("%d labs are up (%s): name one, or use --all", len(names), strings.Join(names, ", "))
				}
			}
			if len(names) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no lab is up: nothing to take down")
				return nil
			}
			ctx := context.WithoutCancel(cmd.Context()) // finish cleaning even after ^C
			for _, n := range names {
				start := time.Now()
				if err := lab.Down(ctx, n, g.logger()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "lab %s is down (%.1fs)\n", n, time.Since(start).Seconds())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&all, "all", false, "take every lab on this host down")
	return c
}

func newStatusCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "status",
		Short: "Show a lab's nodes, addresses and agents",
		Args:  cobra.NoArgs,
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, _ []string) error {
			st, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), st, func(w io.Writer) { printStatus(w, st) })
		}),
	}
	g.addOutputFlag(c)
	return c
}

func printStatus(w io.Writer, st *lab.Status) {
	fmt.Fprintf(w, "lab %s: %s, mode %s (kernel %s), %d nodes, up in %.1fs\n", st.Name, st.Phase, st.Mode, st.Kernel, len(st.Nodes), st.UpTime.Seconds())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSTATE\tADDRESSES\tTIER")
	for _, n := range st.Nodes {
		var ifs []string
		for _, i := range n.Interfaces {
			ifs = append(ifs, i.Name+"="+strings.Join(i.Addresses, ","))
		}
		if n.Loopback > 0 {
			ifs = append(ifs, fmt.Sprintf("lo+%d", n.Loopback))
		}
		state := "ready"
		switch {
		case n.Agent.State != "running":
			state = n.Agent.State
		case !n.Agent.Ready:
			state = "waiting: " + n.Agent.Waiting
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, state, strings.Join(ifs, " "), n.Agent.Summary)
	}
	tw.Flush()
	if len(st.VIPs) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tADDRESS\tSCHEDULER\tDNS NAMES")
	for _, v := range st.VIPs {
		addr := v.Protocol + "/" + v.Address
		if v.Allocated {
			addr += " (vip-pool)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Name, addr, v.Scheduler, strings.Join(v.Names, " "))
	}
	tw.Flush()
}

func newListCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List the labs on this host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			infos, err := lab.List()
			if err != nil {
				return err
			}
			type row struct {
				lab.Info
				Running bool `json:"running"`
			}
			rows := make([]row, 0, len(infos))
			for _, in := range infos {
				in.Token = ""
				rows = append(rows, row{in, in.Alive()})
			}
			return g.print(cmd.OutOrStdout(), rows, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tMODE\tSTATE\tTOPOLOGY\tCREATED")
				for _, r := range rows {
					state := "running"
					if !r.Running {
						state = "dead (run `lab down " + r.Name + "`)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Mode, state, r.Topology, r.Created.Format(time.DateTime))
				}
				tw.Flush()
			})
		},
	}
	g.addOutputFlag(c)
	return c
}

func newExecCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec NODE -- COMMAND [ARGS...]",
		Short: "Run a command inside a node (its network namespace and private /etc/lb); the exit status is passed through",
		Args:  cobra.MinimumNArgs(2),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			// Standard input is passed on when it is a pipe or a file; a
			// terminal is not (lab exec allocates no terminal).
			var stdin io.Reader
			if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
				stdin = os.Stdin
			}
			code, err := l.Exec(cmd.Context(), args[0], args[1:], stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError(code)
			}
			return nil
		}),
	}
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "logs NODE",
		Short: "Show a node's agent log",
		Args:  cobra.ExactArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Logs(cmd.Context(), args[0], follow, cmd.OutOrStdout())
		}),
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	return c
}
