package haproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
)

// testBackend is an HTTP server behind a PROXY protocol v1 listener: "/"
// answers its name, "/healthcheck" 200, "/slow" waits for release.
type testBackend struct {
	name     string
	addrPort netip.AddrPort
	agent    *agentStub
	slowIn   chan struct{} // receives when a /slow request arrives
	release  chan struct{} // closed to let /slow requests finish
}

type sourceKey struct{}

func newTestBackend(t *testing.T, name, addr string, agentPort int) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("listen backend %s: %v", name, err)
	}
	b := &testBackend{
		name:     name,
		addrPort: ln.Addr().(*net.TCPAddr).AddrPort(),
		agent:    newAgentStub(t, net.JoinHostPort(addr, strconv.Itoa(agentPort)), "up"),
		slowIn:   make(chan struct{}, 1),
		release:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthcheck", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case b.slowIn <- struct{}{}:
		default:
		}
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintln(w, name, "slow")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proxy-Source", fmt.Sprint(r.Context().Value(sourceKey{})))
		fmt.Fprintln(w, name)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*proxyConn); ok {
				return context.WithValue(ctx, sourceKey{}, pc.source)
			}
			return ctx
		},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(proxyListener{ln})
	}()
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
		srv.Close()
		wg.Wait()
	})
	return b
}

// serverStates returns the runtime state of backend as a map by name.
func serverStates(r *Runtime, backend string) (map[string]ServerState, error) {
	ss, err := r.Servers(backend)
	if err != nil {
		return nil, err
	}
	m := map[string]ServerState{}
	for _, s := range ss {
		m[s.Name] = s
	}
	return m, nil
}

