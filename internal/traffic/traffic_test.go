package traffic

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"

	"github.com/lab-lb/lab/internal/backend"
)

// seen records a server's TCP connections and the requests on each. The
// kernel may give a later connection the source port of one that ended, so
// connections are told apart by the server's net.Conn, not by address.
type seen struct {
	mu       sync.Mutex
	requests map[net.Conn]int // requests on each accepted connection
	peers    map[string]int   // accepted connections from each client address
}

type connKey struct{}

// server returns an HTTP server that runs h and records into s.
func (s *seen) server(h http.Handler) *http.Server {
	s.requests = map[net.Conn]int{}
	s.peers = map[string]int{}
	return &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			s.mu.Lock()
			s.peers[c.RemoteAddr().String()]++
			s.mu.Unlock()
			return context.WithValue(ctx, connKey{}, c)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(connKey{}).(net.Conn)
			s.mu.Lock()
			s.requests[c]++
			s.mu.Unlock()
			h.ServeHTTP(w, r)
		}),
	}
}

// TestRunOK loads a backend behind a fake LB7 header from eleven source
// addresses: every connection ends well, with its own TCP connection bound
// to one of the sources, and the headers recorded.
func TestRunOK(t *testing.T) {
	be := &backend.Server{Name: "S1"}
	s := &seen{}
	addr := serveWith(t, s.server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Lab-LB7", "L1")
		be.Handler().ServeHTTP(w, r)
	})))
	srcs := sources(10, 20)
	r := startRun(t, Config{
		Targets:  []netip.AddrPort{addr},
		Sources:  srcs,
		Workers:  8,
		Path:     "/256K",
		ReadSize: 8 << 10,
		Pause:    2 * time.Millisecond,
		Seed:     1,
	})
	waitFinished(t, r, 40, 20*time.Second)
	rep := r.Stop()

	if rep.Broken != 0 || rep.Interrupted != 0 {
		t.Errorf("%d broken, %d interrupted, want none: %v", rep.Broken, rep.Interrupted, rep.ByOutcome)
	}
	if rep.Total < 40 {
		t.Errorf("%d connections, want at least 40", rep.Total)
	}
	// The load itself kept the machine's CPU busy some of the time.
	if rep.CPUBusy <= 0 || rep.CPUBusy > 1 {
		t.Errorf("CPU busy %v during the load, want a share in (0, 1]", rep.CPUBusy)
	}
	srcSet := map[netip.Addr]bool{}
	for _, a := range srcs {
		srcSet[a] = true
	}
	usedSrc := map[netip.Addr]bool{}
	responded := 0
	respondedFrom := map[string]int{} // client connections with a response, by source
	for _, c := range rep.Conns {
		if c.Status == 0 {
			if !c.Stopped {
				t.Errorf("connection %d has no response but was not stopped: %+v", c.ID, c)
			}
			continue
		}
		responded++
		usedSrc[c.Source] = true
		if !srcSet[c.Source] || c.SourcePort == 0 {
			t.Errorf("connection %d from %s:%d, want one of the sources", c.ID, c.Source, c.SourcePort)
		}
		respondedFrom[netip.AddrPortFrom(c.Source, c.SourcePort).String()]++
		if c.Target != addr || c.Status != 200 || c.LB7 != "L1" || c.Server != "S1" {
			t.Errorf("connection %d: target %s status %d lb7 %q server %q, want %s 200 L1 S1",
				c.ID, c.Target, c.Status, c.LB7, c.Server, addr)
		}
		if c.Bytes > 256<<10 || (!c.Stopped && c.Bytes == 0) {
			t.Errorf("connection %d read %d bytes, want 1 to 256 KiB", c.ID, c.Bytes)
		}
		if !c.End.After(c.Start) {
			t.Errorf("connection %d ends at %s before its start %s", c.ID, c.End, c.Start)
		}
	}
	if len(usedSrc) < 5 {
		t.Errorf("%d sources used, want the requests spread over the 11 sources", len(usedSrc))
	}
	connected := 0
	for _, c := range rep.Conns {
		if c.SourcePort != 0 {
			connected++
		}
	}
	s.mu.Lock()
	for c, n := range s.requests {
		if n != 1 {
			t.Errorf("server saw %d requests on one connection from %s, want one request per connection", n, c.RemoteAddr())
		}
	}
	// Each connection that got a response reached the server from the
	// source and port the report gives. (A connection stopped while it
	// connected may reach the server with no port in the report.)
	for peer, want := range respondedFrom {
		if n := s.peers[peer]; n < want {
			t.Errorf("server accepted %d connections from %s, want at least the %d that got a response", n, peer, want)
		}
	}
	requests := len(s.requests)
	s.mu.Unlock()
	if requests < responded || requests > connected {
		t.Errorf("server saw %d connections, want between %d (responded) and %d (connected)",
			requests, responded, connected)
	}
	diff(t, "by lb7", rep.ByLB7, map[string]int{"L1": responded})
	diff(t, "by server", rep.ByServer, map[string]int{"S1": responded})
	for i, c := range rep.Conns {
		if c.ID != i+1 {
			t.Fatalf("connection %d has id %d, want ids in order from 1", i, c.ID)
		}
	}
	p := r.Snapshot()
	if p.Active != 0 || p.Started != rep.Total || p.OK != rep.OK {
		t.Errorf("snapshot after stop %+v, want 0 active, %d started, %d ok", p, rep.Total, rep.OK)
	}
	// One target: its series is the run's, less the connections started.
	diff(t, "targets of the series", slices.Collect(maps.Keys(p.ByTarget)), []string{addr.String()})
	total := sumSeconds(p.Seconds)
	total.Started = 0
	diff(t, "series of the target", sumSeconds(p.ByTarget[addr.String()]), total)
}

