package bgp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeWatcher stands for the GoBGP server in watchBest tests: it hands the
// registered callback to the test, which then plays GoBGP's watch
// goroutine.
type fakeWatcher struct {
	err       error
	callbacks chan func(*api.WatchEventResponse)
	requests  []*api.WatchEventRequest
}

func newFakeWatcher() *fakeWatcher {
	return &fakeWatcher{callbacks: make(chan func(*api.WatchEventResponse), 1)}
}

func (f *fakeWatcher) WatchEvent(_ context.Context, r *api.WatchEventRequest, fn func(*api.WatchEventResponse)) error {
	if f.err != nil {
		return f.err
	}
	f.requests = append(f.requests, r)
	f.callbacks <- fn
	return nil
}

func tableEvent(paths ...*api.Path) *api.WatchEventResponse {
	return &api.WatchEventResponse{Event: &api.WatchEventResponse_Table{
		Table: &api.WatchEventResponse_TableEvent{Paths: paths},
	}}
}

// announced is a best path to prefix via nextHop.
func announced(t *testing.T, prefix, nextHop string) *api.Path {
	t.Helper()
	p, err := apiPath(netip.MustParsePrefix(prefix), netip.MustParseAddr(nextHop))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withdrawn is the withdrawn path GoBGP sends when a prefix has no path
// left.
func withdrawn(t *testing.T, prefix string) *api.Path {
	t.Helper()
	p, err := apiPath(netip.MustParsePrefix(prefix), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type call struct {
	Prefix   string
	NextHops []string
}

func TestWatchBest(t *testing.T) {
	const vip, vip2, vip6 = "198.51.100.1/32", "198.51.100.2/32", "2001:db8:100::1/128"
	garbage, err := anypb.New(&api.OriginAttribute{})
	if err != nil {
		t.Fatal(err)
	}
	// The steps run in order against one watch: each is one event and the
	// calls it must cause.
	steps := []struct {
		name  string
		event *api.WatchEventResponse
		want  []call
	}{
		{
			name:  "initial multipath set",
			event: tableEvent(announced(t, vip, "10.0.0.4"), announced(t, vip, "10.0.0.3")),
			want:  []call{{vip, []string{"10.0.0.3", "10.0.0.4"}}},
		},
		{
			name:  "same set in another order",
			event: tableEvent(announced(t, vip, "10.0.0.3"), announced(t, vip, "10.0.0.4")),
		},
		{
			name:  "duplicate next hops collapse",
			event: tableEvent(announced(t, vip, "10.0.0.3"), announced(t, vip, "10.0.0.4"), announced(t, vip, "10.0.0.4")),
		},
		{
			name:  "a path grows the set",
			event: tableEvent(announced(t, vip, "10.0.0.3"), announced(t, vip, "10.0.0.5"), announced(t, vip, "10.0.0.4")),
			want:  []call{{vip, []string{"10.0.0.3", "10.0.0.4", "10.0.0.5"}}},
		},
		{
			name:  "a path leaves the set",
			event: tableEvent(announced(t, vip, "10.0.0.3")),
			want:  []call{{vip, []string{"10.0.0.3"}}},
		},
		{
			name: "several prefixes in one event, sorted",
			event: tableEvent(
				announced(t, vip6, "2001:db8::4"), announced(t, vip6, "2001:db8::3"),
				announced(t, vip2, "10.0.0.4"),
				announced(t, vip, "10.0.0.4"),
			),
			want: []call{
				{vip, []string{"10.0.0.4"}},
				{vip2, []string{"10.0.0.4"}},
				{vip6, []string{"2001:db8::3", "2001:db8::4"}},
			},
		},
		{
			name:  "last path withdrawn",
			event: tableEvent(withdrawn(t, vip)),
			want:  []call{{Prefix: vip}},
		},
		{
			name:  "withdrawal of an unknown prefix",
			event: tableEvent(withdrawn(t, "203.0.113.0/24")),
		},
		{
			name:  "withdrawal again",
			event: tableEvent(withdrawn(t, vip)),
		},
		{
			name: "malformed paths are ignored",
			event: tableEvent(
				&api.Path{Family: familyIPv4, Nlri: garbage},
				&api.Path{Family: familyIPv4, Nlri: announced(t, vip2, "10.0.0.9").Nlri},
			),
		},
		{
			name:  "event without table part",
			event: &api.WatchEventResponse{Event: &api.WatchEventResponse_Peer{}},
		},
		{
			name:  "prefix comes back",
			event: tableEvent(announced(t, vip, "10.0.0.3"), announced(t, vip, "10.0.0.4")),
			want:  []call{{vip, []string{"10.0.0.3", "10.0.0.4"}}},
		},
	}

	w := newFakeWatcher()
	ctx, cancel := context.WithCancel(t.Context())
	var got []call // Written by the watch loop, read after a barrier.
	done := make(chan error, 1)
	go func() {
		done <- watchBest(ctx, w, testLogger(t), func(p netip.Prefix, hops []netip.Addr) {
			c := call{Prefix: p.String()}
			for _, h := range hops {
				c.NextHops = append(c.NextHops, h.String())
			}
			got = append(got, c)
		})
	}()
	send := <-w.callbacks
	if len(w.requests) != 1 || len(w.requests[0].GetTable().GetFilters()) != 1 ||
		w.requests[0].GetTable().GetFilters()[0].GetType() != api.WatchEventRequest_Table_Filter_BEST ||
		!w.requests[0].GetTable().GetFilters()[0].GetInit() {
		t.Fatalf("watch request = %v, want one BEST filter with Init", w.requests)
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got = nil
			send(s.event)
			// The loop takes an event only after it has finished the
			// previous one, so once this empty event is taken every call
			// of the step has been recorded.
			send(tableEvent())
			if diff := cmp.Diff(got, s.want); diff != "" {
				t.Errorf("calls (-got +want):\n%s", diff)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watchBest() after cancel = %v, want nil", err)
	}
}

func TestWatchBestSubscribeError(t *testing.T) {
	w := newFakeWatcher()
	w.err = errors.New("bgp server hasn't started yet")
	err := watchBest(t.Context(), w, slog.New(slog.DiscardHandler), func(netip.Prefix, []netip.Addr) {
		t.Error("callback called")
	})
	if !errors.Is(err, w.err) {
		t.Errorf("watchBest() = %v, want it to wrap %v", err, w.err)
	}
}

func TestNextHopTable(t *testing.T) {
	p1, p2 := netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("198.51.100.2/32")
	a, b := netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")
	var table nextHopTable
	for _, step := range []struct {
		name  string
		paths []bestPath
		want  []nextHopSet
	}{
		{name: "empty event"},
		{
			name:  "two prefixes",
			paths: []bestPath{{Prefix: p2, NextHop: a}, {Prefix: p1, NextHop: b}, {Prefix: p1, NextHop: a}},
			want:  []nextHopSet{{p1, []netip.Addr{a, b}}, {p2, []netip.Addr{a}}},
		},
		{
			name:  "only the changed prefix is reported",
			paths: []bestPath{{Prefix: p1, NextHop: a}, {Prefix: p1, NextHop: b}, {Prefix: p2, NextHop: b}},
			want:  []nextHopSet{{p2, []netip.Addr{b}}},
		},
		{
			name:  "withdrawn path with a path left is not a withdrawal",
			paths: []bestPath{{Prefix: p1, Withdrawn: true}, {Prefix: p1, NextHop: b}},
			want:  []nextHopSet{{p1, []netip.Addr{b}}},
		},
		{
			name:  "withdrawal",
			paths: []bestPath{{Prefix: p2, Withdrawn: true}},
			want:  []nextHopSet{{Prefix: p2}},
		},
	} {
		t.Run(step.name, func(t *testing.T) {
			if diff := cmp.Diff(table.apply(step.paths), step.want, addrComparer); diff != "" {
				t.Errorf("apply() (-got +want):\n%s", diff)
			}
		})
	}
	want := map[netip.Prefix][]netip.Addr{p1: {b}}
	if diff := cmp.Diff(table.sets, want, addrComparer); diff != "" {
		t.Errorf("final sets (-got +want):\n%s", diff)
	}
}

// fakeLister answers ListPeer with fixed sessions.
type fakeLister []*api.Peer

func (f fakeLister) ListPeer(_ context.Context, _ *api.ListPeerRequest, fn func(*api.Peer)) error {
	for _, p := range f {
		fn(p)
	}
	return nil
}

func peerEvent(addr string, st api.PeerState_SessionState) *api.WatchEventResponse {
	return &api.WatchEventResponse{Event: &api.WatchEventResponse_Peer{Peer: &api.WatchEventResponse_PeerEvent{
		Type: api.WatchEventResponse_PeerEvent_STATE,
		Peer: &api.Peer{State: &api.PeerState{NeighborAddress: addr, SessionState: st}},
	}}}
}

// TestWatchPeers checks that watchPeers reports the sessions as they are
// first, then each state change GoBGP pushes, and ignores other events.
func TestWatchPeers(t *testing.T) {
	w := newFakeWatcher()
	l := fakeLister{
		{Conf: &api.PeerConf{NeighborAddress: "10.0.0.1"}, State: &api.PeerState{SessionState: api.PeerState_ESTABLISHED}},
		{Conf: &api.PeerConf{NeighborAddress: "10.0.0.2"}, State: &api.PeerState{SessionState: api.PeerState_ACTIVE}},
	}
	ctx, cancel := context.WithCancel(t.Context())
	calls := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- watchPeers(ctx, w, l, func(a netip.Addr, st string) { calls <- a.String() + " " + st })
	}()
	send := <-w.callbacks
	if len(w.requests) != 1 || w.requests[0].GetPeer() == nil {
		t.Fatalf("watch request = %v, want a peer watch", w.requests)
	}
	next := func() string {
		t.Helper()
		select {
		case c := <-calls:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no call")
			return ""
		}
	}
	for _, want := range []string{"10.0.0.1 established", "10.0.0.2 active"} {
		if got := next(); got != want {
			t.Errorf("initial call %q, want %q", got, want)
		}
	}
	send(tableEvent()) // not a peer event: ignored
	send(peerEvent("10.0.0.2", api.PeerState_ESTABLISHED))
	send(peerEvent("10.0.0.1", api.PeerState_IDLE))
	for _, want := range []string{"10.0.0.2 established", "10.0.0.1 idle"} {
		if got := next(); got != want {
			t.Errorf("call %q, want %q", got, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watchPeers() = %v", err)
	}
}
