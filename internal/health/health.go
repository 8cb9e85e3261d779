// Package health checks HTTP targets periodically and reports when one
// changes state, with rise and fall counts as in keepalived or HAProxy: a
// target becomes healthy after Rise successes in a row and unhealthy after
// Fall failures in a row. LB4s use it to check their LB7s'
// /healthcheck.
package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config tunes a Checker.
type Config struct {
	Interval time.Duration // between checks of one target
	Timeout  time.Duration // of one check
	Rise     int           // successes in a row to become healthy
	Fall     int           // failures in a row to become unhealthy
	// Dial opens a check connection; nil dials from where the process
	// stands (a net.Dialer without TCP keep-alives).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Target is something to check: GET Path on Addr must answer 200.
type Target struct {
	Name string
	Addr netip.AddrPort
	Path string

	host, request string
}

// State is a target's current view.
type State struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	// Known is false until the target has passed Rise checks or failed
	// Fall in a row: until then "unhealthy" is a default, not a verdict.
	Known     bool      `json:"known"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
}

// Checker checks targets until its context ends. Targets start unhealthy.
type Checker struct {
	cfg      Config
	log      *slog.Logger
	onChange func(State)
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	states  map[string]*tracked
	ctx     context.Context               // Run's, nil before Run
	want    []Target                      // the latest targets given
	running map[string]context.CancelFunc // a checking goroutine per target
	beat    chan struct{}                 // closed, and replaced, every Interval
	wg      sync.WaitGroup
}

type tracked struct {
	State
	ok, fail int // consecutive results
}

// New returns a checker calling onChange (from its own goroutines, one at
// a time) whenever a target turns healthy or unhealthy, and when a new
// target is first found unhealthy (Known turns true).
func New(cfg Config, log *slog.Logger, onChange func(State)) *Checker {
	dial := cfg.Dial
	if dial == nil {
		// No keep-alive options to set on a check's connection: system
		// calls are dear in a user-mode Linux VM.
		d := &net.Dialer{KeepAlive: -1}
		dial = d.DialContext
	}
	return &Checker{
		cfg: cfg, log: log, onChange: onChange, dial: dial,
		states: map[string]*tracked{}, running: map[string]context.CancelFunc{},
	}
}

// Run checks every target every Interval until ctx is done; Update
// changes the targets meanwhile.
//
// Every target is checked on one shared beat rather than on a timer of its
// own: the process wakes once per interval, not once per target, which
// counts when many LB4s check many LB7s in a one-CPU VM.
func (c *Checker) Run(ctx context.Context, targets []Target) {
	c.mu.Lock()
	c.ctx = ctx
	c.beat = make(chan struct{})
	if c.want == nil {
		c.want = targets
	}
	c.syncLocked()
	c.mu.Unlock()
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return
		case <-tick.C:
			c.mu.Lock()
			close(c.beat)
			c.beat = make(chan struct{})
			c.mu.Unlock()
		}
	}
}

// nextBeat returns the channel closed on the next beat.
func (c *Checker) nextBeat() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.beat
}

// Update replaces the targets: new ones start unhealthy and are checked at
// once, the ones left out are forgotten, the others keep their state.
func (c *Checker) Update(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = slices.Clone(targets)
	if c.want == nil {
		c.want = []Target{}
	}
	if c.ctx != nil {
		c.syncLocked()
	}
}

// syncLocked starts and stops checking goroutines to match c.want.
func (c *Checker) syncLocked() {
	keep := map[string]bool{}
	for _, t := range c.want {
		keep[t.Name] = true
		if _, ok := c.running[t.Name]; ok {
			continue
		}
		t.host = t.Addr.String()
		t.request = "GET " + t.Path + " HTTP/1.1\r\nHost: " + t.host + "\r\nUser-Agent: lab-health\r\n\r\n"
		c.states[t.Name] = &tracked{State: State{Name: t.Name, Since: time.Now()}}
		ctx, cancel := context.WithCancel(c.ctx)
		c.running[t.Name] = cancel
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			// The target's connection, owned by this goroutine alone.
			var conn *checkConn
			defer func() { conn.close() }()
			for {
				var err error
				conn, err = c.check(ctx, t, conn)
				if ctx.Err() != nil {
					return
				}
				c.record(t, err)
				select {
				case <-ctx.Done():
					return
				case <-c.nextBeat():
				}
			}
		}()
	}
	for name, cancel := range c.running {
		if !keep[name] {
			cancel()
			delete(c.running, name)
			delete(c.states, name)
		}
	}
}

// checkConn is a connection kept open from one check to the next.
type checkConn struct {
	net.Conn
	rd *bufio.Reader
}

func (cc *checkConn) close() {
	if cc != nil {
		cc.Conn.Close()
	}
}

// check makes one HTTP/1.1 request by hand over conn, the connection the
// previous check left open (nil: none), and returns the connection to
// keep for the next one (nil when it must not be reused). A request costs
// one write and one read on a kept connection, against a dial, a
// handshake through the lab's links and a close on a new one, and
// net/http's client costs several times more CPU still: that adds up with
// every LB4 checking every LB7 each second in a one-CPU VM.
//
// A kept connection the target closed meanwhile (an HAProxy reload, an
// idle timeout) fails before any answer: the check then tries once more
// on a new connection, so that only the target itself can fail it.
func (c *Checker) check(ctx context.Context, t Target, conn *checkConn) (*checkConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if conn != nil {
		keep, answered, err := c.request(ctx, t, conn)
		if err == nil || answered {
			if !keep || err != nil {
				conn.close()
				conn = nil
			}
			return conn, err
		}
		conn.close()
	}
	nc, err := c.dial(ctx, "tcp", t.host)
	if err != nil {
		return nil, err
	}
	conn = &checkConn{Conn: nc, rd: bufio.NewReaderSize(nc, 512)}
	keep, _, err := c.request(ctx, t, conn)
	if !keep || err != nil {
		conn.close()
		return nil, err
	}
	return conn, nil
}

// request sends t's request on conn and reads the answer whole. It says
// whether the connection may serve another request, and whether any of
// the answer arrived (a failure before that may be a stale connection).
func (c *Checker) request(ctx context.Context, t Target, conn *checkConn) (keep, answered bool, err error) {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := io.WriteString(conn, t.request); err != nil {
		return false, false, err
	}
	line, err := conn.rd.ReadString('\n')
	if err != nil {
		return false, line != "", fmt.Errorf("read answer: %w", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.") || len(line) < 12 {
		return false, true, fmt.Errorf("not an HTTP answer: %q", strings.TrimSpace(line))
	}
	keep = line[:8] == "HTTP/1.1"
	length := -1
	for {
		h, err := conn.rd.ReadString('\n')
		if err != nil {
			return false, true, fmt.Errorf("read answer: %w", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		name, value, _ := strings.Cut(h, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			if length, err = strconv.Atoi(value); err != nil || length < 0 {
				return false, true, fmt.Errorf("bad content-length %q", value)
			}
		case "connection":
			keep = keep && !strings.EqualFold(value, "close")
		case "transfer-encoding":
			keep = false // chunked: not worth reading for a check
		}
	}
	if length < 0 {
		keep = false // the body ends with the connection
	} else if _, err := conn.rd.Discard(length); err != nil {
		return false, true, fmt.Errorf("read answer: %w", err)
	}
	if code := line[9:12]; code != "200" {
		return keep, true, fmt.Errorf("status %s", code)
	}
	return keep, true, nil
}

// record counts a result and reports a change of state.
func (c *Checker) record(t Target, err error) {
	c.mu.Lock()
	s, ok := c.states[t.Name]
	if !ok { // removed by Update meanwhile
		c.mu.Unlock()
		return
	}
	changed := false
	if err == nil {
		s.ok, s.fail = s.ok+1, 0
		s.LastError = ""
		if !s.Healthy && s.ok >= c.cfg.Rise {
			s.Healthy, s.Known, s.Since, changed = true, true, time.Now(), true
		}
	} else {
		s.ok, s.fail = 0, s.fail+1
		s.LastError = err.Error()
		if (s.Healthy || !s.Known) && s.fail >= c.cfg.Fall {
			s.Healthy, s.Known, s.Since, changed = false, true, time.Now(), true
		}
	}
	st := s.State
	c.mu.Unlock()
	if changed {
		c.log.Info("health changed", "target", st.Name, "healthy", st.Healthy, "err", st.LastError)
		c.onChange(st)
	}
}

// States returns every target's state, in no particular order.
func (c *Checker) States() []State {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]State, 0, len(c.states))
	for _, s := range c.states {
		out = append(out, s.State)
	}
	return out
}