// TestProcessLoopback runs a real HAProxy on loopback addresses with two
// backends and their agents, and drives it through health, agent, reload
// and stop.
func TestProcessLoopback(t *testing.T) {
	requireHAProxy(t)
	for _, a := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		ln, err := net.Listen("tcp", a+":0")
		if err != nil {
			requireE2E(t, fmt.Sprintf("needs loopback address %s: %v", a, err))
		}
		ln.Close()
	}
	log := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	agentPort := freePort(t, "127.0.0.4", "127.0.0.5")
	backends := []*testBackend{
		newTestBackend(t, "s1", "127.0.0.4", agentPort),
		newTestBackend(t, "s2", "127.0.0.5", agentPort),
	}
	enabler := newAgentStub(t, "127.0.0.1:0", "up")

	cfg := DefaultConfig()
	cfg.Node = "lb7-test"
	cfg.Self = netip.MustParseAddr("127.0.0.3")
	cfg.HealthPort = freePort(t, "127.0.0.3")
	vip := VIP{Address: netip.MustParseAddr("127.0.0.2"), Port: freePort(t, "127.0.0.2")}
	cfg.VIPs = []VIP{vip}
	for _, b := range backends {
		cfg.Servers = append(cfg.Servers, Server{Name: b.name, Address: b.addrPort.Addr(), Port: int(b.addrPort.Port())})
	}
	cfg.CheckInterval, cfg.AgentInterval = 100*time.Millisecond, 100*time.Millisecond
	cfg.Rise, cfg.Fall = 1, 1
	cfg.AgentPort = agentPort
	cfg.SendProxy = true
	cfg.EnablerAgent = enabler.addrPort()
	cfg.Dir = t.TempDir()

	data, err := Generate(cfg)
	if err != nil {
		t.Fatalf("Generate() error: %v", err)
	}
	if err := os.WriteFile(cfg.ConfigFile(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Start(ctx, cfg.ConfigFile(), log, nil)
	if err != nil {
		t.Fatalf("Start() error: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	rt, err := NewRuntime(cfg.StatsSocket())
	if err != nil {
		t.Fatalf("NewRuntime() error: %v", err)
	}

	healthURL := fmt.Sprintf("http://%s%s", cfg.healthAddrPort(), HealthURI)
	vipURL := fmt.Sprintf("http://%s", netip.AddrPortFrom(vip.Address, uint16(vip.Port)))
	healthIs := func(want int) func() error {
		return func() error {
			code, _, _, err := httpGet(ctx, healthURL)
			if err != nil {
				return err
			}
			if code != want {
				return fmt.Errorf("status %d, want %d: %w", code, want, errNotYet)
			}
			return nil
		}
	}
	// answers returns the set of backends that answered n requests on
	// the VIP.
	answers := func(t *testing.T, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			code, hdr, body, err := httpGet(ctx, vipURL+"/")
			if err != nil {
				t.Fatalf("GET %s: %v", vipURL, err)
			}
			node := hdr.Get(NodeHeader)
			if code != http.StatusOK || node != cfg.Node {
				t.Fatalf("GET %s: status %d, %s %q, want 200 and %q", vipURL, code, NodeHeader, node, cfg.Node)
			}
			got[body]++
		}
		return got
	}
	const deadline = 10 * time.Second

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"healthcheck answers 200", func(t *testing.T) {
			testenv.Eventually(t, deadline, "healthcheck 200", healthIs(http.StatusOK))
		}},
		{"both backends answer on the VIP", func(t *testing.T) {
			diff(t, "answers", answers(t, 4), map[string]int{"s1": 2, "s2": 2})
		}},
		{"backends see the client through PROXY", func(t *testing.T) {
			_, hdr, _, err := httpGet(ctx, vipURL+"/")
			if err != nil {
				t.Fatal(err)
			}
			if got := hdr.Get("X-Proxy-Source"); got != "127.0.0.1" {
				t.Errorf("PROXY source = %q, want 127.0.0.1", got)
			}
		}},
		{"runtime shows every server up", func(t *testing.T) {
			testenv.Eventually(t, deadline, "servers up with agents", func() error {
				got, err := serverStates(rt, BackendServers)
				if err != nil {
					return err
				}
				for _, b := range backends {
					s := got[b.name]
					if s.Operational != "UP" || s.Admin != "READY" || s.Status != "UP" ||
						s.Address != b.addrPort.Addr() || s.Port != int(b.addrPort.Port()) ||
						s.Weight != 1 || s.CheckStatus != "L7OK" || s.AgentStatus != "L7OK" {
						return fmt.Errorf("%s: %+v: %w", b.name, s, errNotYet)
					}
				}
				return nil
			})
		}},
		{"runtime rejects an unknown backend", func(t *testing.T) {
			if got, err := rt.Servers("nosuch"); err == nil {
				t.Errorf("Servers(nosuch) = %+v, want an error", got)
			}
		}},
		{"enabler down fails the healthcheck", func(t *testing.T) {
			enabler.set("down")
			testenv.Eventually(t, deadline, "healthcheck 503", healthIs(http.StatusServiceUnavailable))
			got, err := serverStates(rt, BackendEnabler)
			if err != nil {
				t.Fatal(err)
			}
			if s := got[EnablerServer]; s.Operational != "DOWN" || s.Status != "DOWN (agent)" || s.AgentStatus != "L7STS" {
				t.Errorf("enabler state = %+v, want operational DOWN, status DOWN (agent), agent L7STS", s)
			}
			// The VIP still serves: only the LB4s' view changes.
			if got := answers(t, 2); len(got) == 0 {
				t.Errorf("no answer on the VIP while disabled")
			}
		}},
		{"enabler up restores the healthcheck", func(t *testing.T) {
			enabler.set("up")
			testenv.Eventually(t, deadline, "healthcheck 200", healthIs(http.StatusOK))
		}},
		{"agent drain drains a server", func(t *testing.T) {
			backends[0].agent.set("drain")
			testenv.Eventually(t, deadline, "s1 drained", func() error {
				got, err := serverStates(rt, BackendServers)
				if err != nil {
					return err
				}
				if s := got["s1"]; s.Admin != "DRAIN" || s.Status != "DRAIN (agent)" || s.Operational != "UP" {
					return fmt.Errorf("s1: %+v: %w", s, errNotYet)
				}
				return nil
			})
			diff(t, "answers while s1 drains", answers(t, 4), map[string]int{"s2": 4})
		}},
		{"agent ready restores the server", func(t *testing.T) {
			backends[0].agent.set("ready")
			testenv.Eventually(t, deadline, "s1 ready", func() error {
				got, err := serverStates(rt, BackendServers)
				if err != nil {
					return err
				}
				if s := got["s1"]; s.Admin != "READY" || s.Status != "UP" {
					return fmt.Errorf("s1: %+v: %w", s, errNotYet)
				}
				return nil
			})
		}},
		{"all servers down fails the healthcheck", func(t *testing.T) {
			for _, b := range backends {
				b.agent.set("down")
			}
			testenv.Eventually(t, deadline, "healthcheck 503", healthIs(http.StatusServiceUnavailable))
			for _, b := range backends {
				b.agent.set("up")
			}
			testenv.Eventually(t, deadline, "healthcheck 200", healthIs(http.StatusOK))
		}},
		{"reload keeps an in-flight request", func(t *testing.T) {
			type result struct {
				code int
				body string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				code, _, body, err := httpGet(ctx, vipURL+"/slow")
				done <- result{code, body, err}
			}()
			var slow *testBackend
			select {
			case <-backends[0].slowIn:
				slow = backends[0]
			case <-backends[1].slowIn:
				slow = backends[1]
			case <-ctx.Done():
				t.Fatal("slow request never reached a backend")
			}
			before, err := rt.PID()
			if err != nil {
				t.Fatalf("PID() before reload: %v", err)
			}
			if err := p.Reload(); err != nil {
				t.Fatalf("Reload() error: %v", err)
			}
			after, err := rt.PID()
			if err != nil || after == before {
				t.Errorf("worker after reload = %d, %v, want a new worker (was %d)", after, err, before)
			}
			close(slow.release)
			r := <-done
			if r.err != nil || r.code != http.StatusOK || r.body != slow.name+" slow" {
				t.Errorf("slow request across reload = %d %q %v, want 200 %q", r.code, r.body, r.err, slow.name+" slow")
			}
			testenv.Eventually(t, deadline, "healthcheck 200 after reload", healthIs(http.StatusOK))

		}},
		{"reload of a broken configuration fails and keeps serving", func(t *testing.T) {
			broken := append(append([]byte{}, data...), "\nbackend broken\n  balance nosuchalgo\n"...)
			if err := os.WriteFile(cfg.ConfigFile(), broken, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(cfg.ConfigFile(), data, 0o600) })
			if err := p.Reload(); !errors.Is(err, ErrCheck) {
				t.Errorf("Reload() error = %v, want ErrCheck", err)
			}
			testenv.Eventually(t, deadline, "healthcheck 200", healthIs(http.StatusOK))
		}},
		{"stop leaves no process", func(t *testing.T) {
			pid := p.PID()
			if err := p.Stop(); err != nil {
				t.Fatalf("Stop() error: %v", err)
			}
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d after Stop: kill 0 = %v, want ESRCH", pid, err)
			}
			if err := p.Stop(); err != nil {
				t.Errorf("second Stop() error: %v", err)
			}
			if pid, err := rt.PID(); err == nil {
				t.Errorf("stats socket still answers after Stop, worker %d", pid)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.FailNow()
		}
	}
}

