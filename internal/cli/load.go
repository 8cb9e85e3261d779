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
	var requests bool
	c := &cobra.Command{
		Use:   "load --from NODE [--requests [--rate N] [--keepalive]] [--duration 30s] [--vip NAME]... [-o json] [--jsonl FILE] [--png FILE] [--svg FILE]",
		Short: "Run the client load (slow downloads, or requests at a rate) from a node and report what broke",
		Long: `Run the client load from inside a node: many concurrent long HTTP
downloads through the VIPs, one TCP connection per request from a random
loopback address of the node, each read bounded by a timeout. The load runs
until --duration has passed or Ctrl-C, then stops and prints its report:
connections ok, broken (reset, refused, timeout...) and interrupted (stalled
longer than --stall but recovered), per LB7, per backend and per second.

Run it while injecting failures from another terminal (lab kill, lab link,
lab maint) and read how many connections each failure cost. --png and --svg
draw the run: per second, the connections started (a line) and those that
ended ok, interrupted, broken or failed at the DNS lookup (stacked bars).

With --requests the load sends short requests instead (GET / by default)
at --rate requests a second over all --workers (default 100 over 10, the
distributed IPVS load balancer's experiment), on time whatever the earlier
ones did (open loop), each on a new connection unless --keepalive. The
report gives, per second, the requests, the errors by class (refused,
reset, timeout, bad status, exhausted: no free local port) and latency
p50/p90/p99/max; and, for each failure injected into the lab meanwhile
(lab kill, freeze, link...: the lab's event log), the latency against the
steady part and the time to repair: until the last request failed or p99
was back within twice the steady p99 (a slow second after three clean
ones in a row is the machine's noise and left out).`,
		Args: cobra.NoArgs,
		// The mode's flags are checked before any lab is opened.
		PreRunE: func(cmd *cobra.Command, _ []string) error { return loadMode(cmd, &cfg, requests) },
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
				fmt.Fprintf(live, "load %s from %s: %s; Ctrl-C stops it\n", ld.ID, ld.Node, loadSummary(cfg, ld))
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
			var repairs *lab.Repairs
			if rep.Requests != nil {
				if repairs, err = l.LoadRepairs(stopCtx, rep); err != nil {
					return err
				}
			}
			out := struct {
				*lab.Report
				Repairs *lab.Repairs `json:"repairs,omitempty"`
			}{rep, repairs}
			var werr error
			if err := g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				if werr = rep.WriteText(w); werr == nil && repairs != nil {
					fmt.Fprintf(w, "\nafter each injection into the lab (its event log)\n")
					werr = repairs.WriteText(w)
				}
			}); err != nil {
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
			title := fmt.Sprintf("load %s from %s: %s", ld.ID, ld.Node, loadSummary(cfg, ld))
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
	f.BoolVar(&requests, "requests", false, "send short requests at --rate instead of slow downloads: latency, errors per second, time to repair")
	f.Float64Var(&cfg.Rate, "rate", 0, "requests a second over all workers, with --requests (default 100)")
	f.BoolVar(&cfg.KeepAlive, "keepalive", false, "with --requests, reuse each worker's connections (default: a new connection per request)")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrent connections (downloads) or request loops (--requests: default 10)")
	f.StringVar(&cfg.Path, "path", cfg.Path, "path each connection downloads (the backends serve /<N>K, /<N>M, /<N>G; --requests: default /)")
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

// loadMode sets the mode of cfg from --requests: a request load takes its
// own defaults for the flags left alone, and the request flags need it.
func loadMode(cmd *cobra.Command, cfg *lab.LoadConfig, requests bool) error {
	f := cmd.Flags()
	if !requests {
		for _, name := range []string{"rate", "keepalive"} {
			if f.Changed(name) {
				return usageError{fmt.Errorf("--%s applies to a request load: add --requests", name)}
			}
		}
		return nil
	}
	cfg.Mode = lab.LoadRequests
	if !f.Changed("workers") {
		cfg.Workers = 0
	}
	if !f.Changed("path") {
		cfg.Path = ""
	}
	*cfg = cfg.WithDefaults()
	return nil
}

// loadSummary says what a load runs, in a few words.
func loadSummary(cfg lab.LoadConfig, ld *lab.Load) string {
	if cfg.Mode == lab.LoadRequests {
		keep := "a new connection each"
		if cfg.KeepAlive {
			keep = "keep-alive"
		}
		return fmt.Sprintf("%d workers, %g requests/s, %s, %d target(s), %d source(s)",
			cfg.Workers, cfg.Rate, keep, len(ld.Targets), len(ld.Sources))
	}
	return fmt.Sprintf("%d workers, %d target(s), %d source(s)", cfg.Workers, len(ld.Targets), len(ld.Sources))
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
		if s.P50 > 0 {
			line += fmt.Sprintf("  p50 %s  p99 %s", s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond))
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