// sumSeconds adds up a series.
func sumSeconds(ss []Second) Second {
	var sum Second
	for _, s := range ss {
		sum.Started += s.Started
		sum.OK += s.OK
		sum.Broken += s.Broken
		sum.Interrupted += s.Interrupted
		sum.DNSFailed += s.DNSFailed
	}
	return sum
}

// writeHead writes a 200 response header announcing size bytes and
// flushes.
func writeHead(w http.ResponseWriter, size int) {
	w.Header().Set("Content-Length", strconv.Itoa(size))
	w.Header().Set("X-Lab-Server", "S9")
	w.WriteHeader(http.StatusOK)
}

// writeBody writes n bytes and flushes.
func writeBody(w http.ResponseWriter, n int) {
	_, _ = w.Write(make([]byte, n))
	w.(http.Flusher).Flush()
}

// TestOutcomes checks how failures are counted: each server misbehaves in
// its own way, and every connection that the run did not cut must end with
// the expected outcome.
func TestOutcomes(t *testing.T) {
	const part = 32 << 10
	tests := []struct {
		name string
		// handler is the server, nil for a port where nothing listens.
		handler     func(t *testing.T) http.Handler
		path        string
		outcome     Outcome
		interrupted bool
		err         string // part of Conn.Err
		bytes       int64  // -1: not checked
		server      string
	}{
		{
			name: "reset mid-body",
			handler: func(t *testing.T) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					conn, buf, err := w.(http.Hijacker).Hijack()
					if err != nil {
						t.Errorf("hijack: %v", err)
						return
					}
					fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Lab-Server: S9\r\n\r\n", 4*part)
					_, _ = buf.Write(make([]byte, part))
					_ = buf.Flush()
					// SO_LINGER 0 makes close send a reset.
					_ = conn.(*net.TCPConn).SetLinger(0)
					_ = conn.Close()
				})
			},
			outcome: OutcomeReset, err: "connection reset by peer", bytes: -1, server: "S9",
		},
		{
			name: "blackhole",
			handler: func(t *testing.T) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					writeHead(w, 4*part)
					writeBody(w, part)
					<-r.Context().Done()
				})
			},
			outcome: OutcomeTimeout, err: "i/o timeout", bytes: part, server: "S9",
		},
		{
			name: "pause then resume",
			handler: func(t *testing.T) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					writeHead(w, 2*part)
					writeBody(w, part)
					pause := time.NewTimer(250 * time.Millisecond)
					defer pause.Stop()
					select {
					case <-pause.C:
					case <-r.Context().Done():
						return
					}
					writeBody(w, part)
				})
			},
			outcome: OutcomeOK, interrupted: true, bytes: 2 * part, server: "S9",
		},
		{
			name: "truncated body",
			handler: func(t *testing.T) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					conn, buf, err := w.(http.Hijacker).Hijack()
					if err != nil {
						t.Errorf("hijack: %v", err)
						return
					}
					fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Lab-Server: S9\r\n\r\n", 2*part)
					_, _ = buf.Write(make([]byte, part))
					_ = buf.Flush()
					_ = conn.Close()
				})
			},
			outcome: OutcomeError, err: "unexpected EOF", bytes: part, server: "S9",
		},
		{
			name:    "bad status",
			handler: func(*testing.T) http.Handler { return (&backend.Server{Name: "S1"}).Handler() },
			path:    "/missing",
			outcome: OutcomeBadStatus, err: "status 404", bytes: 0, server: "S1",
		},
		{
			name:    "refused",
			outcome: OutcomeRefused, err: "connection refused", bytes: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr netip.AddrPort
			if tt.handler == nil {
				addr = closedPort(t)
			} else {
				addr = serve(t, tt.handler(t))
			}
			r := startRun(t, Config{
				Targets:        []netip.AddrPort{addr},
				Sources:        sources(10, 20),
				Workers:        2,
				Path:           tt.path,
				Pause:          -1,
				EarlyStop:      -1,
				ReadTimeout:    600 * time.Millisecond,
				StallThreshold: 100 * time.Millisecond,
				ConnectTimeout: time.Second,
			})
			waitFinished(t, r, 3, 20*time.Second)
			rep := r.Stop()
			checked := 0
			for _, c := range rep.Conns {
				if c.Stopped {
					continue
				}
				checked++
				if c.Outcome != tt.outcome || c.Interrupted != tt.interrupted || !strings.Contains(c.Err, tt.err) {
					t.Errorf("connection %d: outcome %s interrupted %t err %q, want %s %t %q",
						c.ID, c.Outcome, c.Interrupted, c.Err, tt.outcome, tt.interrupted, tt.err)
				}
				if tt.bytes >= 0 && c.Bytes != tt.bytes {
					t.Errorf("connection %d read %d bytes, want %d", c.ID, c.Bytes, tt.bytes)
				}
				if c.Server != tt.server {
					t.Errorf("connection %d: server %q, want %q", c.ID, c.Server, tt.server)
				}
				// The client starts waiting a little after the server
				// starts its pause.
				if tt.interrupted && c.LongestStall < 200*time.Millisecond {
					t.Errorf("connection %d: longest stall %s, want most of the server's 250ms pause",
						c.ID, c.LongestStall)
				}
			}
			if checked < 3 {
				t.Errorf("%d connections finished on their own, want at least 3", checked)
			}
			type counts struct{ Broken, Interrupted int }
			want := counts{Broken: checked}
			if !tt.outcome.Broken() {
				want.Broken = 0
			}
			if tt.interrupted {
				want.Interrupted = checked
			}
			got := counts{Broken: rep.Broken, Interrupted: rep.Interrupted}
			if got != want {
				t.Errorf("report: %d broken, %d interrupted, want %d, %d (by outcome %v)",
					got.Broken, got.Interrupted, want.Broken, want.Interrupted, rep.ByOutcome)
			}
		})
	}
}

