package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/lab"
)

type globals struct {
	name    string
	output  string
	verbose bool
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "lab",
		Short: "Build and study three-tier load-balancer labs (BGP/ECMP, IPVS, HAProxy) in network namespaces",
		Long: `Build and study three-tier load-balancer labs (BGP/ECMP, IPVS, HAProxy)
in network namespaces. See the README, and lab help COMMAND.

Exit status: 0 done; 1 a check or an assertion failed (a scenario, lab
test --check, lab doctor, lab curl, an invalid topology or scenario file);
2 the command line is wrong; 3 the lab failed (it did not come up, is not
up, or did not do what was asked). lab exec passes its command's through.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.name, "name", "", "lab to act on (optional when only one lab is up)")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log what lab does")
	root.AddCommand(
		newUpCmd(g), newDownCmd(g), newStatusCmd(g), newListCmd(g),
		newExecCmd(g), newLogsCmd(g), newCurlCmd(g), newCaptureCmd(g), newEventsCmd(g), newLoadsCmd(g),
		newMaintCmd(g), newAgentCmd(g), newKillCmd(g), newReviveCmd(g), newLinkCmd(g), newImpairCmd(g),
		newAddCmd(g), newRemoveCmd(g),
		newLoadCmd(g), newTestCmd(g), newDoctorCmd(g), newCPUCmd(g), newVersionCmd(g), newGraphCmd(g), newWebCmd(g),
	)
	return root
}

func (g *globals) logger() *slog.Logger {
	if !g.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// addOutputFlag adds -o text|json to a command that prints state.
func (g *globals) addOutputFlag(c *cobra.Command) {
	c.Flags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
}

// print writes v as JSON with -o json, or calls text otherwise.
func (g *globals) print(w io.Writer, v any, text func(io.Writer)) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "text", "":
		text(w)
		return nil
	}
	return fmt.Errorf("-o %q: want text or json", g.output)
}

// withLab makes a command's RunE that opens the lab chosen with --name
// (the only one, without it), runs fn on it and closes it.
func (g *globals) withLab(fn func(cmd *cobra.Command, l *lab.Lab, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		l, err := lab.Open(g.name)
		if err != nil {
			return err
		}
		defer l.Close()
		return fn(cmd, l, args)
	}
}
