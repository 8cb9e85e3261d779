package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/pcapstream"
	"github.com/lab-lb/lab/internal/topology"
)

// CaptureOptions says what Lab.Capture captures, and for how long.
type CaptureOptions struct {
	// Interface is where to capture in the node: "" or "any" for every
	// interface; a segment the node joins or a node it is linked to, for
	// the interface named after it; or any other device of the node by
	// its name (lo, tunl0, ip6tnl0).
	Interface string
	// Filter is a BPF filter in tcpdump's syntax ("tcp port 80"), as
	// words that are joined with spaces; none captures everything.
	Filter []string
	// Count stops the capture after that many packets; 0 for no limit.
	Count int
	// Duration stops the capture that long after tcpdump starts
	// listening; 0 for no limit.
	Duration time.Duration
	// Listening, when set, is called once tcpdump listens (packets sent
	// from then on are captured) with its line: "listening on infra,
	// link-type EN10MB (Ethernet), snapshot length 262144 bytes".
	Listening func(line string)
}

// How a capture ended (CaptureResult.Stopped).
const (
	CaptureInterrupted = "interrupted" // the context was cancelled (^C)
	CaptureDuration    = "duration"    // CaptureOptions.Duration passed
	CaptureCount       = "count"       // CaptureOptions.Count packets were captured
	CaptureLabDown     = "lab down"    // the lab went down
	CaptureEnded       = "ended"       // tcpdump ended by itself, without -c
)

// CaptureResult is what a capture wrote.
type CaptureResult struct {
	Node      string `json:"node"`
	Interface string `json:"interface"` // the device captured on: "any", "infra"...
	// LinkType is the pcap link type: 1 (Ethernet) on one interface, 276
	// or 113 (Linux cooked capture v2 or v1) on "any"; 0 when tcpdump
	// wrote nothing.
	LinkType uint32 `json:"link_type"`
	Packets  int    `json:"packets"`
	Bytes    int64  `json:"bytes"` // captured packet bytes, without pcap headers
	Stopped  string `json:"stopped"`
}

// errCaptureDuration and errLabDown end a capture that ends well.
var (
	errCaptureDuration = errors.New("capture duration reached")
	errLabDown         = errors.New("the lab went down")
)

// labWatchInterval is how often a capture checks that the lab's process
// still runs: a VM that stops answers nothing, not even a reset.
const labWatchInterval = 500 * time.Millisecond

