package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/bfd"
	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/topology"
)

// fakeFIB records the routes a router installs.
type fakeFIB struct {
	routes map[netip.Prefix][]netip.Addr
	sets   int
}

func (f *fakeFIB) Set(p netip.Prefix, nhs []netip.Addr) error {
	f.sets++
	if len(nhs) == 0 {
		delete(f.routes, p)
	} else {
		f.routes[p] = slices.Clone(nhs)
	}
	return nil
}

// fakeProber answers for the addresses in alive.
type fakeProber struct {
	mu    sync.Mutex
	alive map[netip.Addr]bool
	asked map[netip.Addr]int // calls by address
}

func (p *fakeProber) Answers(_ context.Context, addr netip.Addr, _ time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked[addr]++
	return p.alive[addr]
}

func testRouter(t *testing.T) (*router, *fakeFIB, *fakeProber) {
	t.Helper()
	fib := &fakeFIB{routes: map[netip.Prefix][]netip.Addr{}}
	probe := &fakeProber{alive: map[netip.Addr]bool{}, asked: map[netip.Addr]int{}}
	a := &agent{log: slog.New(slog.DiscardHandler), node: &topology.Node{Name: "r1", Role: topology.RoleRouter}}
	return &router{
		a: a, fib: fib, probe: probe, ctx: t.Context(),
		learned: map[netip.Prefix][]netip.Addr{}, bfdDown: map[netip.Addr]uint64{}, failed: map[netip.Addr]bool{},
		routes: map[netip.Prefix][]netip.Addr{},
	}, fib, probe
}

