package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/graph"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/lab"
)

func newGraphCmd(g *globals) *cobra.Command {
	var format, pngFile, svgFile string
	var addresses, vips bool
	c := &cobra.Command{
		Use:   "graph [FILE] [--format dot|mermaid|svg|png] [--svg FILE] [--png FILE]",
		Short: "Draw a topology file, or the running lab with each node's state: DOT, Mermaid, SVG or PNG",
		Long: `Draw a lab: its nodes tier by tier (clients and dns, hosts, routers and
route reflectors, LB4s, LB7s, backends), its segments (small ellipses)
and point-to-point links.

With FILE, the topology in it: no lab, no root needed; nodes are coloured
by tier. Without, the running lab (--name) with its live state: nodes
coloured by state (ready, waiting, slow, maintenance, withdrawn, killed,
frozen, exited or unreachable; a node that is not ready has its state
under its name, and DOT, SVG and PNG have a legend), thick blue arrows
from each router to the LB4s its ECMP routes to the VIPs go through, and
thin green arrows from each LB4 to the LB7s its health checks find
healthy. --vips adds a note listing the VIPs, with a dashed arrow to each
LB4 that announces them; --addresses writes the addresses.

--format writes DOT (the default), Mermaid (a flowchart to paste into a
GitHub README), SVG or PNG to standard output; --svg and --png write
files, as many as given, and then nothing goes to standard output unless
--format is given too. SVG and PNG are laid out and drawn by lab itself,
a row a tier (no Graphviz needed); DOT is for Graphviz's own layout.
-o json prints the model instead: nodes, segments, edges, VIPs and
states.

  lab graph topologies/reference.yaml --svg docs/reference.svg --png docs/reference.png
  lab graph --format mermaid --vips`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "dot", "mermaid", "svg", "png":
			default:
				return fmt.Errorf("--format %q: want dot, mermaid, svg or png", format)
			}
			switch g.output {
			case "text", "json":
			default:
				return fmt.Errorf("-o %q: want text or json", g.output)
			}
			if g.output == "json" && cmd.Flags().Changed("format") {
				return fmt.Errorf("-o json prints the model: drop --format %s", format)
			}
			gr, err := buildGraph(cmd, g, args)
			if err != nil {
				return err
			}
			gr.ShowAddresses, gr.ShowVIPs = addresses, vips
			for _, f := range []struct {
				path   string
				format graph.Format
			}{{svgFile, graph.SVG}, {pngFile, graph.PNG}} {
				if f.path == "" {
					continue
				}
				var b bytes.Buffer
				if err := gr.Render(cmd.Context(), f.format, &b); err != nil {
					return err
				}
				if err := os.WriteFile(f.path, b.Bytes(), 0o644); err != nil {
					return fmt.Errorf("write graph: %w", err)
				}
			}
			if g.output != "json" && (svgFile != "" || pngFile != "") && !cmd.Flags().Changed("format") {
				return nil
			}
			var out []byte
			if g.output != "json" {
				if out, err = drawing(cmd, gr, format); err != nil {
					return err
				}
			}
			return g.print(cmd.OutOrStdout(), gr, func(w io.Writer) { w.Write(out) })
		},
	}
	c.Flags().StringVar(&format, "format", "dot", "what to write to standard output: dot, mermaid, svg or png")
	c.Flags().StringVar(&svgFile, "svg", "", "write an SVG drawing to this file")
	c.Flags().StringVar(&pngFile, "png", "", "write a PNG drawing to this file")
	c.Flags().BoolVar(&addresses, "addresses", false, "show each node's addresses and each segment's prefixes")
	c.Flags().BoolVar(&vips, "vips", false, "show the VIPs and the LB4s that announce them")
	g.addOutputFlag(c)
	return c
}

// buildGraph makes the graph of the topology file in args, or of the
// running lab with its status.
func buildGraph(cmd *cobra.Command, g *globals, args []string) (*graph.Graph, error) {
	if len(args) == 1 {
		t, err := topology.Load(args[0])
		if err != nil {
			return nil, err
		}
		return graph.Build(t, nil), nil
	}
	l, err := lab.Open(g.name)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	// The drawing shows the tiers' own state (ECMP next hops, healthy
	// LB7s), which the control API's types carry.
	t, err := topology.Load(l.TopologyFile())
	if err != nil {
		return nil, err
	}
	c, err := control.NewClient(control.Endpoint(l.Endpoint), l.Token)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := c.Status(cmd.Context())
	if err != nil {
		return nil, err
	}
	return graph.Build(t, st), nil
}

// drawing is gr in format.
func drawing(cmd *cobra.Command, gr *graph.Graph, format string) ([]byte, error) {
	switch format {
	case "mermaid":
		return []byte(gr.Mermaid()), nil
	case "svg", "png":
		var b bytes.Buffer
		err := gr.Render(cmd.Context(), graph.Format(format), &b)
		return b.Bytes(), err
	}
	return []byte(gr.DOT()), nil
}
