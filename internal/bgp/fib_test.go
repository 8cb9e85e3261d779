package bgp

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestFIB drives a FIB in a fresh network namespace and checks the whole
// routing table after every step. Gateways sit on a veth pair's subnet.
func TestFIB(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	h := nsHandle(t, ns)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fib0"}, PeerName: "fib1"}); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	addAddr(t, h, "fib0", netip.MustParsePrefix("10.78.0.1/24"))
	addAddr(t, h, "fib0", netip.MustParsePrefix("2001:db8:78::1/64"))
	addAddr(t, h, "fib1", netip.MustParsePrefix("10.78.1.1/24"))

	// Routes of other protocols that the FIB must leave alone.
	foreign := []*netlink.Route{
		{Dst: ipNet(netip.MustParsePrefix("203.0.113.0/24")), Gw: net.ParseIP("10.78.0.9"), Protocol: unix.RTPROT_STATIC},
		{Dst: ipNet(netip.MustParsePrefix("198.51.100.9/32")), Gw: net.ParseIP("10.78.0.9"), Protocol: unix.RTPROT_BOOT},
	}
	for _, r := range foreign {
		if err := h.RouteAdd(r); err != nil {
			t.Fatalf("add foreign route %s: %v", r.Dst, err)
		}
	}
	foreignState := []string{
		"198.51.100.9/32 proto 3 via 10.78.0.9",
		"203.0.113.0/24 proto 4 via 10.78.0.9",
	}

	fh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("open fib handle: %v", err)
	}
	f := newFIB(fh, testLogger(t))
	t.Cleanup(f.Close)

	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	for _, step := range []struct {
		name      string
		prefix    netip.Prefix
		nextHops  []netip.Addr
		wantErr   error // Matched with errors.Is when set.
		wantAnErr bool
		want      []string // Routes besides the foreign ones.
	}{
		{
			name: "single next hop", prefix: p("198.51.100.1/32"), nextHops: []netip.Addr{a("10.78.0.3")},
			want: []string{"198.51.100.1/32 proto 186 via 10.78.0.3"},
		},
		{
			name: "ecmp, sorted and deduplicated", prefix: p("198.51.100.1/32"),
			nextHops: []netip.Addr{a("10.78.0.4"), a("10.78.0.3"), a("10.78.0.4")},
			want:     []string{"198.51.100.1/32 proto 186 via 10.78.0.3,10.78.0.4"},
		},
		{
			name: "same ecmp again", prefix: p("198.51.100.1/32"),
			nextHops: []netip.Addr{a("10.78.0.3"), a("10.78.0.4")},
			want:     []string{"198.51.100.1/32 proto 186 via 10.78.0.3,10.78.0.4"},
		},
		{
			name: "ecmp shrinks to one", prefix: p("198.51.100.1/32"), nextHops: []netip.Addr{a("10.78.0.4")},
			want: []string{"198.51.100.1/32 proto 186 via 10.78.0.4"},
		},
		{
			name: "ipv6 ecmp", prefix: p("2001:db8:100::1/128"),
			nextHops: []netip.Addr{a("2001:db8:78::4"), a("2001:db8:78::3")},
			want: []string{
				"198.51.100.1/32 proto 186 via 10.78.0.4",
				"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::4",
			},
		},
		{
			name: "ipv6 ecmp shrinks to one", prefix: p("2001:db8:100::1/128"), nextHops: []netip.Addr{a("2001:db8:78::3")},
			want: []string{
				"198.51.100.1/32 proto 186 via 10.78.0.4",
				"2001:db8:100::1/128 proto 186 via 2001:db8:78::3",
			},
		},
		{
			name: "ipv6 grows back to ecmp", prefix: p("2001:db8:100::1/128"),
			nextHops: []netip.Addr{a("2001:db8:78::3"), a("2001:db8:78::5")},
			want: []string{
				"198.51.100.1/32 proto 186 via 10.78.0.4",
				"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5",
			},
		},
		{
			name: "empty set deletes", prefix: p("198.51.100.1/32"),
			want: []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "deleting an absent route", prefix: p("198.51.100.1/32"),
			want: []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "deleting a foreign route does nothing", prefix: p("203.0.113.0/24"),
			want: []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "foreign route is not replaced", prefix: p("198.51.100.9/32"), nextHops: []netip.Addr{a("10.78.0.3")},
			wantErr: ErrForeignRoute,
			want:    []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "next hop of the wrong family", prefix: p("198.51.100.2/32"), nextHops: []netip.Addr{a("2001:db8:78::3")},
			wantAnErr: true,
			want:      []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "prefix with host bits", prefix: p("198.51.100.2/24"), nextHops: []netip.Addr{a("10.78.0.3")},
			wantAnErr: true,
			want:      []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "unreachable gateway is refused by the kernel", prefix: p("198.51.100.3/32"), nextHops: []netip.Addr{a("10.99.0.1")},
			wantErr: unix.ENETUNREACH,
			want:    []string{"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5"},
		},
		{
			name: "second prefix", prefix: p("198.51.100.2/32"), nextHops: []netip.Addr{a("10.78.1.7"), a("10.78.0.7")},
			want: []string{
				"198.51.100.2/32 proto 186 via 10.78.0.7,10.78.1.7",
				"2001:db8:100::1/128 proto 186 via 2001:db8:78::3,2001:db8:78::5",
			},
		},
	} {
		t.Run(step.name, func(t *testing.T) {
			err := f.Set(step.prefix, step.nextHops)
			switch {
			case step.wantErr != nil:
				if !errors.Is(err, step.wantErr) {
					t.Errorf("Set() error = %v, want %v", err, step.wantErr)
				}
			case step.wantAnErr:
				if err == nil {
					t.Error("Set() succeeded, want an error")
				}
			case err != nil:
				t.Errorf("Set() error = %v", err)
			}
			checkRoutes(t, h, append(append([]string{}, foreignState...), step.want...))
		})
	}

	t.Run("flush", func(t *testing.T) {
		if err := f.Flush(); err != nil {
			t.Fatalf("Flush() error = %v", err)
		}
		checkRoutes(t, h, foreignState)
		if err := f.Flush(); err != nil {
			t.Errorf("second Flush() error = %v", err)
		}
	})
}

func checkRoutes(t *testing.T, h *netlink.Handle, want []string) {
	t.Helper()
	got, err := kernelRoutes(h)
	if err != nil {
		t.Fatal(err)
	}
	want = slices.Sorted(slices.Values(want))
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("routes (-got +want):\n%s", diff)
	}
}
