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
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/pcapstream"
	"github.com/lab-lb/lab/internal/topology"
)

// CaptureOptions says what Lab.Capture captures, and for how long.
type CaptureOptions struct {
	// Interface is where to capture in the node: "" or "any" for every
	// interface; a segment the node joins or a node it is linked to, for
	// the interface named after it; on an LB7, an LB4, for the IPIP
	// tunnel from it (its packets decapsulated; "6" and the name for
	// IPv6 in IPv6); lo; or any other device of the node by its name.
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
	// Node is the node captured in.
	Node      string `json:"node"`
	Interface string `json:"interface"` // the device captured on: "any", "infra"...
	// LinkType is the pcap link type: 1 (Ethernet) on one interface, 276
	// or 113 (Linux cooked capture v2 or v1) on "any"; 0 when tcpdump
	// wrote nothing.
	LinkType uint32 `json:"link_type"`
	// Packets counts the packets written.
	Packets int   `json:"packets"`
	Bytes   int64 `json:"bytes"` // captured packet bytes, without pcap headers
	// Dropped is how many packets the kernel dropped because tcpdump
	// did not read them in time, as tcpdump says when it stops (it says
	// nothing when it is killed: after stopGrace, or when the lab goes
	// down).
	Dropped int    `json:"dropped"`
	Stopped string `json:"stopped"` // how the capture ended: CaptureInterrupted...
}

// labWatchInterval is how often a capture checks that the lab's process
// still runs.
const labWatchInterval = 500 * time.Millisecond

// stopGrace is how long a stopped tcpdump has to write out what it holds
// and exit (in a busy VM, its output may lag seconds behind) before it is
// killed. A variable for tests.
var stopGrace = 10 * time.Second

// untilClosed is an input that ends when its channel is closed.
type untilClosed <-chan struct{}

func (c untilClosed) Read([]byte) (int, error) {
	<-c
	return 0, io.EOF
}

// Capture captures the traffic of node nodeName, running tcpdump inside
// the node (its network namespace, in the VM in VM mode), and writes it
// to w as a pcap stream (classic pcap, as tcpdump -w writes it), packet
// by packet as tcpdump captures them. Whatever it has written is always a
// complete pcap file: it holds a packet back until all of it has arrived.
//
// It stops when ctx is done (Stopped: CaptureInterrupted), after
// opts.Duration or opts.Count packets, or when the lab goes down; those
// end the capture well, with a nil error. Stopped by ctx or the
// duration, tcpdump is interrupted and its last packets still arrive
// (within stopGrace: it is killed after that), so Capture returns a
// moment after ctx is done. It fails when tcpdump cannot run (no such
// interface, a filter it rejects, tcpdump not installed) or when w fails.
func (l *Lab) Capture(ctx context.Context, nodeName string, opts CaptureOptions, w io.Writer) (*CaptureResult, error) {
	t, err := l.topology()
	if err != nil {
		return nil, err
	}
	target, err := newCaptureTarget(t, l.Name, nodeName)
	if err != nil {
		return nil, err
	}
	iface, _, err := target.device(opts.Interface)
	if err != nil {
		return nil, err
	}
	argv, err := tcpdumpArgv(iface, opts)
	if err != nil {
		return nil, err
	}
	// tcpdump reads nothing: the end of its input interrupts it (SIGINT),
	// and it writes out what it holds and exits; the rest of its output
	// still arrives. Cancelling the request kills it: after stopGrace, or
	// at once when the lab is gone.
	req, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	input := make(chan struct{})
	var (
		endInput sync.Once
		mu       sync.Mutex
		stopped  string // why the capture was stopped; "" while it runs
	)
	stop := func(why string) {
		mu.Lock()
		if stopped == "" {
			stopped = why
		}
		mu.Unlock()
		endInput.Do(func() { close(input) })
	}
	// Ends the request's body whatever happened, which frees the
	// goroutine that sends it.
	defer endInput.Do(func() { close(input) })
	durationC := make(chan struct{}) // closed once the duration has passed
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(labWatchInterval)
		defer tick.Stop()
		var grace <-chan time.Time
		ctxDone, durationDone := ctx.Done(), durationC
		for {
			select {
			case <-done:
				return
			case <-ctxDone:
				ctxDone = nil
				stop(CaptureInterrupted)
				grace = time.After(stopGrace)
			case <-durationDone:
				durationDone = nil
				stop(CaptureDuration)
				grace = time.After(stopGrace)
			case <-grace:
				kill()
				return
			case <-tick.C:
				if !l.Alive() { // a VM that stops answers nothing, not even a reset
					stop(CaptureLabDown)
					kill()
					return
				}
			}
		}
	}()
	// The duration counts from when tcpdump listens, not from when the
	// request left (starting tcpdump takes a moment in the VM).
	var timer *time.Timer
	stderr := &tcpdumpStderr{listening: func(line string) {
		if opts.Duration > 0 {
			timer = time.AfterFunc(opts.Duration, func() { close(durationC) })
		}
		if opts.Listening != nil {
			opts.Listening(line)
		}
	}}
	pw := pcapstream.NewWriter(w)
	path := "/v1/nodes/" + nodeName + "/exec?" + control.ExecInterruptParam + "=1"
	code, err := l.client.Exec(req, path, argv, untilClosed(input), pw, stderr)
	if timer != nil { // set by Exec's goroutine: this one
		timer.Stop()
	}
	mu.Lock()
	why := stopped
	mu.Unlock()
	res := &CaptureResult{Node: nodeName, Interface: iface, LinkType: pw.LinkType(), Packets: pw.Packets(),
		Bytes: pw.Bytes(), Dropped: stderr.dropped, Stopped: why}
	switch {
	case pw.Err() != nil:
		return res, fmt.Errorf("capture on %s: %w", nodeName, pw.Err())
	case why != "":
		return res, nil // whether tcpdump exited or was killed
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
	return res, fmt.Errorf("capture on %s %s: tcpdump exit status %d%s", nodeName, iface, code, stderr.failure(target, strings.Join(opts.Filter, " ")))
}

