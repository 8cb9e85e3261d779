package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/internal/control"
)

func newLoadsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "loads [-o json]",
		Short: "List the loads running in the lab (lab load, lab web, scenarios), from every node",
		Long: `List the loads running in the lab, whoever started them: lab load in
another terminal, the page of lab web, a scenario. Each is a node, an id
there, its targets (VIP:port pairs, or service names), its workers and how
long it has run. lab web charts each of them, per VIP.`,
		Args: cobra.NoArgs,
		RunE: g.withControl(func(cmd *cobra.Command, c *control.Client) error {
			lds, err := c.Loads(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), lds, func(w io.Writer) {
				if len(lds) == 0 {
					fmt.Fprintln(w, "no load runs")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tID\tWORKERS\tRUNNING\tTARGETS")
				for _, ld := range lds {
					targets := append(append([]string(nil), ld.Targets...), ld.Names...)
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", ld.Node, ld.ID, ld.Workers,
						time.Since(ld.Started).Round(time.Second), strings.Join(targets, " "))
				}
				tw.Flush()
			})
		}),
	}
	g.addOutputFlag(c)
	return c
}
