package node

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lab-lb/lab/internal/bfd"
	"github.com/lab-lb/lab/internal/control"
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

func testRouter(t *testing.T) (*router, *fakeFIB) {
	t.Helper()
	fib := &fakeFIB{routes: map[netip.Prefix][]netip.Addr{}}
	a := &agent{log: slog.New(slog.DiscardHandler), node: &topology.Node{Name: "r1", Role: topology.RoleRouter}}
	return &router{
		a: a, fib: fib,
		learned: map[netip.Prefix][]netip.Addr{}, failed: map[netip.Addr]bool{}, routes: map[netip.Prefix][]netip.Addr{},
	}, fib
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
	r, fib := testRouter(t)
	onBFD := r.a.bfdChanged(r.onBFD)
	want := func(step string, routes map[netip.Prefix][]netip.Addr) {
		t.Helper()
		for p, nhs := range routes {
			if !slices.Equal(fib.routes[p], nhs) {
				t.Errorf("%s: %s via %v, want %v", step, p, fib.routes[p], nhs)
			}
		}
		for p := range fib.routes {
			if _, ok := routes[p]; !ok {
				t.Errorf("%s: %s via %v, want no route", step, p, fib.routes[p])
			}
		}
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
	want("lb4-2 bfd down", map[netip.Prefix][]netip.Addr{vip1: {lb41}, vip6: {lb42v6}})
	if got := fib.sets - sets; got != 2 {
		t.Errorf("bfd down: %d FIB changes, want 2 (the routes through lb4-2)", got)
	}

	// BGP still has lb4-2 (its hold timer runs): it stays out.
	r.onBest(vip1, []netip.Addr{lb42, lb41})
	want("bgp update while bfd down", map[netip.Prefix][]netip.Addr{vip1: {lb41}, vip6: {lb42v6}})
	// BGP drops it: nothing changes in the FIB.
	sets = fib.sets
	r.onBest(vip1, []netip.Addr{lb41})
	if fib.sets != sets {
		t.Errorf("an unchanged route was set again")
	}

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
