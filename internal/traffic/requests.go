package traffic

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// A request load (ModeRequests) is open-loop: each worker sends its
// requests at fixed times, Rate a second, whether or not the earlier ones
// have been answered, as independent users do. A stall therefore shows as
// requests that time out or take long, never as requests not sent, and
// each request's latency counts from its own due time (no coordinated
// omission). Without KeepAlive each request opens a new connection, from a
// random source address, and the client closes it after the response, as
// an HTTP/1.1 client that does not keep connections does: its port then
// waits in TIME_WAIT for 60 s, which is how a client runs out of ports.

// pacer gives the times a worker's requests are due: one every interval
// from first.
type pacer struct {
	first    time.Time
	interval time.Duration
	k        int
}

// newPacer returns the pacer of rate requests a second whose first request
// is due phase after start; a worker takes a random phase in [0, interval)
// so that the workers' requests interleave.
func newPacer(start time.Time, rate float64, phase time.Duration) *pacer {
	return &pacer{first: start.Add(phase), interval: interval(rate)}
}

// interval is the time between two requests at rate a second.
func interval(rate float64) time.Duration {
	return time.Duration(float64(time.Second) / rate)
}

// next returns when the next request is due and how long to wait from now
// for it: 0 when it is due already (the worker was late to wake).
func (p *pacer) next(now time.Time) (due time.Time, wait time.Duration) {
	due = p.first.Add(time.Duration(p.k) * p.interval)
	p.k++
	return due, max(due.Sub(now), 0)
}

// requestLoop sends the worker's requests until ctx is done, each in its
// own goroutine.
func (w *worker) requestLoop(ctx context.Context) {
	defer w.run.wg.Done()
	r := w.run
	p := newPacer(r.start, r.cfg.Rate, w.randDuration(interval(r.cfg.Rate)))
	var inflight sync.WaitGroup
	for {
		due, wait := p.next(time.Now())
		if !w.sleep(ctx, wait) {
			break
		}
		inflight.Add(1)
		seed := w.rng.Uint64()
		go func() {
			defer inflight.Done()
			c := w.request(ctx, due, seed)
			r.finish(&c)
			w.mu.Lock()
			w.conns = append(w.conns, c)
			w.mu.Unlock()
		}()
	}
	// The idle connections are closed once no request can add one.
	inflight.Wait()
	w.closeIdle()
}

// request runs one request due at due: a connection (kept or new) from a
// random source to a random target, the GET, and the whole response.
func (w *worker) request(ctx context.Context, due time.Time, seed uint64) Conn {
	r := w.run
	c := Conn{ID: int(r.nextID.Add(1)), Start: time.Now()}
	r.begin(c.Start)
	// Each request has its own random choices: requests run concurrently.
	pick := rand.New(rand.NewPCG(seed, 0))
	conn, req, c, err := w.requestConn(ctx, c, pick)
	switch {
	case err != nil:
		c = w.end(ctx, c, err)
	default:
		c = w.exchangeShort(ctx, c, conn, req)
		if c.Outcome == OutcomeOK && !c.Stopped && r.cfg.KeepAlive && conn.reusable {
			w.putIdle(conn)
		} else {
			_ = conn.Close()
		}
	}
	c.Latency = c.End.Sub(due)
	return c
}

// keptConn is a connection of a request load, with what its reuse needs.
type keptConn struct {
	net.Conn
	br *bufio.Reader
	// target is where the connection goes, and req its request.
	target netip.AddrPort
	name   string
	req    []byte
	// reusable is false once the server asked to close.
	reusable bool
	reused   bool
}