// TestStopIsNotBreakage cuts connections blocked on a silent server, by
// Stop and by the end of the run's context: they count as ok and stopped,
// and the run ends well before the read timeout.
func TestStopIsNotBreakage(t *testing.T) {
	for _, how := range []string{"stop", "context"} {
		t.Run(how, func(t *testing.T) {
			addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeHead(w, 1<<20)
				writeBody(w, 1024)
				<-r.Context().Done()
			}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, err := Start(ctx, Config{
				Targets:     []netip.AddrPort{addr},
				Sources:     sources(10, 11),
				Workers:     4,
				Pause:       -1,
				EarlyStop:   -1,
				ReadTimeout: 10 * time.Second,
			}, testLogger(t))
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			t.Cleanup(func() { r.Stop() })
			testenv.Eventually(t, 10*time.Second, "4 connections reading", func() error {
				if p := r.Snapshot(); p.Active != 4 || p.Started != 4 {
					return fmt.Errorf("%+v", p)
				}
				return nil
			})
			began := time.Now()
			if how == "context" {
				cancel()
				testenv.Eventually(t, 5*time.Second, "connections cut", func() error {
					if p := r.Snapshot(); p.Active != 0 {
						return fmt.Errorf("%d active", p.Active)
					}
					return nil
				})
			}
			rep := r.Stop()
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("stopping took %s, want it to cut reads at once", took)
			}
			if rep.Total != 4 || rep.Stopped != 4 || rep.OK != 4 || rep.Broken != 0 {
				t.Errorf("report: %d connections, %d stopped, %d ok, %d broken; want 4 stopped ok",
					rep.Total, rep.Stopped, rep.OK, rep.Broken)
			}
			// Stop may come before a connection has read the 1024 bytes
			// the server sent (Active counts connected ones): what matters
			// is that none is an error, and none read more than was sent.
			for _, c := range rep.Conns {
				if c.Err != "" || c.Bytes > 1024 {
					t.Errorf("connection %d: err %q, %d bytes, want no error and at most 1024 bytes", c.ID, c.Err, c.Bytes)
				}
			}
			if again := r.Stop(); again != rep {
				t.Error("a second Stop returned another report")
			}
		})
	}
}