// TestStartFailsWhenHAProxyExits checks that Start reports an HAProxy that
// cannot bind its VIP, and leaves no process behind.
func TestStartFailsWhenHAProxyExits(t *testing.T) {
	requireHAProxy(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		requireE2E(t, fmt.Sprintf("needs loopback: %v", err))
	}
	defer taken.Close()
	cfg := DefaultConfig()
	cfg.Node = "lb7-test"
	cfg.Self = netip.MustParseAddr("127.0.0.1")
	cfg.HealthPort = freePort(t, "127.0.0.1")
	cfg.VIPs = []VIP{{Address: netip.MustParseAddr("127.0.0.1"), Port: taken.Addr().(*net.TCPAddr).Port}}
	cfg.Servers = []Server{{Name: "s1", Address: netip.MustParseAddr("127.0.0.1"), Port: 9}}
	cfg.Dir = t.TempDir()
	data, err := Generate(cfg)
	if err != nil {
		t.Fatalf("Generate() error: %v", err)
	}
	if err := os.WriteFile(cfg.ConfigFile(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), cfg.ConfigFile(), testLogger(t), nil)
	if err == nil {
		_ = p.Stop()
		t.Fatal("Start() succeeded with its VIP taken, want an error")
	}
	if !errors.Is(err, ErrExited) {
		t.Errorf("Start() error = %v, want ErrExited", err)
	}
}
