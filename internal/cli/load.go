package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/lab"
)

// loadStopTimeout bounds stopping a load and fetching its report, after
// the run or a Ctrl-C.
const loadStopTimeout = time.Minute

func newLoadCmd(g *globals) *cobra.Command {
	cfg := lab.LoadConfig{}.WithDefaults()
	var duration time.Duration
	var jsonl, pngFile, svgFile string
	c := &cobra.Command{
		Use:   "load --from NODE [--duration 30s] [--vip NAME]... [-o json] [--jsonl FILE] [--png FILE] [--svg FILE]",
		Short: "Run the client load (many slow downloads through the VIPs) from a node and report what broke",
		Long: `Run the client load from inside a node: many concurrent long HTTP
downloads through the VIPs, one TCP connection per request from a random
loopback address of the node, each read bounded by a timeout. The load runs
until --duration has passed or Ctrl-C, then stops and prints its report:
connections ok, broken (reset, refused, timeout...) and interrupted (stalled
longer than --stall but recovered), per LB7, per backend and per second.

Run it while injecting failures from another terminal (lab kill, lab link,
lab maint) and read how many connections each failure cost. --png and --svg
draw the run: per second, the connections started (a line) and those that
ended ok, interrupted, broken or failed at the DNS lookup (stacked bars).`,
		Args: cobra.NoArgs,
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, _ []string) error {
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("-o %q: want text or json", g.output)
			}
			var jf *os.File
			if jsonl != "" {
				f, err := os.Create(jsonl)
				if err != nil {
					return fmt.Errorf("create %s: %w", jsonl, err)
				}
				defer f.Close()
				jf = f
			}
			ld, err := l.StartLoad(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			var live io.Writer
			if isTerminal(cmd.ErrOrStderr()) {
				live = cmd.ErrOrStderr()
				fmt.Fprintf(live, "load %s from %s: %d workers, %d target(s), %d source(s); Ctrl-C stops it\n",
					ld.ID, ld.Node, cfg.Workers, len(ld.Targets), len(ld.Sources))
			}
			runCtx, cancel := cmd.Context(), context.CancelFunc(func() {})
			if duration > 0 {
				runCtx, cancel = context.WithTimeout(runCtx, duration)
			}
			waitLoad(runCtx, ld, live)
			cancel()

			// The run's context is over (time is up or Ctrl-C): stopping
			// needs a fresh one.
			stopCtx, stop := context.WithTimeout(context.WithoutCancel(cmd.Context()), loadStopTimeout)
			defer stop()
			rep, err := ld.Stop(stopCtx)
			if err != nil {
				return err
			}
			var werr error
			if err := g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { werr = rep.WriteText(w) }); err != nil {
				return err
			}
			if werr != nil {
				return werr
			}
			if jf != nil {
				if err := rep.WriteJSONLines(jf); err != nil {
					return err
				}
				if err := jf.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
					return fmt.Errorf("close %s: %w", jsonl, err)
				}
			}
			title := fmt.Sprintf("load %s from %s: %d workers", ld.ID, ld.Node, cfg.Workers)
			if pngFile != "" {
				if err := writeFile(pngFile, func(w io.Writer) error { return rep.WritePNG(w, title) }); err != nil {
					return err
				}
			}
			if svgFile != "" {
				if err := writeFile(svgFile, func(w io.Writer) error { return rep.WriteSVG(w, title) }); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	f := c.Flags()
	f.StringVar(&cfg.From, "from", "", "node to run the load from, usually a client (required)")
	f.DurationVar(&duration, "duration", 30*time.Second, "run this long (0: until Ctrl-C)")
	f.StringArrayVar(&cfg.VIPs, "vip", nil, "VIP to load, by name, address or address:port; repeat for several (default: every TCP VIP)")
	f.StringArrayVar(&cfg.Names, "service", nil, "service `NAME` to load, looked up through the lab's DNS before every connection (www, or www.example.org); repeat for several")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrent connections")
	f.StringVar(&cfg.Path, "path", cfg.Path, "path each connection downloads (the backends serve /<N>K, /<N>M, /<N>G)")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", cfg.ReadTimeout, "a read that waits longer breaks the connection (timeout)")
	f.DurationVar(&cfg.StallThreshold, "stall", cfg.StallThreshold, "a wait for data longer than this makes an ok connection interrupted (below --read-timeout)")
	f.DurationVar(&cfg.Pause, "pause", cfg.Pause, "longest random pause between two reads (negative: none)")
	f.Float64Var(&cfg.EarlyStop, "early-stop", cfg.EarlyStop, "chance to close a connection early after each read (negative: never)")
	f.Int64Var(&cfg.Seed, "seed", 0, "seed of the random choices, for a reproducible load (0: from the clock)")
	f.StringVar(&jsonl, "jsonl", "", "also write every connection to `FILE`, one JSON object per line")
	f.StringVar(&pngFile, "png", "", "also draw the run to `FILE` (PNG): connections per second, ok, interrupted, broken")
	f.StringVar(&svgFile, "svg", "", "also draw the run to `FILE` (SVG), as --png")
	_ = c.MarkFlagRequired("from")
	g.addOutputFlag(c)
	return c
}

// waitLoad waits until ctx is done; with live set, it prints the load's
// figures there every second.
func waitLoad(ctx context.Context, ld *lab.Load, live io.Writer) {
	if live == nil {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p, err := ld.Progress(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			fmt.Fprintf(live, "progress: %v\n", err)
		default:
			fmt.Fprintln(live, progressLine(p))
		}
	}
}

// progressLine formats the live figures of a load on one line.
func progressLine(p *lab.LoadProgress) string {
	line := fmt.Sprintf("%6s  started %d  active %d  ok %d  broken %d  interrupted %d",
		p.Elapsed.Truncate(time.Second), p.Started, p.Active, p.OK, p.Broken, p.Interrupted)
	if p.DNSFailed > 0 {
		line += fmt.Sprintf("  dns failed %d", p.DNSFailed)
	}
	if s, ok := p.LastSecond(); ok {
		line += fmt.Sprintf("  | last second: ok %d  broken %d", s.OK, s.Broken)
		if s.DNSFailed > 0 {
			line += fmt.Sprintf("  dns failed %d", s.DNSFailed)
		}
	}
	return line
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