// TestRouterBFD checks what the router's FIB holds as BGP and BFD change:
// a failed BFD session takes its LB4 out of every route at once, whatever
// BGP says, and its recovery puts it back; a session that never came up
// changes nothing.
func TestRouterBFD(t *testing.T) {
	var (
		lb41, lb42 = netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")
		lb42v6     = netip.MustParseAddr("2001:db8::4")
		vip1       = netip.MustParsePrefix("198.51.100.1/32")
		vip2       = netip.MustParsePrefix("198.51.100.2/32")
		vip6       = netip.MustParsePrefix("2001:db8:100::1/128")
	)
	r, fib, probe := testRouter(t)
	onBFD := r.a.bfdChanged(r.onBFD)
	// want waits until the FIB holds routes (the confirmation of a failed
	// session runs on a goroutine of its own).
	want := func(step string, routes map[netip.Prefix][]netip.Addr) {
		t.Helper()
		testenv.EventuallyEvery(t, 5*time.Second, time.Millisecond, step, func() error {
			r.mu.Lock()
			defer r.mu.Unlock()
			var diff []string
			for p, nhs := range routes {
				if !slices.Equal(fib.routes[p], nhs) {
					diff = append(diff, fmt.Sprintf("%s via %v, want %v", p, fib.routes[p], nhs))
				}
			}
			for p := range fib.routes {
				if _, ok := routes[p]; !ok {
					diff = append(diff, fmt.Sprintf("%s via %v, want no route", p, fib.routes[p]))
				}
			}
			if len(diff) > 0 {
				return errors.New(strings.Join(diff, "; "))
			}
			return nil
		})
	}
	session := func(peer netip.Addr, st bfd.State, downs int) bfd.Session {
		s := bfd.Session{Peer: peer, State: st, Downs: downs}
		if st != bfd.Up && downs > 0 {
			s.Diag = bfd.DiagDetectExpired
		}
		return s
	}

	// A session that never came up takes nothing out.
	onBFD(session(lb42, bfd.Down, 0))
	r.onBest(vip1, []netip.Addr{lb41, lb42})
	r.onBest(vip2, []netip.Addr{lb42})
	r.onBest(vip6, []netip.Addr{lb42v6})
	want("bgp", map[netip.Prefix][]netip.Addr{vip1: {lb41, lb42}, vip2: {lb42}, vip6: {lb42v6}})

	onBFD(session(lb42, bfd.Up, 0))
	sets := fib.sets
	onBFD(session(lb42, bfd.Down, 1))
	want("lb4-2 bfd down, silent", map[netip.Prefix][]netip.Addr{vip1: {lb41}, vip6: {lb42v6}})
	r.mu.Lock()
	if got := fib.sets - sets; got != 2 {
		t.Errorf("bfd down: %d FIB changes, want 2 (the routes through lb4-2)", got)
	}
	r.mu.Unlock()

	// BGP still has lb4-2 (its hold timer runs): it stays out.
	r.onBest(vip1, []netip.Addr{lb42, lb41})
	want("bgp update while bfd down", map[netip.Prefix][]netip.Addr{vip1: {lb41}, vip6: {lb42v6}})
	// BGP drops it: nothing changes in the FIB.
	r.mu.Lock()
	sets = fib.sets
	r.mu.Unlock()
	r.onBest(vip1, []netip.Addr{lb41})
	r.mu.Lock()
	if fib.sets != sets {
		t.Errorf("an unchanged route was set again")
	}
	r.mu.Unlock()

	// Up again: back where BGP has it.
	r.onBest(vip1, []netip.Addr{lb41, lb42})
	onBFD(session(lb42, bfd.Init, 1))
	want("bfd init", map[netip.Prefix][]netip.Addr{vip1: {lb41}, vip6: {lb42v6}})
	onBFD(session(lb42, bfd.Up, 1))
	want("bfd up", map[netip.Prefix][]netip.Addr{vip1: {lb41, lb42}, vip2: {lb42}, vip6: {lb42v6}})

	// The other family's session is its own.
	onBFD(session(lb42v6, bfd.Up, 0))
	onBFD(session(lb42v6, bfd.Down, 1))
	want("v6 bfd down", map[netip.Prefix][]netip.Addr{vip1: {lb41, lb42}, vip2: {lb42}})

	// A session that fails while the LB4's kernel answers pings (its
	// agent held up, not dead) keeps the LB4 in the routes.
	probe.mu.Lock()
	probe.alive[lb42] = true
	probe.mu.Unlock()
	onBFD(session(lb42, bfd.Down, 2))
	testenv.Eventually(t, 5*time.Second, "the router keeps lb4-2, which answers", func() error {
		r.a.mu.Lock()
		defer r.a.mu.Unlock()
		if !slices.ContainsFunc(r.a.events, func(e control.Event) bool {
			return e.Msg == "192.0.2.4 answers pings: kept in the routes while its session is down"
		}) {
			return errors.New("no event")
		}
		return nil
	})
	want("bfd down, lb4-2 answers", map[netip.Prefix][]netip.Addr{vip1: {lb41, lb42}, vip2: {lb42}})
	onBFD(session(lb42, bfd.Up, 2))

	// The echo function failing is the kernel's silence already: out at
	// once, without asking again.
	probe.mu.Lock()
	asked := probe.asked[lb42]
	probe.mu.Unlock()
	echoFailed := session(lb42, bfd.Down, 3)
	echoFailed.Diag = bfd.DiagEchoFailed
	onBFD(echoFailed)
	want("echo failed", map[netip.Prefix][]netip.Addr{vip1: {lb41}})
	probe.mu.Lock()
	if probe.asked[lb42] != asked {
		t.Errorf("lb4-2 pinged after its echo function failed")
	}
	probe.mu.Unlock()
	onBFD(session(lb42, bfd.Up, 3))
	want("bfd up after echo failed", map[netip.Prefix][]netip.Addr{vip1: {lb41, lb42}, vip2: {lb42}})

	// The event log says why, before the route changes.
	down := slices.IndexFunc(r.a.events, func(e control.Event) bool {
		return e.Kind == "bfd" && e.Msg == "session with 192.0.2.4 down: control detection time expired"
	})
	route := slices.IndexFunc(r.a.events, func(e control.Event) bool {
		return e.Kind == "route" && e.Msg == "198.51.100.1/32 via [192.0.2.3]"
	})
	if down < 0 || route < down {
		var log []string
		for _, e := range r.a.events {
			log = append(log, e.Kind+": "+e.Msg)
		}
		t.Errorf("events:\n%s\nwant the bfd down event, then the route without 192.0.2.4", strings.Join(log, "\n"))
	}
}

func TestUsableNextHops(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")
	learned := []netip.Addr{a, b}
	got := usableNextHops(learned, map[netip.Addr]bool{b: true})
	if !slices.Equal(got, []netip.Addr{a}) {
		t.Errorf("got %v, want [%s]", got, a)
	}
	if !slices.Equal(learned, []netip.Addr{a, b}) {
		t.Errorf("usableNextHops changed its argument: %v", learned)
	}
	if got := usableNextHops(learned, map[netip.Addr]bool{a: true, b: true}); len(got) != 0 {
		t.Errorf("every next hop failed: got %v, want none", got)
	}
}
