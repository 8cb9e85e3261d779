// Package traffic is the lab's client load, which counts what breaks: many
// concurrent long HTTP downloads through the VIPs, one TCP connection per
// request from a random source address, read slowly with a deadline on
// every read, each connection recorded with its outcome. A failure injected
// meanwhile becomes numbers: how many connections broke (reset, refused,
// timed out, bad status, other error), how many stalled and recovered
// ("interrupted"), and when.
//
// It replaces the reference lab's httpclients, which had no counters and no
// read timeout (a blackholed flow was never counted). The code runs in the
// client node's network namespace and uses ordinary sockets.
package traffic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is how a connection ended.
type Outcome string

// Outcomes. Every outcome but OutcomeOK means a broken connection.
const (
	OutcomeOK        Outcome = "ok"
	OutcomeReset     Outcome = "reset"
	OutcomeRefused   Outcome = "refused"
	OutcomeTimeout   Outcome = "timeout"
	OutcomeBadStatus Outcome = "bad-status"
	OutcomeError     Outcome = "error"
	// OutcomeExhausted: no local port was free for a new connection from
	// the source address (EADDRNOTAVAIL, EADDRINUSE): the client opens
	// connections faster than TIME_WAIT frees their ports.
	OutcomeExhausted Outcome = "exhausted"
	// OutcomeDNS: the service name did not resolve (no address, no such
	// name, no answer in time), so no connection was tried. It is counted
	// apart: not a broken connection, not a success.
	OutcomeDNS Outcome = "dns"
)

// Outcomes returns every outcome, in the order reports show them.
func Outcomes() []Outcome {
	return []Outcome{OutcomeOK, OutcomeReset, OutcomeRefused, OutcomeTimeout, OutcomeBadStatus, OutcomeExhausted, OutcomeError, OutcomeDNS}
}

// Broken reports whether o is a broken connection: a connection that was
// tried and failed. A failed name lookup is not one (see OutcomeDNS).
func (o Outcome) Broken() bool { return o != OutcomeOK && o != OutcomeDNS }

