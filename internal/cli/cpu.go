package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/lab"
)

func newCPUCmd(g *globals) *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "cpu",
		Short: "Show where the lab kernel's CPU goes, by kind of process (the VM's one CPU in VM mode)",
		Long: `Show where the CPU of the kernel the lab runs in goes, by kind of
process: each role's agents, the LB7s' HAProxies, the supervisor, the VM's
init, and what no running process accounts for (interrupts, kernel threads,
processes that ended). By default over the next 10s (--interval); with
--interval 0, since the kernel booted (each process since it started),
which in VM mode is the cost of the bring-up.`,
		Args: cobra.NoArgs,
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, _ []string) error {
			rep, err := l.CPU(cmd.Context(), interval)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { PrintCPU(w, rep) })
		}),
	}
	c.Flags().DurationVar(&interval, "interval", 10*time.Second, "how long to measure; 0: since boot")
	g.addOutputFlag(c)
	return c
}

// PrintCPU writes a CPU report as `lab cpu` prints it.
func PrintCPU(w io.Writer, r *lab.CPUReport) {
	over := "since boot"
	if r.Interval > 0 {
		over = "over " + r.Interval.Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "%d CPU(s), %.0f%% busy, %.0f%% idle %s\n", r.CPUs, 100*r.Busy, 100*(1-r.Busy), over)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tPROCESSES\tCPU\tOF BUSY")
	busy := r.Busy * float64(r.CPUs)
	for _, k := range r.Kinds {
		share := 0.0
		if busy > 0 {
			share = k.CPU / busy
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%.0f%%\n", k.Kind, k.Processes, 100*k.CPU, 100*share)
	}
	tw.Flush()
}
