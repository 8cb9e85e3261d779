package cli

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/internal/dashboard"
	"github.com/lab-lb/lab/lab"
)

// defaultWebListen is where `lab web` listens without --listen: this
// machine only.
const defaultWebListen = "127.0.0.1:8080"

func newWebCmd(g *globals) *cobra.Command {
	var listen string
	c := &cobra.Command{
		Use:   "web [--listen 127.0.0.1:8080]",
		Short: "Serve a live page of the lab: its nodes by state, its events, per-VIP charts of its loads, and buttons to break and mend it",
		Long: `Serve a live web page of the running lab, until Ctrl-C:

  - the nodes by tier (clients, hosts, routers, LB4s, LB7s, servers),
    coloured by state: ready, waiting, killed, frozen, exited or
    unreachable, maintenance (an LB4 disabled, an LB7 whose agent-check
    says down), withdrawn (an LB4 that announces nothing);
  - the event log as it happens (lab events), injections highlighted;
  - every load running in the lab (started from the page, from the first
    client with 20 workers by default; by lab load; by a scenario): ok,
    broken and interrupted connections per second, one chart per VIP,
    with the injections marked;
  - buttons: kill, freeze, revive, maint on/off, link down/up.

The page updates itself (server-sent events). While a page is open, the
server polls the lab's readiness every 500 ms, the LB4s' and LB7s' state
every 5 s and when the event log says it changed (both less often when
the lab is slow to answer), the events after the last one it has every
250 ms, the loads running every 2 s and their progress every second; a
kill or freeze shows as soon as the log has it. In a
VM that a load keeps busy, that polling costs the load a few interrupted
connections: close the page for figures to compare with other runs.

It listens on this machine only unless --listen names another address;
anyone who reaches the page can break the lab.`,
		Args: cobra.NoArgs,
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, _ []string) error {
			public, err := webListenPublic(listen)
			if err != nil {
				return err
			}
			if public && !cmd.Flags().Changed("listen") {
				return fmt.Errorf("listen on %s: not a loopback address; say --listen %s to serve other machines", listen, listen)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			if public {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is reachable from other machines, and anyone who reaches the page can break lab %s\n", ln.Addr(), l.Name)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s: http://%s/ (Ctrl-C stops)\n", l.Name, ln.Addr())
			return dashboard.Serve(cmd.Context(), l, ln, dashboard.Options{Log: g.logger()})
		}),
	}
	c.Flags().StringVar(&listen, "listen", defaultWebListen, "`ADDRESS:PORT` to serve the page on (port 0: any free port)")
	return c
}

// webListenPublic reports whether addr (host:port) would serve other
// machines: any host but a loopback address or localhost.
func webListenPublic(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--listen %q: want ADDRESS:PORT: %w", addr, err)
	}
	if host == "localhost" {
		return false, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return true, nil // a name: it may resolve anywhere
	}
	return !ip.IsLoopback(), nil
}