// goingDown reports whether the lab is gone or on its way down: its
// process has ended, its supervisor cannot be reached, or it answers
// that it is stopping.
func (l *Lab) goingDown(ctx context.Context) bool {
	if !l.Alive() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	var st control.Status
	// No node has role "-": the answer is the lab's phase alone, cheap.
	err := l.client.GetJSON(ctx, "/v1/status?"+neturl.Values{"role": {"-"}}.Encode(), &st)
	var refused *control.APIError
	switch {
	case errors.As(err, &refused): // it answers
		return false
	case err != nil:
		return true
	}
	return st.Phase == "stopping"
}

// CaptureArgs splits the arguments of `lab capture NODE [INTERFACE]
// [FILTER...]` that follow the node: the first is the interface when it
// is "any" or names a device of the node (see CaptureOptions.Interface);
// otherwise, and after it, the words are the filter. A first argument
// that names a segment or node of the lab that the node has no device
// for is an error rather than a filter.
func (l *Lab) CaptureArgs(nodeName string, args []string) (CaptureOptions, error) {
	t, err := l.topology()
	if err != nil {
		return CaptureOptions{}, err
	}
	c, err := newCaptureTarget(t, l.Name, nodeName)
	if err != nil {
		return CaptureOptions{}, err
	}
	return c.args(args)
}

// captureTarget is a node to capture on, with the names of its devices.
type captureTarget struct {
	t       *topology.Topology
	node    *topology.Node
	devices []string // its interfaces, then its tunnels (an LB7's, from each LB4), then lo
}

func newCaptureTarget(t *topology.Topology, lab, nodeName string) (*captureTarget, error) {
	n, ok := t.Node(nodeName)
	if !ok {
		return nil, fmt.Errorf("no node %s in lab %s", nodeName, lab)
	}
	c := &captureTarget{t: t, node: n}
	for _, i := range n.Interfaces {
		c.devices = append(c.devices, i.Name)
	}
	ns := fabric.NodeNetns(lab, nodeName)
	for _, tu := range fabric.NewPlan(t, lab).Tunnels {
		if tu.NS == ns {
			c.devices = append(c.devices, tu.Name)
		}
	}
	c.devices = append(c.devices, "lo")
	return c, nil
}

// args splits CaptureArgs's arguments.
func (c *captureTarget) args(args []string) (CaptureOptions, error) {
	if len(args) == 0 {
		return CaptureOptions{}, nil
	}
	if _, known, err := c.device(args[0]); err != nil {
		return CaptureOptions{}, err
	} else if !known {
		return CaptureOptions{Filter: args}, nil
	}
	return CaptureOptions{Interface: args[0], Filter: args[1:]}, nil
}

