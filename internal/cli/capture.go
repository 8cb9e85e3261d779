package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/lab"
)

func newCaptureCmd(g *globals) *cobra.Command {
	var (
		file string
		opts lab.CaptureOptions
	)
	c := &cobra.Command{
		Use:   "capture NODE [INTERFACE|SEGMENT|PEER] [FILTER...]",
		Short: "Capture a node's traffic to a pcap file, or to standard output for Wireshark (tcpdump in the node)",
		Long: `Capture the traffic of a node with tcpdump run inside it, and write it as
a pcap file (-w FILE) or to standard output, packet by packet, which
nothing else is written to:

  lab capture lb7-1 infra | wireshark -k -i -
  lab capture lb4-1 -w lb4-1.pcap -c 100 tcp port 80
  lab capture r1 --duration 10s -w r1.pcap icmp or icmp6

The interface is a segment the node joins or a node it is linked to
(interfaces are named after them); on an LB7, an LB4 for the tunnel from
it (the packets it forwarded, decapsulated; 6lb4-1 for IPv6 in IPv6);
lo; or any (the default: every interface, in Linux cooked captures). The
words after it are a filter in tcpdump's syntax (pcap-filter(7)); put --
before a filter that holds a word starting with '-'. The capture stops
on ^C, after --duration or -c packets, or when the lab goes down; the
file is then complete. What happened goes to standard error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Count < 0 || opts.Duration < 0 {
				return fmt.Errorf("-c %d --duration %s: want 0 (no limit) or more", opts.Count, opts.Duration)
			}
			out := cmd.OutOrStdout()
			if file == "" && isTerminal(out) {
				return fmt.Errorf("standard output is a terminal: write the capture to a file (-w FILE) or a pipe (| wireshark -k -i -)")
			}
			l, err := lab.Open(g.name)
			if err != nil {
				return err
			}
			defer l.Close()
			words, err := l.CaptureArgs(args[0], args[1:])
			if err != nil {
				return err
			}
			opts.Interface, opts.Filter = words.Interface, words.Filter
			if file != "" {
				f, err := os.Create(file)
				if err != nil {
					return fmt.Errorf("capture to %s: %w", file, err)
				}
				defer f.Close()
				out = f
			}
			errOut := cmd.ErrOrStderr()
			opts.Listening = func(line string) {
				fmt.Fprintf(errOut, "capture on %s: %s (^C to stop)\n", args[0], line)
			}
			res, err := l.Capture(cmd.Context(), args[0], opts, out)
			if res != nil && res.LinkType != 0 {
				fmt.Fprintf(errOut, "%s\n", captureSummary(res))
			} else if file != "" && err != nil {
				_ = os.Remove(file) // tcpdump wrote nothing, not even a header
			}
			return err
		},
	}
	c.Flags().StringVarP(&file, "write", "w", "", "write the pcap to FILE instead of standard output")
	c.Flags().IntVarP(&opts.Count, "count", "c", 0, "stop after this many packets (0: no limit)")
	c.Flags().DurationVar(&opts.Duration, "duration", 0, "stop after this long, such as 30s (0: no limit)")
	return c
}

// captureSummary is the line `lab capture` ends with on standard error.
func captureSummary(r *lab.CaptureResult) string {
	packets := "packets"
	if r.Packets == 1 {
		packets = "packet"
	}
	s := fmt.Sprintf("%d %s (%d bytes) captured on %s %s", r.Packets, packets, r.Bytes, r.Node, r.Interface)
	if r.Dropped > 0 {
		s += fmt.Sprintf(", %d dropped by the kernel (tcpdump did not keep up)", r.Dropped)
	}
	switch r.Stopped {
	case lab.CaptureLabDown:
		s += ": the lab went down"
	case lab.CaptureDuration:
		s += ": duration reached"
	}
	return s
}
