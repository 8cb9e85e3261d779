package haproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"

	"github.com/google/go-cmp/cmp"
)

// requireE2E skips the test with reason, or fails it when LAB_REQUIRE_E2E=1.
func requireE2E(t *testing.T, reason string) {
	t.Helper()
	testenv.SkipOrFail(t, "%s", reason)
}

// requireHAProxy skips the test when the haproxy program is missing.
func requireHAProxy(t *testing.T) {
	t.Helper()
	if _, err := Binary(); err != nil {
		requireE2E(t, fmt.Sprintf("needs the haproxy program: %v", err))
	}
}

// diff fails the test with a "-got +want" diff when got and want differ.
func diff(t *testing.T, what string, got, want any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(got, want, opts...); d != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", what, d)
	}
}

// testLogger logs to the test output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// agentStub is a fake HAProxy agent: it answers every connection with its
// current state line (e.g. "up", "drain") and closes it.
type agentStub struct {
	state atomic.Value // string
	ln    net.Listener
}

func newAgentStub(t *testing.T, addr string, initial string) *agentStub {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen agent %s: %v", addr, err)
	}
	a := &agentStub{ln: ln}
	a.state.Store(initial)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", a.state.Load().(string))
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return a
}

func (a *agentStub) set(state string) { a.state.Store(state) }

func (a *agentStub) addrPort() netip.AddrPort {
	return a.ln.Addr().(*net.TCPAddr).AddrPort()
}

// freePort returns a TCP port free on every address, found by listening
// on the first and trying the others.
func freePort(t *testing.T, addrs ...string) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			t.Fatalf("listen %s: %v", addrs[0], err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok := true
		var held []net.Listener
		for _, a := range addrs[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(a, fmt.Sprint(port)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		ln.Close()
		for _, l := range held {
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", addrs)
	return 0
}

// httpGet does one GET on a fresh connection and returns the status, the
// headers and the body.
func httpGet(ctx context.Context, url string) (int, http.Header, string, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return 0, nil, "", err
	}
	return resp.StatusCode, resp.Header, b.String(), nil
}

// proxyListener accepts connections that start with a PROXY protocol v1
// header, strips it and records the source address it announces.
type proxyListener struct {
	net.Listener
}

type proxyConn struct {
	net.Conn
	r      *bufio.Reader
	source string
}

func (c *proxyConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (l proxyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			c.Close()
			continue
		}
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		f := strings.Fields(line)
		// Health checks send "PROXY UNKNOWN".
		if err != nil || len(f) < 2 || f[0] != "PROXY" {
			// Not our protocol: drop it, as a real server would.
			c.Close()
			continue
		}
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			c.Close()
			continue
		}
		pc := &proxyConn{Conn: c, r: r}
		if len(f) >= 3 {
			pc.source = f[2]
		}
		return pc, nil
	}
}

var errNotYet = errors.New("not yet")
