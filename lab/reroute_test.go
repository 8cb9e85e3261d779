package lab

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/control"
)

func TestRerouted(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var (
		lb41, lb42, lb42v6 = netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4"), netip.MustParseAddr("2001:db8::4")
		vip, vip6          = netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("2001:db8:100::1/128")
	)
	route := func(ms int, router string, p netip.Prefix, nhs ...netip.Addr) control.Event {
		return control.Event{Time: at(ms), Node: router, Kind: control.EventRoute, Route: &control.Route{Prefix: p, NextHops: nhs}}
	}
	inject := func(ms int, node string) control.Event {
		return control.Event{Time: at(ms), Node: node, Kind: control.EventInject}
	}
	before := []control.Event{
		route(0, "r1", vip, lb41, lb42),
		route(0, "r2", vip, lb41, lb42),
		route(0, "r1", vip6, lb42v6),
	}
	lb42Addrs := []netip.Addr{lb42, lb42v6}
	cases := []struct {
		name   string
		events []control.Event
		since  time.Time
		want   time.Duration
		ok     bool
	}{
		{"every route", append(before[:3:3], inject(1000, "lb4-2"), route(1400, "r1", vip, lb41), route(1500, "r1", vip6), route(1650, "r2", vip, lb41)),
			at(900), 650 * time.Millisecond, true},
		{"one router keeps it", append(before[:3:3], inject(1000, "lb4-2"), route(1400, "r1", vip, lb41), route(1500, "r1", vip6)),
			at(900), 0, false},
		{"an earlier injection is not this one", append(before[:3:3], inject(500, "lb4-2"), inject(1000, "lb4-2"),
			route(1400, "r1", vip, lb41), route(1500, "r1", vip6), route(1650, "r2", vip, lb41)),
			at(900), 650 * time.Millisecond, true},
		{"another node's injection", append(before[:3:3], inject(1000, "lb4-1"), route(1400, "r1", vip, lb42)),
			at(900), 0, false},
		{"no route through it", append(before[:3:3], route(800, "r1", vip, lb41), route(800, "r2", vip, lb41), route(800, "r1", vip6), inject(1000, "lb4-2")),
			at(900), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := rerouted(tc.events, "lb4-2", lb42Addrs, tc.since)
			if d != tc.want || ok != tc.ok {
				t.Errorf("got %s %v, want %s %v", d, ok, tc.want, tc.ok)
			}
		})
	}
}