// Conn is the record of one connection (one request).
type Conn struct {
	ID         int            `json:"id"`
	Source     netip.Addr     `json:"source"`
	SourcePort uint16         `json:"source_port"`
	Target     netip.AddrPort `json:"target"`
	// Name is the service name looked up to find Target, for a target
	// given by name; Target is then the address connected to (invalid when
	// the lookup failed).
	Name string `json:"name,omitempty"`
	// Fallbacks counts the addresses of Name that failed to connect before
	// Target (or before giving up), as a client tries each in turn.
	Fallbacks int `json:"fallbacks,omitempty"`
	// LB7 and Server come from the X-Lab-LB7 and X-Lab-Server response
	// headers.
	LB7    string `json:"lb7,omitempty"`
	Server string `json:"server,omitempty"`
	// Status is the HTTP status code, 0 when no response header arrived.
	Status int       `json:"status,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Bytes counts the body bytes received.
	Bytes int64 `json:"bytes"`
	// LongestStall is the longest time the client waited for data: from
	// connect to the response header, or within one read of the body. The
	// client's own pauses between reads are not counted.
	LongestStall time.Duration `json:"longest_stall_ns"`
	Outcome      Outcome       `json:"outcome"`
	Err          string        `json:"err,omitempty"`
	// Interrupted is set on a connection that ended well although it once
	// waited longer than the stall threshold.
	Interrupted bool `json:"interrupted,omitempty"`
	// Stopped is set on a connection cut by Run.Stop (or by the end of the
	// run's context), which counts as ok.
	Stopped bool `json:"stopped,omitempty"`
	// Latency is, for a request (ModeRequests), the time from when it was
	// due to its end: connect, request and the whole response.
	Latency time.Duration `json:"latency_ns,omitempty"`
	// Reused is set on a request sent on a kept connection.
	Reused bool `json:"reused,omitempty"`
}

// Progress is a live view of a run.
type Progress struct {
	Elapsed time.Duration
	// Started counts connections started, Active those in progress, the
	// others those finished. Interrupted ones are also counted as OK.
	Started, Active, OK, Broken, Interrupted int
	// DNSFailed counts the lookups of a service name that failed.
	DNSFailed int
	// Seconds holds the same figures per second since the start: the
	// connections started, and finished ok, broken or interrupted, in that
	// second.
	Seconds []Second
	// ByTarget splits the finished connections of Seconds by target: the
	// address and port connected to ("192.0.2.10:80"), or the service name
	// for a lookup that failed. Started is not split (a connection has no
	// target when it starts).
	ByTarget map[string][]Second
}

// Second is one second of Progress.Seconds.
type Second struct {
	Started, OK, Broken, Interrupted, DNSFailed int
	// P50 and P99 are the latencies of the requests of a request load that
	// succeeded in the second.
	P50, P99 time.Duration
}

// retryPause is the longest random pause after a broken connection when
// Config.Pause is disabled, so that a refused target does not spin.
const retryPause = 100 * time.Millisecond

// headerBufSize is the size of the buffer that reads response headers;
// body reads at least as large bypass it.
const headerBufSize = 4096

// Run is a load in progress.
type Run struct {
	cfg     Config
	log     *slog.Logger
	start   time.Time
	cancel  context.CancelFunc
	targets []target
	names   []nameTarget
	// dialers4 and dialers6 hold one dialer per source address of each
	// family, or a single unbound dialer when there are no sources.
	dialers4, dialers6 []sourceDialer
	workers            []*worker
	wg                 sync.WaitGroup

	nextID                                              atomic.Int64
	started, active, ok, broken, interrupted, dnsFailed atomic.Int64
	mu                                                  sync.Mutex
	seconds                                             []Second            // guarded by mu
	byTarget                                            map[string][]Second // guarded by mu
	// latencies holds, per second, the latencies of a request load's
	// successful requests, for the live percentiles; guarded by mu.
	latencies [][]time.Duration

	stopOnce sync.Once
	report   *Report

	// cpu is the machine's CPU time at the start, for Report.CPUBusy;
	// cpuErr is set when it could not be read (not Linux).
	cpu    cpuTimes
	cpuErr error
}

// target is a Config target with its request prepared.
type target struct {
	addr    netip.AddrPort
	network string
	str     string
	request []byte
}

// nameTarget is a Config name with its request prepared.
type nameTarget struct {
	name    string
	port    uint16
	request []byte
}

// request is the GET of path for host. A download asks the server to
// close the connection after it; a request load's requests do not, as
// HTTP/1.1 clients do, so that the client closes it (without KeepAlive)
// or sends the next request on it (with).
func request(mode Mode, path, host string) []byte {
	conn := "Connection: close\r\n"
	if mode == ModeRequests {
		conn = ""
	}
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: lab-traffic\r\nAccept: */*\r\n" + conn + "\r\n")
}

// sourceDialer binds connections to one source address.
type sourceDialer struct {
	addr   netip.Addr
	dialer dialer
}

// dialer opens connections; *net.Dialer is the one used outside tests.
type dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Start validates cfg (after defaults) and starts its workers. The run ends
// at Stop, or when ctx is done; log (nil discards) receives start, stop and
// one debug line per broken connection.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Run, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("traffic configuration: %w", err)
	}
	r := newRun(cfg, log)
	ctx, r.cancel = context.WithCancel(ctx)
	r.cpu, r.cpuErr = readCPUTimes(procStat)
	r.start = time.Now()
	r.wg.Add(len(r.workers))
	for _, w := range r.workers {
		if cfg.Mode == ModeRequests {
			go w.requestLoop(ctx)
		} else {
			go w.loop(ctx)
		}
	}
	r.log.Info("traffic started", "mode", cfg.Mode, "workers", cfg.Workers, "targets", len(cfg.Targets), "names", len(cfg.Names),
		"sources", len(cfg.Sources), "path", cfg.Path, "rate", cfg.Rate, "keepalive", cfg.KeepAlive)
	return r, nil
}

// newRun prepares the requests, dialers and workers of cfg, which is valid
// and has its defaults set.
func newRun(cfg Config, log *slog.Logger) *Run {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Run{cfg: cfg, log: log, start: time.Now()}
	for _, t := range cfg.Targets {
		network := "tcp4"
		if !t.Addr().Unmap().Is4() {
			network = "tcp6"
		}
		r.targets = append(r.targets, target{addr: t, network: network, str: t.String(), request: request(cfg.Mode, cfg.Path, t.String())})
	}
	for _, n := range cfg.Names {
		r.names = append(r.names, nameTarget{name: n.Name, port: n.Port, request: request(cfg.Mode, cfg.Path, n.String())})
	}
	for _, s := range cfg.Sources {
		d := sourceDialer{addr: s, dialer: &net.Dialer{
			Timeout:   cfg.ConnectTimeout,
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(s, 0)),
		}}
		if s.Unmap().Is4() {
			r.dialers4 = append(r.dialers4, d)
		} else {
			r.dialers6 = append(r.dialers6, d)
		}
	}
	if len(cfg.Sources) == 0 {
		d := sourceDialer{dialer: &net.Dialer{Timeout: cfg.ConnectTimeout}}
		r.dialers4, r.dialers6 = []sourceDialer{d}, []sourceDialer{d}
	}
	seed := uint64(cfg.Seed)
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for i := range cfg.Workers {
		w := &worker{
			run:   r,
			rng:   rand.New(rand.NewPCG(seed, uint64(i))),
			buf:   make([]byte, cfg.ReadSize),
			br:    bufio.NewReaderSize(nil, headerBufSize),
			timer: time.NewTimer(time.Hour),
		}
		w.timer.Stop()
		r.workers = append(r.workers, w)
	}
	return r
}

// Stop stops starting connections, cuts those in progress (which count as
// ok, with Stopped set, not as broken), waits for the workers and returns
// the report. Later calls return the same report.
func (r *Run) Stop() *Report {
	r.stopOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
		end := time.Now()
		var conns []Conn
		for _, w := range r.workers {
			conns = append(conns, w.conns...)
			w.conns = nil
		}
		slices.SortFunc(conns, func(a, b Conn) int { return a.ID - b.ID })
		r.report = newReport(r.start, end, r.settings(), conns)
		if r.cpuErr == nil {
			if now, err := readCPUTimes(procStat); err == nil {
				r.report.CPUBusy = busy(r.cpu, now)
			}
		}
		r.log.Info("traffic stopped", "connections", r.report.Total, "ok", r.report.OK,
			"broken", r.report.Broken, "interrupted", r.report.Interrupted)
	})
	return r.report
}

// Snapshot returns the live counters (atomic loads) and a copy of the
// per-second series.
func (r *Run) Snapshot() Progress {
	p := Progress{
		Elapsed:     time.Since(r.start),
		Started:     int(r.started.Load()),
		Active:      int(r.active.Load()),
		OK:          int(r.ok.Load()),
		Broken:      int(r.broken.Load()),
		Interrupted: int(r.interrupted.Load()),
		DNSFailed:   int(r.dnsFailed.Load()),
	}
	r.mu.Lock()
	p.Seconds = slices.Clone(r.seconds)
	p.ByTarget = make(map[string][]Second, len(r.byTarget))
	for k, v := range r.byTarget {
		p.ByTarget[k] = slices.Clone(v)
	}
	lat := make([][]time.Duration, len(r.latencies))
	for i, l := range r.latencies {
		lat[i] = slices.Clone(l)
	}
	r.mu.Unlock()
	for i, l := range lat {
		st := latencyStats(l)
		p.Seconds[i].P50, p.Seconds[i].P99 = st.P50, st.P99
	}
	return p
}

// second returns the live series entry of t, growing the series; r.mu must
// be held.
func (r *Run) second(t time.Time) *Second {
	return secondOf(&r.seconds, r.start, t)
}

// secondOf returns the entry of t in the series s of a run started at
// start, growing the series.
func secondOf(s *[]Second, start, t time.Time) *Second {
	i := max(int(t.Sub(start)/time.Second), 0)
	for len(*s) <= i {
		*s = append(*s, Second{})
	}
	return &(*s)[i]
}

// targetKey names the target of c in Progress.ByTarget.
func targetKey(c *Conn) string {
	if c.Target.IsValid() {
		return c.Target.String()
	}
	return c.Name
}

// begin counts a connection started at t.
func (r *Run) begin(t time.Time) {
	r.started.Add(1)
	r.active.Add(1)
	r.mu.Lock()
	r.second(t).Started++
	r.mu.Unlock()
}

// finish counts a finished connection.
func (r *Run) finish(c *Conn) {
	r.active.Add(-1)
	r.mu.Lock()
	s := r.second(c.End)
	if r.byTarget == nil {
		r.byTarget = map[string][]Second{}
	}
	k := targetKey(c)
	ts := r.byTarget[k]
	st := secondOf(&ts, r.start, c.End)
	switch {
	case c.Outcome == OutcomeDNS:
		r.dnsFailed.Add(1)
		s.DNSFailed++
		st.DNSFailed++
	case c.Outcome.Broken():
		r.broken.Add(1)
		s.Broken++
		st.Broken++
	case c.Interrupted:
		r.ok.Add(1)
		r.interrupted.Add(1)
		s.OK++
		s.Interrupted++
		st.OK++
		st.Interrupted++
	default:
		r.ok.Add(1)
		s.OK++
		st.OK++
	}
	r.byTarget[k] = ts
	if r.cfg.Mode == ModeRequests && succeeded(c) {
		i := max(int(c.End.Sub(r.start)/time.Second), 0)
		for len(r.latencies) <= i {
			r.latencies = append(r.latencies, nil)
		}
		r.latencies[i] = append(r.latencies[i], c.Latency)
	}
	r.mu.Unlock()
	if c.Outcome.Broken() {
		r.log.Debug("connection broken", "id", c.ID, "source", c.Source, "source_port", c.SourcePort,
			"target", c.Target, "lb7", c.LB7, "server", c.Server, "outcome", c.Outcome, "err", c.Err,
			"bytes", c.Bytes, "duration", c.End.Sub(c.Start))
	}
}

// worker runs connections one after the other (downloads), or sends
// requests on time (requests). Its buffers are reused for every download,
// so reading allocates nothing.
type worker struct {
	run   *Run
	rng   *rand.Rand
	buf   []byte
	br    *bufio.Reader
	timer *time.Timer

	// mu guards conns, which the requests of a request load append to
	// concurrently, and idle, the kept connections waiting for a request.
	mu    sync.Mutex
	conns []Conn
	idle  []*keptConn
}

// loop runs connections until ctx is done.
func (w *worker) loop(ctx context.Context) {
	defer w.run.wg.Done()
	for ctx.Err() == nil {
		c := w.connect(ctx)
		w.run.finish(&c)
		w.conns = append(w.conns, c)
		if c.Outcome != OutcomeOK {
			limit := w.run.cfg.Pause
			if limit <= 0 {
				limit = retryPause
			}
			w.sleep(ctx, w.randDuration(limit))
		}
	}
}

// randDuration returns a uniform duration in [0, limit).
func (w *worker) randDuration(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return time.Duration(w.rng.Int64N(int64(limit)))
}

// sleep waits for d, or until ctx is done, which it reports as false.
func (w *worker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	w.timer.Reset(d)
	select {
	case <-w.timer.C:
		return true
	case <-ctx.Done():
		w.timer.Stop()
		return false
	}
}

// connect runs one connection: dial from a random source to a random
// target (for a name, its addresses in turn until one connects), send the
// request, read the body slowly until its end, an early stop, an error or
// the end of the run.
func (w *worker) connect(ctx context.Context) Conn {
	r := w.run
	c := Conn{ID: int(r.nextID.Add(1)), Start: time.Now()}
	r.begin(c.Start)
	i := w.rng.IntN(len(r.targets) + len(r.names))
	if i < len(r.targets) {
		t := &r.targets[i]
		conn, err := w.dial(ctx, &c, t.addr)
		if err != nil {
			return w.end(ctx, c, fmt.Errorf("connect: %w", err))
		}
		defer conn.Close()
		return w.exchange(ctx, c, conn, t.request)
	}
	n := &r.names[i-len(r.targets)]
	c.Name = n.name
	addrs, err := r.cfg.Resolver.Lookup(ctx, n.name)
	if err != nil {
		if ctx.Err() != nil {
			return w.end(ctx, c, ctx.Err())
		}
		c.End, c.Outcome, c.Err = time.Now(), OutcomeDNS, err.Error()
		return c
	}
	var conn net.Conn
	for _, a := range order(addrs, len(r.dialers4) > 0, len(r.dialers6) > 0, w.rng.IntN(2) == 0) {
		if conn, err = w.dial(ctx, &c, netip.AddrPortFrom(a, n.port)); err == nil || ctx.Err() != nil {
			break
		}
		c.Fallbacks++
	}
	if conn == nil {
		if err == nil {
			err = fmt.Errorf("%s has no address of a family with a source address", n.name)
		}
		return w.end(ctx, c, fmt.Errorf("connect: %w", err))
	}
	defer conn.Close()
	return w.exchange(ctx, c, conn, n.request)
}

// order is the order in which a client tries a name's addresses: one
// family first (v6First, drawn at random so that a load spreads over both),
// each family in the order the name server gave. A family the client has
// no source address of (has4, has6) cannot be tried.
func order(addrs []netip.Addr, has4, has6, v6First bool) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	if !has4 {
		v4 = nil
	}
	if !has6 {
		v6 = nil
	}
	if len(v6) > 0 && (len(v4) == 0 || v6First) {
		return append(v6, v4...)
	}
	return append(v4, v6...)
}

// dial connects to addr from a random source of its family, recording the
// target and source in c.
func (w *worker) dial(ctx context.Context, c *Conn, addr netip.AddrPort) (net.Conn, error) {
	r := w.run
	network, dialers := "tcp4", r.dialers4
	if !addr.Addr().Unmap().Is4() {
		network, dialers = "tcp6", r.dialers6
	}
	return r.dialWith(ctx, c, &dialers[w.rng.IntN(len(dialers))], network, addr)
}

// dialWith connects to addr with d, recording the target and source in c.
func (r *Run) dialWith(ctx context.Context, c *Conn, d *sourceDialer, network string, addr netip.AddrPort) (net.Conn, error) {
	c.Source, c.Target = d.addr, addr
	var conn net.Conn
	dial := func() (err error) {
		conn, err = d.dialer.DialContext(ctx, network, addr.String())
		return err
	}
	var err error
	if r.cfg.Within != nil {
		err = r.cfg.Within(dial)
	} else {
		err = dial()
	}
	return conn, err
}

// send records conn's source in c, makes the end of the run interrupt
// conn, bounds the exchange by ReadTimeout and sends request. It returns
// when it sent, and stop, to be deferred whatever the error.
func (w *worker) send(ctx context.Context, c *Conn, conn net.Conn, request []byte) (sent time.Time, stop func() bool, err error) {
	if la, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		ap := la.AddrPort()
		c.Source, c.SourcePort = ap.Addr().Unmap(), ap.Port()
	}
	// The end of the run interrupts whatever the connection is blocked in,
	// with a deadline in the past. A deadline set afterwards would override
	// it: every deadline is followed by a check of ctx.
	stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	sent = time.Now()
	if err := conn.SetDeadline(sent.Add(w.run.cfg.ReadTimeout)); err != nil {
		return sent, stop, fmt.Errorf("set deadline: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return sent, stop, err
	}
	if _, err := conn.Write(request); err != nil {
		return sent, stop, fmt.Errorf("send request: %w", err)
	}
	return sent, stop, nil
}

// answered records the response header in c: status, and the LB7 and
// backend that served it.
func (c *Conn) answered(resp *http.Response) {
	c.Status = resp.StatusCode
	c.LB7 = resp.Header.Get("X-Lab-LB7")
	c.Server = resp.Header.Get("X-Lab-Server")
}

// badStatus ends c as bad-status at now when its status is not 200, and
// reports whether it did.
func (c *Conn) badStatus(now time.Time) bool {
	if c.Status == http.StatusOK {
		return false
	}
	c.Outcome, c.Err, c.End = OutcomeBadStatus, "status "+strconv.Itoa(c.Status), now
	return true
}

// exchange sends request on conn and reads the answer, completing c.
func (w *worker) exchange(ctx context.Context, c Conn, conn net.Conn, request []byte) Conn {
	cfg := &w.run.cfg
	connected, stop, err := w.send(ctx, &c, conn, request)
	defer stop()
	if err != nil {
		return w.end(ctx, c, err)
	}
	w.br.Reset(conn)
	defer w.br.Reset(nil)
	resp, err := http.ReadResponse(w.br, nil)
	now := time.Now()
	if err != nil {
		return w.end(ctx, c, fmt.Errorf("read response header: %w", err))
	}
	c.LongestStall = now.Sub(connected)
	c.answered(resp)
	if c.badStatus(now) {
		return c
	}
	// The body is never closed: http's Close could read it to its end.
	// Closing the connection is enough.
	for {
		start := time.Now()
		if err := conn.SetReadDeadline(start.Add(cfg.ReadTimeout)); err != nil {
			return w.end(ctx, c, fmt.Errorf("set read deadline: %w", err))
		}
		if err := ctx.Err(); err != nil {
			return w.end(ctx, c, err)
		}
		n, err := resp.Body.Read(w.buf)
		now := time.Now()
		if n > 0 {
			c.Bytes += int64(n)
			c.LongestStall = max(c.LongestStall, now.Sub(start))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return w.end(ctx, c, fmt.Errorf("read body: %w", err))
		}
		if cfg.EarlyStop > 0 && w.rng.Float64() < cfg.EarlyStop {
			break
		}
		if cfg.Pause > 0 && !w.sleep(ctx, w.randDuration(cfg.Pause)) {
			return w.end(ctx, c, ctx.Err())
		}
	}
	return w.end(ctx, c, nil)
}

// end completes c with err (nil for success), marking connections cut by
// the end of the run as stopped.
func (w *worker) end(ctx context.Context, c Conn, err error) Conn {
	c.End = time.Now()
	var dnsErr dnsError
	switch {
	case err == nil:
		c.Outcome = OutcomeOK
	case ctx.Err() != nil:
		c.Outcome, c.Stopped = OutcomeOK, true
	case errors.As(err, &dnsErr):
		c.Outcome, c.Err = OutcomeDNS, dnsErr.Error()
	default:
		c.Outcome, c.Err = classify(err), err.Error()
	}
	c.Interrupted = w.run.cfg.Mode != ModeRequests && c.Outcome == OutcomeOK && c.LongestStall > w.run.cfg.StallThreshold
	return c
}