// Capture captures the traffic of node nodeName, running tcpdump inside
// the node (its network namespace, in the VM in VM mode), and writes it
// to w as a pcap stream (classic pcap, as tcpdump -w writes it), packet
// by packet as tcpdump captures them. Whatever it has written is always a
// complete pcap file: it holds a packet back until all of it has arrived.
//
// It returns when ctx is done (Stopped: CaptureInterrupted), after
// opts.Duration or opts.Count packets, or when the lab goes down; those
// end the capture well, with a nil error. tcpdump stops when the capture
// does. It fails when tcpdump cannot run (no such interface, a filter it
// rejects, tcpdump not installed) or when w fails.
func (l *Lab) Capture(ctx context.Context, nodeName string, opts CaptureOptions, w io.Writer) (*CaptureResult, error) {
	t, err := l.Topology()
	if err != nil {
		return nil, err
	}
	n, ok := t.Node(nodeName)
	if !ok {
		return nil, fmt.Errorf("no node %s in lab %s", nodeName, l.Name)
	}
	iface, err := captureInterface(t, n, opts.Interface)
	if err != nil {
		return nil, err
	}
	argv, err := tcpdumpArgv(iface, opts)
	if err != nil {
		return nil, err
	}
	run, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() { // a lab that goes down ends the capture
		tick := time.NewTicker(labWatchInterval)
		defer tick.Stop()
		for {
			select {
			case <-run.Done():
				return
			case <-tick.C:
				if !l.Alive() {
					cancel(errLabDown)
					return
				}
			}
		}
	}()
	// The duration counts from when tcpdump listens, not from when the
	// request left (starting tcpdump takes a moment in the VM).
	var timer *time.Timer
	listening := func(line string) {
		if opts.Duration > 0 {
			timer = time.AfterFunc(opts.Duration, func() { cancel(errCaptureDuration) })
		}
		if opts.Listening != nil {
			opts.Listening(line)
		}
	}
	pw := pcapstream.NewWriter(w)
	stderr := &tcpdumpStderr{listening: listening}
	code, err := l.client.Exec(run, "/v1/nodes/"+nodeName+"/exec", argv, nil, pw, stderr)
	if timer != nil { // set by Exec's goroutine: this one
		timer.Stop()
	}
	res := &CaptureResult{Node: nodeName, Interface: iface, LinkType: pw.LinkType(), Packets: pw.Packets(), Bytes: pw.Bytes()}
	switch {
	case run.Err() != nil:
		switch context.Cause(run) {
		case errCaptureDuration:
			res.Stopped = CaptureDuration
		case errLabDown:
			res.Stopped = CaptureLabDown
		default:
			res.Stopped = CaptureInterrupted
		}
		return res, nil
	case err == nil && code == 0:
		res.Stopped = CaptureEnded // tcpdump stopped by itself
		if opts.Count > 0 {
			res.Stopped = CaptureCount
		}
		return res, nil
	case l.goingDown(ctx):
		// lab down stops the agents (the stream breaks) or kills what
		// runs in the nodes (tcpdump exits).
		res.Stopped = CaptureLabDown
		return res, nil
	case err != nil && strings.Contains(err.Error(), "executable file not found"):
		return res, fmt.Errorf("capture on %s: tcpdump is not installed (apt-get install tcpdump, or make deps)", nodeName)
	case err != nil:
		return res, fmt.Errorf("capture on %s: %w", nodeName, err)
	}
	return res, fmt.Errorf("capture on %s %s: tcpdump exit status %d%s", nodeName, iface, code, stderr.failure(n))
}

// goingDown reports whether the lab is gone or on its way down: its
// process has ended, its supervisor does not answer, or it answers that
// it is stopping.
func (l *Lab) goingDown(ctx context.Context) bool {
	if !l.Alive() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	var st control.Status
	// No node has role "-": the answer is the lab's phase alone, cheap.
	if err := l.client.GetJSON(ctx, "/v1/status?"+neturl.Values{"role": {"-"}}.Encode(), &st); err != nil {
		return true
	}
	return st.Phase == "stopping"
}

// CaptureArgs splits the arguments of `lab capture NODE [INTERFACE]
// [FILTER...]` that follow the node: the first is the interface when it
// is "any", "lo" or the name of one of the node's links (a segment it
// joins or a node it is linked to); otherwise, and after it, the words
// are the filter. A first argument that names another segment or node of
// the lab, one the node has no link to, is an error rather than a filter.
func CaptureArgs(t *topology.Topology, nodeName string, args []string) (CaptureOptions, error) {
	n, ok := t.Node(nodeName)
	if !ok {
		return CaptureOptions{}, fmt.Errorf("no node %s in lab %s", nodeName, t.Name)
	}
	if len(args) == 0 {
		return CaptureOptions{}, nil
	}
	first := args[0]
	if first != "any" && first != "lo" && linkOf(n, first) == "" && !labName(t, first) {
		return CaptureOptions{Filter: args}, nil
	}
	if err := captureInterfaceErr(t, n, first); err != nil {
		return CaptureOptions{}, err
	}
	return CaptureOptions{Interface: first, Filter: args[1:]}, nil
}

// captureInterface returns the device of node n that what names (see
// CaptureOptions.Interface).
func captureInterface(t *topology.Topology, n *topology.Node, what string) (string, error) {
	if what == "" || what == "any" {
		return "any", nil
	}
	if name := linkOf(n, what); name != "" {
		return name, nil
	}
	if err := captureInterfaceErr(t, n, what); err != nil {
		return "", err
	}
	return what, nil // a device of the node's own: lo, tunl0...
}