// device returns the device that what names (see
// CaptureOptions.Interface), and whether it is one the lab made; a name
// the lab knows nothing of passes through. A segment or node of the lab
// that the node has no device for is an error.
func (c *captureTarget) device(what string) (string, bool, error) {
	if what == "" || what == "any" {
		return "any", true, nil
	}
	for _, i := range c.node.Interfaces {
		if i.Name == what || i.Segment == what || i.Peer == what {
			return i.Name, true, nil
		}
	}
	if slices.Contains(c.devices, what) {
		return what, true, nil
	}
	_, isNode := c.t.Node(what)
	if isNode || slices.ContainsFunc(c.t.Segments, func(seg topology.Segment) bool { return seg.Name == what }) {
		return "", false, fmt.Errorf("%s has no link to %s (its interfaces: %s; or any)", c.node.Name, what, strings.Join(c.devices, ", "))
	}
	return what, false, nil
}

// tcpdumpArgv is the command a capture runs in the node: tcpdump writing
// pcap to its standard output (-w -) packet by packet (-U) as soon as
// the kernel hands each over (--immediate-mode), so that a capture shows
// packets live and loses none that tcpdump has seen when it stops.
//
// In immediate mode, libpcap's ring holds a fixed number of packets of
// the snapshot length each: tcpdump's default 256 KiB in its default
// 2 MiB buffer is 8 packets on "any" (on one interface, libpcap sizes
// them for the interface): lb7-1's "any" in the one-CPU VM dropped up
// to a fifth of its packets. 64 KiB packets (no IP packet is longer,
// offloads included) in 8 MiB hold 128, and it dropped none.
func tcpdumpArgv(iface string, opts CaptureOptions) ([]string, error) {
	if opts.Count < 0 {
		return nil, fmt.Errorf("packet count %d: want 0 (no limit) or more", opts.Count)
	}
	if opts.Duration < 0 {
		return nil, fmt.Errorf("duration %s: want 0 (no limit) or more", opts.Duration)
	}
	argv := []string{"tcpdump", "-U", "--immediate-mode", "-s", "65535", "-B", "8192", "-w", "-", "-i", iface}
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
// line that says tcpdump listens, reads the statistics tcpdump prints as
// it stops, and keeps the other lines (bounded) to say why tcpdump
// failed.
type tcpdumpStderr struct {
	mu        sync.Mutex
	listening func(string)
	partial   []byte
	lines     []string
	heard     bool
	dropped   int // packets dropped by the kernel
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
	case strings.HasSuffix(line, " dropped by kernel"): // its statistics, as it stops
		s.dropped, _ = strconv.Atoi(strings.Fields(line)[0])
	case strings.HasSuffix(line, " captured") || strings.HasSuffix(line, " received by filter"):
	case strings.HasPrefix(line, "data link type "): // what -i any gives: said again when it matters
	case strings.HasPrefix(line, "(") && len(s.lines) > 0 && strings.Contains(s.lines[len(s.lines)-1], strings.Trim(line, "()")):
		// "tcpdump: nosuch: No such device exists" then "(No such device exists)"
	case len(s.lines) < maxStderrLines:
		s.lines = append(s.lines, line)
	}
}

// failure is what tcpdump said before it failed, for an error message,
// with the node's devices when tcpdump did not find the interface, and
// the filter when it could not parse it (the interface mistyped is taken
// for the start of the filter).
func (s *tcpdumpStderr) failure(c *captureTarget, filter string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := s.lines
	if rest := strings.TrimSpace(string(s.partial)); rest != "" {
		lines = append(slices.Clone(lines), strings.TrimPrefix(rest, "tcpdump: "))
	}
	msg := strings.Join(lines, "; ")
	devices := fmt.Sprintf("%s's interfaces: %s; or any", c.node.Name, strings.Join(c.devices, ", "))
	switch {
	case strings.Contains(msg, "No such device"):
		msg += " (" + devices + ")"
	case strings.Contains(msg, "filter expression"):
		msg += fmt.Sprintf(" (filter %q; %s)", filter, devices)
	}
	if msg == "" {
		return ""
	}
	return ": " + msg
}
