package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// diff fails the test with a "-got +want" diff when got and want differ.
func diff(t *testing.T, what string, got, want any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(got, want, opts...); d != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", what, d)
	}
}

// addrs makes go-cmp compare netip values with ==.
var addrs = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

// testLogger logs to the test output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// serverAddr is the loopback address the tests' servers listen on; any
// 127.0.0.0/8 address is local on Linux without configuration.
var serverAddr = netip.MustParseAddr("127.0.0.2")

// sources returns the loopback addresses 127.0.0.first to 127.0.0.last.
func sources(first, last byte) []netip.Addr {
	var s []netip.Addr
	for i := first; i <= last; i++ {
		s = append(s, netip.AddrFrom4([4]byte{127, 0, 0, i}))
	}
	return s
}

// serve runs h on a new listener on serverAddr until the test ends and
// returns its address.
func serve(t testing.TB, h http.Handler) netip.AddrPort {
	t.Helper()
	return serveWith(t, &http.Server{Handler: h})
}

// serveWith runs srv on a new listener on serverAddr until the test ends
// and returns its address.
func serveWith(t testing.TB, srv *http.Server) netip.AddrPort {
	t.Helper()
	srv.ReadHeaderTimeout = 5 * time.Second
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverAddr, 0).String())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String())
}

// closedPort returns an address on serverAddr where nothing listens.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverAddr, 0).String())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	if err := ln.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// startRun starts a run of cfg and stops it when the test ends.
func startRun(t *testing.T, cfg Config) *Run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Start(ctx, cfg, testLogger(t))
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		r.Stop()
		cancel()
	})
	return r
}

// waitFinished waits until n connections of r have finished.
func waitFinished(t *testing.T, r *Run, n int, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, "connections finished", func() error {
		if p := r.Snapshot(); p.OK+p.Broken < n {
			return fmt.Errorf("%d finished, want %d", p.OK+p.Broken, n)
		}
		return nil
	})
}