// captureInterfaceErr refuses a segment or node of the lab that node n
// has no link to.
func captureInterfaceErr(t *topology.Topology, n *topology.Node, what string) error {
	if what == "any" || what == "lo" || linkOf(n, what) != "" || !labName(t, what) {
		return nil
	}
	return fmt.Errorf("%s has no link to %s (its links: %s; or any, or a device of the node such as lo)",
		n.Name, what, strings.Join(linkNames(n), ", "))
}

// linkOf returns the name of n's interface on segment or peer node what
// (interfaces are named after them), "" when it has none.
func linkOf(n *topology.Node, what string) string {
	for _, i := range n.Interfaces {
		if i.Name == what || i.Segment == what || i.Peer == what {
			return i.Name
		}
	}
	return ""
}

// labName reports whether s names a segment or a node of t.
func labName(t *topology.Topology, s string) bool {
	if _, ok := t.Node(s); ok {
		return true
	}
	return slices.ContainsFunc(t.Segments, func(seg topology.Segment) bool { return seg.Name == s })
}

func linkNames(n *topology.Node) []string {
	var out []string
	for _, i := range n.Interfaces {
		out = append(out, i.Name)
	}
	return out
}

// tcpdumpArgv is the command a capture runs in the node: tcpdump writing
// pcap to its standard output (-w -) packet by packet (-U) as soon as
// the kernel hands each over (--immediate-mode), so that a capture shows
// packets live and loses none that tcpdump has seen when it stops.
func tcpdumpArgv(iface string, opts CaptureOptions) ([]string, error) {
	if opts.Count < 0 {
		return nil, fmt.Errorf("packet count %d: want 0 (no limit) or more", opts.Count)
	}
	if opts.Duration < 0 {
		return nil, fmt.Errorf("duration %s: want 0 (no limit) or more", opts.Duration)
	}
	argv := []string{"tcpdump", "-U", "--immediate-mode", "-w", "-", "-i", iface}
	if opts.Count > 0 {
		argv = append(argv, "-c", strconv.Itoa(opts.Count))
	}
	if f := strings.Join(opts.Filter, " "); strings.TrimSpace(f) != "" {
		// After "--": a filter word that starts with '-' is no option.
		argv = append(argv, "--", f)
	}
	return argv, nil
}

// tcpdumpStderr takes tcpdump's standard error: it calls listening on the
// line that says tcpdump listens, and keeps the others (bounded) to say
// why tcpdump failed.
type tcpdumpStderr struct {
	mu        sync.Mutex
	listening func(string)
	partial   []byte
	lines     []string
	heard     bool
}

// maxStderrLines bounds the lines of tcpdump's standard error kept.
const maxStderrLines = 20

func (s *tcpdumpStderr) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	return len(b), nil
}

func (s *tcpdumpStderr) line(line string) {
	line = strings.TrimPrefix(strings.TrimSpace(line), "tcpdump: ")
	switch {
	case line == "":
	case strings.HasPrefix(line, "listening on ") && !s.heard:
		s.heard = true
		if s.listening != nil {
			s.listening(line)
		}
	case len(s.lines) < maxStderrLines:
		s.lines = append(s.lines, line)
	}
}

// failure is what tcpdump said before it failed, for an error message,
// with the node's links when tcpdump did not find the interface.
func (s *tcpdumpStderr) failure(n *topology.Node) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := s.lines
	if rest := strings.TrimSpace(string(s.partial)); rest != "" {
		lines = append(slices.Clone(lines), strings.TrimPrefix(rest, "tcpdump: "))
	}
	msg := strings.Join(lines, "; ")
	if strings.Contains(msg, "No such device") {
		msg += fmt.Sprintf(" (%s's links: %s; or any)", n.Name, strings.Join(linkNames(n), ", "))
	}
	if msg == "" {
		return ""
	}
	return ": " + msg
}
