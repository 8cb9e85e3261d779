package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
)

// TestRiseFall drives a target through healthy and unhealthy with a server
// whose answer the test switches, and checks each change is reported once
// and only after Rise/Fall results.
func TestRiseFall(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()

	var mu sync.Mutex
	var changes []bool
	c := New(Config{Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 3, Fall: 2}, slog.New(slog.DiscardHandler), func(s State) {
		mu.Lock()
		changes = append(changes, s.Healthy)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, []Target{{Name: "lb7-1", Addr: addrOf(t, srv), Path: "/healthcheck"}}); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(want []bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			got := append([]bool(nil), changes...)
			mu.Unlock()
			if len(got) == len(want) {
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("changes %v, want %v", got, want)
					}
				}
				return
			}
			if len(got) > len(want) || time.Now().After(deadline) {
				t.Fatalf("changes %v, want %v", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor([]bool{true})
	status.Store(http.StatusServiceUnavailable)
	waitFor([]bool{true, false})
	if st := c.States(); len(st) != 1 || st[0].Healthy || st[0].LastError != "status 503" {
		t.Errorf("states %+v, want lb7-1 unhealthy with status 503", st)
	}
	status.Store(http.StatusOK)
	waitFor([]bool{true, false, true})
}

// TestUnreachable checks that a target nobody answers never turns
// healthy, and is reported once, as known unhealthy, after Fall failures.
func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := addrOf(t, srv)
	srv.Close()
	var mu sync.Mutex
	var changes []State
	c := New(Config{Interval: 5 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 2}, slog.New(slog.DiscardHandler), func(s State) {
		mu.Lock()
		changes = append(changes, s)
		mu.Unlock()
	})
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if len(changes) != 1 || changes[0].Healthy || !changes[0].Known {
			t.Errorf("changes %+v, want one: known unhealthy", changes)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c.Run(ctx, []Target{{Name: "gone", Addr: addr, Path: "/healthcheck"}})
	if st := c.States(); st[0].Healthy || st[0].LastError == "" {
		t.Errorf("state %+v, want unhealthy with an error", st[0])
	}
}

func addrOf(t *testing.T, srv *httptest.Server) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// TestUpdate adds a target to a running checker and removes another: the
// new one turns healthy, the removed one leaves States.
func TestUpdate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	var mu sync.Mutex
	healthy := map[string]bool{}
	c := New(Config{Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}, slog.New(slog.DiscardHandler), func(s State) {
		mu.Lock()
		healthy[s.Name] = s.Healthy
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a := Target{Name: "lb7-1", Addr: addrOf(t, srv), Path: "/"}
	go func() { c.Run(ctx, []Target{a}); close(done) }()
	defer func() { cancel(); <-done }()
	waitHealthy := func(name string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, name+" healthy", func() error {
			mu.Lock()
			defer mu.Unlock()
			if !healthy[name] {
				return errors.New("not healthy yet")
			}
			return nil
		})
	}
	waitHealthy("lb7-1")
	b := Target{Name: "lb7-2", Addr: addrOf(t, srv), Path: "/"}
	c.Update([]Target{b})
	waitHealthy("lb7-2")
	st := c.States()
	if len(st) != 1 || st[0].Name != "lb7-2" {
		t.Errorf("states %+v, want lb7-2 only", st)
	}
}

// TestKeptConnection checks that the checks of a target share one
// connection while the target keeps it open, that a connection the target
// closed between two checks fails no check (the check tries once more on
// a new one), and that a target answering "Connection: close" is checked
// on a new connection each time.
func TestKeptConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		close     bool // the server asks to close after each answer
		dropEvery int  // the server drops its idle connections every N checks
		wantConns func(checks int) (lo, hi int)
	}{
		{"kept", false, 0, func(int) (int, int) { return 1, 1 }},
		{"dropped by the target", false, 3, func(n int) (int, int) { return n / 3, n/3 + 2 }},
		{"connection close", true, 0, func(n int) (int, int) { return n, n + 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns, checks atomic.Int32
			var srv *httptest.Server
			srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.close {
					w.Header().Set("Connection", "close")
				}
				w.Write([]byte("<html>200 OK</html>\n"))
				n := checks.Add(1)
				if tc.dropEvery > 0 && int(n)%tc.dropEvery == 0 {
					go srv.CloseClientConnections()
				}
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			var failed atomic.Int32
			c := New(Config{Interval: 5 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}, slog.New(slog.DiscardHandler), func(s State) {
				if !s.Healthy {
					failed.Add(1)
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { c.Run(ctx, []Target{{Name: "lb7-1", Addr: addrOf(t, srv), Path: "/healthcheck"}}); close(done) }()
			testenv.Eventually(t, 10*time.Second, "30 checks", func() error {
				if n := checks.Load(); n < 30 {
					return fmt.Errorf("%d checks", n)
				}
				return nil
			})
			cancel()
			<-done
			n := int(checks.Load())
			lo, hi := tc.wantConns(n)
			if got := int(conns.Load()); got < lo || got > hi {
				t.Errorf("%d checks used %d connections, want %d to %d", n, got, lo, hi)
			}
			if f := failed.Load(); f != 0 {
				t.Errorf("%d checks failed, want none: a dropped connection is not the target failing", f)
			}
			for _, s := range c.States() {
				if s.LastError != "" {
					t.Errorf("last error %q", s.LastError)
				}
			}
		})
	}
}

// TestKeptConnectionHangs checks that a target that stops answering on a
// kept connection (a frozen LB7: the connection stays, nothing comes back)
// fails its checks after the timeout, as a new connection would.
func TestKeptConnectionHangs(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if hang.Load() {
			<-release
		}
	}))
	defer srv.Close()
	defer close(release)
	var healthy atomic.Int32 // 1 healthy, -1 unhealthy
	c := New(Config{Interval: 5 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 1, Fall: 2}, slog.New(slog.DiscardHandler), func(s State) {
		if s.Healthy {
			healthy.Store(1)
		} else {
			healthy.Store(-1)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, []Target{{Name: "lb7-1", Addr: addrOf(t, srv), Path: "/healthcheck"}}); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 5*time.Second, "healthy", func() error {
		if healthy.Load() != 1 {
			return errors.New("not healthy yet")
		}
		return nil
	})
	hang.Store(true)
	testenv.Eventually(t, 5*time.Second, "unhealthy once the target hangs", func() error {
		if healthy.Load() != -1 {
			return errors.New("still healthy")
		}
		return nil
	})
}
