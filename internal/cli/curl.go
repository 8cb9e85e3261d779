package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/lab"
)

// withControl is withLab with a client of the lab's control API, for
// what package lab does not offer (yet): events after a number, the loads
// running.
func (g *globals) withControl(fn func(cmd *cobra.Command, c *control.Client) error) func(*cobra.Command, []string) error {
	return g.withLab(func(cmd *cobra.Command, l *lab.Lab, _ []string) error {
		c, err := control.NewClient(control.Endpoint(l.Endpoint), l.Token)
		if err != nil {
			return fmt.Errorf("control API of lab %s: %w", l.Name, err)
		}
		defer c.Close()
		return fn(cmd, c)
	})
}

func newCurlCmd(g *globals) *cobra.Command {
	var from, source string
	var include, v4, v6 bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "curl --from NODE [--source ADDR] [-4|-6] [URL|VIP]",
		Short: "Make an HTTP request from inside a node and print the body (exit 1 on failure or a non-2xx answer)",
		Long: `Make an HTTP request from inside a node, like the reference lab's
curl --interface 203.0.113.184 198.51.100.1. With no target, the lab's first
VIP of the family asked for (-4, -6, or the family of --source; IPv4
otherwise); a bare address or address:port means http://ADDR/.`,
		Args: cobra.MaximumNArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			target := ""
			if len(args) == 1 {
				target = args[0]
			}
			family, err := curlFamily(v4, v6, source)
			if err != nil {
				return err
			}
			url, err := curlURL(l, target, family)
			if err != nil {
				return err
			}
			res, err := l.Get(cmd.Context(), from, url, source, timeout)
			if err != nil {
				return err
			}
			err = g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				if include && res.Error == "" {
					fmt.Fprintf(w, "HTTP %d\n", res.Status)
					for _, k := range slices.Sorted(maps.Keys(res.Header)) {
						for _, v := range res.Header[k] {
							fmt.Fprintf(w, "%s: %s\n", k, v)
						}
					}
					fmt.Fprintln(w)
				}
				io.WriteString(w, res.Body)
			})
			if err != nil {
				return err
			}
			if res.Error != "" {
				return failed("GET %s from %s: %s", url, from, res.Error)
			}
			if res.Status < 200 || res.Status > 299 {
				return failed("GET %s from %s: status %d", url, from, res.Status)
			}
			return nil
		}),
	}
	c.Flags().StringVar(&from, "from", "", "node to send the request from (required)")
	c.Flags().StringVar(&source, "source", "", "source address (one of the node's addresses, e.g. a client loopback address)")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	c.Flags().BoolVarP(&v4, "ipv4", "4", false, "with no target, the lab's first IPv4 VIP")
	c.Flags().BoolVarP(&v6, "ipv6", "6", false, "with no target, the lab's first IPv6 VIP")
	c.Flags().BoolVarP(&include, "include", "i", false, "print the status and headers (X-Lab-LB7 and X-Lab-Server name who served) before the body")
	_ = c.MarkFlagRequired("from")
	g.addOutputFlag(c)
	return c
}

// curlFamily is the address family -4, -6 or the source address ask for;
// IPv4 when none does.
func curlFamily(v4, v6 bool, source string) (lab.Family, error) {
	switch {
	case v4 && v6:
		return 0, errors.New("-4 and -6 exclude each other")
	case v6:
		return lab.IPv6, nil
	case v4 || source == "":
		return lab.IPv4, nil
	}
	a, err := netip.ParseAddr(source)
	if err != nil {
		return 0, fmt.Errorf("--source %q is not an IP address", source)
	}
	return lab.FamilyOf(a), nil
}

// curlURL turns a target (empty, an address, address:port or a URL) into
// a URL; empty means the lab's first VIP of family f.
func curlURL(l *lab.Lab, target string, f lab.Family) (string, error) {
	if target == "" {
		st, err := l.Topology()
		if err != nil {
			return "", err
		}
		for _, v := range st.VIPs {
			if lab.FamilyOf(v.Address) == f {
				return "http://" + netip.AddrPortFrom(v.Address, v.Port).String() + "/", nil
			}
		}
		return "", fmt.Errorf("lab %s has no %s VIP: give a URL", l.Name, f)
	}
	if strings.Contains(target, "://") {
		return target, nil
	}
	if a, err := netip.ParseAddr(target); err == nil {
		return "http://" + netip.AddrPortFrom(a, 80).String() + "/", nil
	}
	return "http://" + target + "/", nil
}

func newEventsCmd(g *globals) *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "events",
		Short: "Print the lab's event log: routes, health, IPVS and BGP changes, maintenance, injections",
		Args:  cobra.NoArgs,
		RunE: g.withControl(func(cmd *cobra.Command, c *control.Client) error {
			// Following, each read asks for the events after the last
			// one printed (an event of a node that answered late comes
			// then, though older).
			var since uint64
			for {
				evs, err := c.Events(cmd.Context(), since)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				for _, e := range evs {
					since = max(since, e.Seq)
				}
				if err := g.print(cmd.OutOrStdout(), evs, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					for _, e := range evs {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.Format("15:04:05.000"), e.Node, e.Kind, e.Msg)
					}
					tw.Flush()
				}); err != nil {
					return err
				}
				if !follow {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(500 * time.Millisecond):
				}
			}
		}),
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	g.addOutputFlag(c)
	return c
}
