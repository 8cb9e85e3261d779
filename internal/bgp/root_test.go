package bgp

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSpeaker runs one GoBGP speaker inside the test process (GoBGP allows
// one per process, so no other test here starts one). It opens no
// listening socket; its only neighbour is on loopback, where nobody
// answers, and the best-path watch sees the speaker's own announcements.
func TestSpeaker(t *testing.T) {
	log := testLogger(t)
	neighbor := netip.MustParseAddr("127.0.0.2")
	s := New(Config{
		RouterID:  netip.MustParseAddr("10.255.0.1"),
		ASN:       65000,
		Neighbors: []Neighbor{{Address: neighbor, AddPaths: true}},
	}, log)
	t.Cleanup(s.Stop)

	vip := netip.MustParsePrefix("198.51.100.7/32")
	vip6 := netip.MustParsePrefix("2001:db8:100::7/128")
	nh1, nh2 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	nh6 := netip.MustParseAddr("2001:db8::10")

	if err := s.Announce(vip, nh1); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Announce() before Start = %v, want ErrNotStarted", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	if err := s.Start(t.Context()); err == nil {
		t.Error("second Start() succeeded")
	}

	peers, err := s.Peers(t.Context())
	if err != nil {
		t.Fatalf("Peers() error = %v", err)
	}
	if len(peers) != 1 || peers[0].Address != neighbor || peers[0].State == "established" || peers[0].State == "" ||
		peers[0].Uptime != 0 || peers[0].Received != 0 {
		t.Errorf("Peers() = %+v, want one unestablished peer %s", peers, neighbor)
	}

	type update struct {
		Prefix   netip.Prefix
		NextHops []netip.Addr
	}
	updates := make(chan update, 16)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- s.WatchBest(t.Context(), func(p netip.Prefix, hops []netip.Addr) {
			updates <- update{p, hops}
		})
	}()
	expect := func(t *testing.T, want update) {
		t.Helper()
		select {
		case got := <-updates:
			if diff := cmp.Diff(got, want, addrComparer); diff != "" {
				t.Errorf("WatchBest update (-got +want):\n%s", diff)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no WatchBest update, want %v", want)
		}
	}

	for _, step := range []struct {
		name    string
		do      func() error
		wantErr bool
		want    *update
	}{
		{name: "announce", do: func() error { return s.Announce(vip, nh1) },
			want: &update{vip, []netip.Addr{nh1}}},
		{name: "announce with another next hop replaces", do: func() error { return s.Announce(vip, nh2) },
			want: &update{vip, []netip.Addr{nh2}}},
		{name: "announce ipv6", do: func() error { return s.Announce(vip6, nh6) },
			want: &update{vip6, []netip.Addr{nh6}}},
		{name: "family mismatch", do: func() error { return s.Announce(vip, nh6) }, wantErr: true},
		{name: "withdraw", do: func() error { return s.Withdraw(vip) },
			want: &update{Prefix: vip}},
		{name: "withdraw again", do: func() error { return s.Withdraw(vip) }},
		{name: "withdraw ipv6", do: func() error { return s.Withdraw(vip6) },
			want: &update{Prefix: vip6}},
		{name: "announce after withdraw", do: func() error { return s.Announce(vip, nh1) },
			want: &update{vip, []netip.Addr{nh1}}},
	} {
		t.Run(step.name, func(t *testing.T) {
			err := step.do()
			if step.wantErr != (err != nil) {
				t.Fatalf("error = %v, want error %t", err, step.wantErr)
			}
			if step.want != nil {
				expect(t, *step.want)
			}
		})
	}

	s.Stop()
	select {
	case err := <-watchDone:
		if err != nil {
			t.Errorf("WatchBest() after Stop = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchBest() did not return after Stop")
	}
	if len(updates) != 0 {
		t.Errorf("unexpected WatchBest update %v", <-updates)
	}
	if err := s.Withdraw(vip); !errors.Is(err, ErrStopped) {
		t.Errorf("Withdraw() after Stop = %v, want ErrStopped", err)
	}
	if _, err := s.Peers(t.Context()); !errors.Is(err, ErrStopped) {
		t.Errorf("Peers() after Stop = %v, want ErrStopped", err)
	}
	if err := s.Start(t.Context()); !errors.Is(err, ErrStopped) {
		t.Errorf("Start() after Stop = %v, want ErrStopped", err)
	}
	s.Stop() // A second Stop is harmless.
}

func TestSpeakerStartInvalid(t *testing.T) {
	s := New(Config{ASN: 65000}, slog.New(slog.DiscardHandler))
	if err := s.Start(t.Context()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Start() = %v, want ErrInvalidConfig", err)
	}
}

// TestSetNeighbors adds a neighbour to a running speaker and removes
// another, as lab add and lab remove do on routers and reflectors.
func TestSetNeighbors(t *testing.T) {
	a, b, c := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")
	s := New(Config{RouterID: netip.MustParseAddr("10.255.0.1"), ASN: 65000, Neighbors: []Neighbor{{Address: a}, {Address: b}}}, testLogger(t))
	t.Cleanup(s.Stop)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetNeighbors(t.Context(), []Neighbor{{Address: a}, {Address: c}}); err != nil {
		t.Fatal(err)
	}
	peers, err := s.Peers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for _, p := range peers {
		got = append(got, p.Address)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, []netip.Addr{a, c}) {
		t.Errorf("peers %v, want %v and %v", got, a, c)
	}
}
