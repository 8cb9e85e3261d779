package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/lab"
)

func newTestCmd(g *globals) *cobra.Command {
	var (
		up, markdown bool
		check        bool
		vmMode       string
		junit        string
		png, svg     string
		workers      int
		rate         float64
	)
	c := &cobra.Command{
		Use:   "test SCENARIO.yaml...",
		Short: "Run scenarios (load, failures, assertions on broken connections) and report; exits 1 when one fails",
		Long: `Run each scenario file against the running lab (--name), or with --up
against a fresh lab of the scenario's own topology, brought up before it
and taken down after. For each one, print what was measured: steps with
their times, connections per VIP (started, ok, broken, interrupted),
failover time per injection, and every assertion PASS or FAIL; for a
request load (load.mode: requests), the latency and time to repair after
each injection. With several scenarios, a table of broken connections per
scenario and VIP (scheduler) follows: the design's claims, measured; and
one of the request loads' repairs.

With --png DIR or --svg DIR (or both), each scenario's timeline is drawn
to DIR/NAME.png or DIR/NAME.svg: per second and per VIP, the connections
started (a line) and those that ended ok, interrupted or broken (stacked
bars, broken at the bottom, a red dot above), each step a dashed line with
its label (red when it failed). With several scenarios, the claims are
drawn too, to DIR/claims.png or DIR/claims.svg: broken connections per
scenario and scheduler, each bar labelled with its scheduler and
broken/started connections ("mh 0/48").

The format of a scenario file is in the README ("Scenario tests").`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("-o %q: want text or json", g.output)
			}
			if check {
				return checkScenarios(cmd.OutOrStdout(), args)
			}
			var scenarios []*lab.Scenario
			var errs []error
			for _, path := range args {
				s, err := lab.LoadScenario(path)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if workers > 0 {
					s.Load.Workers = workers
				}
				if rate > 0 && s.Load.Mode == lab.LoadRequests {
					s.Load.Rate = rate
				}
				if up && s.Topology == "" {
					errs = append(errs, fmt.Errorf("%s: --up needs the scenario's topology: field", path))
				}
				if (png != "" || svg != "") && s.Name == claimsImage && len(args) > 1 {
					errs = append(errs, fmt.Errorf("%s: scenario %s: its timeline would be drawn over the claims chart; rename it", path, s.Name))
				}
				scenarios = append(scenarios, s)
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var results []*lab.ScenarioResult
			for _, s := range scenarios {
				res, err := runScenario(cmd.Context(), g, s, up, lab.VMMode(vmMode), cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				results = append(results, res)
				if g.output == "text" {
					if err := res.WriteText(out); err != nil {
						return err
					}
					fmt.Fprintln(out)
				}
				if err := writeImages(png, svg, s.Name, res.WritePNG, res.WriteSVG); err != nil {
					return err
				}
				if cmd.Context().Err() != nil {
					break
				}
			}
			if g.output == "json" {
				if err := g.print(out, results, nil); err != nil {
					return err
				}
			} else if len(results) > 1 || markdown {
				write := lab.WriteClaims
				if markdown {
					write = lab.WriteClaimsMarkdown
				}
				if err := write(out, results); err != nil {
					return err
				}
			}
			if junit != "" {
				if err := writeFile(junit, func(w io.Writer) error { return lab.WriteJUnit(w, results) }); err != nil {
					return err
				}
			}
			if len(results) > 1 {
				err := writeImages(png, svg, claimsImage,
					func(w io.Writer) error { return lab.WriteClaimsPNG(w, results) },
					func(w io.Writer) error { return lab.WriteClaimsSVG(w, results) })
				if err != nil {
					return err
				}
			}
			failed := 0
			for _, r := range results {
				if !r.Passed() {
					failed++
				}
			}
			if failed > 0 {
				return failedError{fmt.Errorf("%d of %d scenarios failed", failed, len(results))}
			}
			return nil
		},
	}
	g.addOutputFlag(c)
	c.Flags().BoolVar(&check, "check", false, "only check the files: parse and validate each scenario and the topology it names, report every problem with its line; no lab, no root")
	c.Flags().BoolVar(&up, "up", false, "bring up a fresh lab of each scenario's topology, and take it down after")
	c.Flags().StringVar(&vmMode, "vm", "auto", "with --up: run inside a user-mode Linux VM: auto, always, never")
	c.Flags().StringVar(&junit, "junit", "", "write JUnit XML to this file")
	c.Flags().StringVar(&png, "png", "", "draw each scenario's timeline to `DIR`/NAME.png, and with several scenarios the claims to DIR/claims.png")
	c.Flags().StringVar(&svg, "svg", "", "draw each scenario's timeline to `DIR`/NAME.svg, and with several scenarios the claims to DIR/claims.svg")
	c.Flags().BoolVar(&markdown, "markdown", false, "print the claims table as Markdown")
	c.Flags().IntVar(&workers, "workers", 0, "override every scenario's load workers (size the load to the machine: the steady scenario must break nothing)")
	c.Flags().Float64Var(&rate, "rate", 0, "override the rate of every scenario's request load, in requests a second over all workers (in the VM, one CPU saturates near 100 new connections a second)")
	return c
}

// runScenario runs s on the lab named by --name, or on a fresh one.
func runScenario(ctx context.Context, g *globals, s *lab.Scenario, up bool, vm lab.VMMode, progress io.Writer) (*lab.ScenarioResult, error) {
	if up {
		fmt.Fprintf(progress, "%s: bringing up %s\n", s.Name, s.Topology)
		return lab.RunScenarioFresh(ctx, s, lab.Options{VM: vm, Log: g.logger()})
	}
	l, err := lab.Open(g.name)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.RunScenario(ctx, s, g.logger())
}

// claimsImage names the claims chart's files in the --png and --svg
// directories.
const claimsImage = "claims"

// writeImages writes pngDir/NAME.png with writePNG and svgDir/NAME.svg with
// writeSVG; an empty directory writes no file.
func writeImages(pngDir, svgDir, name string, writePNG, writeSVG func(io.Writer) error) error {
	if pngDir != "" {
		if err := writeFile(filepath.Join(pngDir, name+".png"), writePNG); err != nil {
			return err
		}
	}
	if svgDir != "" {
		if err := writeFile(filepath.Join(svgDir, name+".svg"), writeSVG); err != nil {
			return err
		}
	}
	return nil
}

// writeFile creates path, and the directories it needs, and writes it with
// write.
func writeFile(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// checkScenarios checks scenario files against their topologies, without a
// lab: every problem of every file, then an error when one had any.
func checkScenarios(out io.Writer, paths []string) error {
	bad := 0
	for _, p := range paths {
		if _, err := lab.CheckScenario(p); err != nil {
			fmt.Fprintln(out, err)
			bad++
			continue
		}
		fmt.Fprintf(out, "%s: ok\n", p)
	}
	if bad > 0 {
		return failed("%d of %d scenario files have problems", bad, len(paths))
	}
	return nil
}