// requestConn returns the connection of a request: a kept one (KeepAlive)
// or a new one to a random target, recording target and source in c.
func (w *worker) requestConn(ctx context.Context, c Conn, pick *rand.Rand) (*keptConn, []byte, Conn, error) {
	r := w.run
	if kc := w.takeIdle(); kc != nil {
		c.Target, c.Name = kc.target, kc.name
		kc.reused = true
		return kc, kc.req, c, nil
	}
	i := pick.IntN(len(r.targets) + len(r.names))
	if i < len(r.targets) {
		t := &r.targets[i]
		conn, err := w.dialPick(ctx, &c, t.addr, pick)
		if err != nil {
			return nil, nil, c, fmt.Errorf("connect: %w", err)
		}
		return w.keep(conn, &c, t.request), t.request, c, nil
	}
	n := &r.names[i-len(r.targets)]
	c.Name = n.name
	addrs, err := r.cfg.Resolver.Lookup(ctx, n.name)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, c, ctx.Err()
		}
		return nil, nil, c, dnsError{err}
	}
	var conn net.Conn
	for _, a := range order(addrs, len(r.dialers4) > 0, len(r.dialers6) > 0, pick.IntN(2) == 0) {
		if conn, err = w.dialPick(ctx, &c, netip.AddrPortFrom(a, n.port), pick); err == nil || ctx.Err() != nil {
			break
		}
		c.Fallbacks++
	}
	if conn == nil {
		if err == nil {
			err = fmt.Errorf("%s has no address of a family with a source address", n.name)
		}
		return nil, nil, c, fmt.Errorf("connect: %w", err)
	}
	return w.keep(conn, &c, n.request), n.request, c, nil
}

// dnsError is a failed lookup of a service name, which ends a request as
// OutcomeDNS.
type dnsError struct{ err error }

func (e dnsError) Error() string { return e.err.Error() }
func (e dnsError) Unwrap() error { return e.err }

// keep wraps a new connection for the request load.
func (w *worker) keep(conn net.Conn, c *Conn, req []byte) *keptConn {
	return &keptConn{Conn: conn, br: bufio.NewReaderSize(conn, headerBufSize), target: c.Target, name: c.Name,
		req: req, reusable: true}
}

// dialPick is dial with the request's own random choices.
func (w *worker) dialPick(ctx context.Context, c *Conn, addr netip.AddrPort, pick *rand.Rand) (net.Conn, error) {
	r := w.run
	network, dialers := "tcp4", r.dialers4
	if !addr.Addr().Unmap().Is4() {
		network, dialers = "tcp6", r.dialers6
	}
	return r.dialWith(ctx, c, &dialers[pick.IntN(len(dialers))], network, addr)
}

// exchangeShort sends req on conn and reads the whole response, bounded by
// ReadTimeout, completing c.
func (w *worker) exchangeShort(ctx context.Context, c Conn, conn *keptConn, req []byte) Conn {
	c.Reused = conn.reused
	sent, stop, err := w.send(ctx, &c, conn, req)
	defer stop()
	if err != nil {
		return w.end(ctx, c, err)
	}
	resp, err := http.ReadResponse(conn.br, nil)
	if err != nil {
		return w.end(ctx, c, fmt.Errorf("read response header: %w", err))
	}
	c.LongestStall = time.Since(sent)
	c.answered(resp)
	n, err := io.Copy(io.Discard, resp.Body)
	c.Bytes = n
	if err != nil {
		return w.end(ctx, c, fmt.Errorf("read body: %w", err))
	}
	conn.reusable = !resp.Close
	if c.badStatus(time.Now()) {
		return c
	}
	return w.end(ctx, c, nil)
}

// takeIdle returns an idle kept connection of the worker, or nil.
func (w *worker) takeIdle() *keptConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.idle); n > 0 {
		kc := w.idle[n-1]
		w.idle = w.idle[:n-1]
		return kc
	}
	return nil
}

// putIdle keeps conn for a later request.
func (w *worker) putIdle(conn *keptConn) {
	w.mu.Lock()
	w.idle = append(w.idle, conn)
	w.mu.Unlock()
}

// closeIdle closes the worker's idle connections at the end of the run.
func (w *worker) closeIdle() {
	w.mu.Lock()
	idle := w.idle
	w.idle = nil
	w.mu.Unlock()
	for _, kc := range idle {
		_ = kc.Close()
	}
}