// fakeResolver answers names from a map; a name it lacks fails.
type fakeResolver map[string][]netip.Addr

var errNoSuchName = fmt.Errorf("no such name")

func (f fakeResolver) Lookup(_ context.Context, name string) ([]netip.Addr, error) {
	if a, ok := f[name]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("%s: %w", name, errNoSuchName)
}

// TestNames loads targets given by name: a name's first address refuses,
// so every connection falls back to the second one and ends well; a name
// that does not resolve counts as a DNS failure, not a broken connection.
func TestNames(t *testing.T) {
	addr := serve(t, (&backend.Server{Name: "S1"}).Handler())
	closed := netip.MustParseAddr("127.0.0.3") // nothing listens on addr's port there
	r := startRun(t, Config{
		Names:    []NameTarget{{Name: "svc.example.", Port: addr.Port()}, {Name: "gone.example.", Port: addr.Port()}},
		Resolver: fakeResolver{"svc.example.": {closed, addr.Addr()}},
		Sources:  sources(10, 12),
		Workers:  4,
		Path:     "/4K",
		Pause:    time.Millisecond,
		Seed:     1,
	})
	testenv.Eventually(t, 20*time.Second, "connections and failed lookups", func() error {
		if p := r.Snapshot(); p.OK < 20 || p.DNSFailed < 20 {
			return fmt.Errorf("%d ok, %d dns failed; want 20 of each", p.OK, p.DNSFailed)
		}
		return nil
	})
	rep := r.Stop()
	if rep.Broken != 0 {
		t.Errorf("%d broken, want none: %v", rep.Broken, rep.ByOutcome)
	}
	// Per target: the name's address for the connections, the name that
	// did not resolve for the failed lookups.
	p := r.Snapshot()
	if got := sumSeconds(p.ByTarget["gone.example."]).DNSFailed; got != p.DNSFailed {
		t.Errorf("%d failed lookups of gone.example. in its series, want all %d", got, p.DNSFailed)
	}
	if got := sumSeconds(p.ByTarget[addr.String()]).OK; got == 0 || got > p.OK {
		t.Errorf("%d ok connections to %s in its series, want 1 to %d", got, addr, p.OK)
	}
	for _, c := range rep.Conns {
		switch c.Name {
		case "svc.example.":
			if c.Outcome == OutcomeOK && !c.Stopped && (c.Target != addr || c.Fallbacks != 1) {
				t.Errorf("conn %d: target %s after %d fallbacks, want %s after 1", c.ID, c.Target, c.Fallbacks, addr)
			}
		case "gone.example.":
			if c.Outcome != OutcomeDNS || !strings.Contains(c.Err, "no such name") || c.Target.IsValid() {
				t.Errorf("conn %d to a name that does not resolve: outcome %s, err %q, target %s", c.ID, c.Outcome, c.Err, c.Target)
			}
		default:
			t.Errorf("conn %d: name %q", c.ID, c.Name)
		}
	}
	if rep.DNSFailed != rep.ByOutcome[OutcomeDNS] || rep.Fallbacks < rep.OK-rep.Stopped {
		t.Errorf("report: %d dns failed (by outcome %d), %d fallbacks for %d ok", rep.DNSFailed, rep.ByOutcome[OutcomeDNS], rep.Fallbacks, rep.OK)
	}
}

func TestNamesNeedAResolver(t *testing.T) {
	_, err := Start(context.Background(), Config{Names: []NameTarget{{Name: "svc.example.", Port: 80}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "no resolver") {
		t.Errorf("Start with names and no resolver: %v, want an error", err)
	}
}
