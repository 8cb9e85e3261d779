package node

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/health"
	"github.com/lab-lb/lab/internal/ipvs"
	"github.com/lab-lb/lab/internal/ipvs/ipvstest"
	"github.com/lab-lb/lab/internal/topology"
)

// Addresses of the minimal topology, as lb4-1 sees them.
const (
	minimalVIP = "198.51.100.1"
	lb41Addr   = "192.0.2.130" // lb4-1's next hop
	lb71Addr   = "192.0.2.132"
	lb72Addr   = "192.0.2.133"
	// The IPv6 VIP of the same name, lb4-1's IPv6 next hop, and the LB7s'
	// IPv6 addresses: the IPv6 service's destinations.
	minimalVIP6 = "2001:db8:100::1"
	lb41Addr6   = "2001:db8:0:2::2"
)

var minimalV6 = map[string]string{lb71Addr: "2001:db8:0:2::4", lb72Addr: "2001:db8:0:2::5"}

const ()

// fakeBGP is what the routers learn from an LB4's speaker: each announced
// prefix and its next hop. updates counts the announcements and
// withdrawals sent.
type fakeBGP struct {
	routes  map[netip.Prefix]netip.Addr
	updates int
	fail    error // the next Announce or Withdraw fails with it
}

func (f *fakeBGP) Announce(p netip.Prefix, nextHop netip.Addr) error {
	if err := f.fail; err != nil {
		f.fail = nil
		return err
	}
	f.routes[p] = nextHop
	f.updates++
	return nil
}

func (f *fakeBGP) Withdraw(p netip.Prefix) error {
	if err := f.fail; err != nil {
		f.fail = nil
		return err
	}
	delete(f.routes, p)
	f.updates++
	return nil
}

// errorLog keeps the messages logged at level Error.
type errorLog struct{ msgs *[]string }

func (h errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h errorLog) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	*h.msgs = append(*h.msgs, msg)
	return nil
}
func (h errorLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errorLog) WithGroup(string) slog.Handler      { return h }

// testLB4 is an LB4 as Start sets it up, over ipvstest's in-memory kernel,
// a fake BGP speaker, a clock that moves only when told and a private
// /etc/lb, with no health checker: the test reports health changes.
type testLB4 struct {
	*lb4
	kernel *ipvstest.Kernel
	bgp    *fakeBGP
	at     time.Time // the clock
	errors []string  // logged
}

var lb4Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// newTestLB4 starts LB4 node of topo, with dir as its state directory (a
// new one when empty), whose lb is its /etc/lb.
func newTestLB4(t *testing.T, topo *topology.Topology, node, dir string) *testLB4 {
	t.Helper()
	n, ok := topo.Node(node)
	if !ok {
		t.Fatalf("no node %s", node)
	}
	if dir == "" {
		dir = t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, LBDirName), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tl := &testLB4{kernel: ipvstest.NewKernel(), bgp: &fakeBGP{routes: map[netip.Prefix]netip.Addr{}}, at: lb4Start}
	a := &agent{cfg: Config{Dir: dir}, log: slog.New(errorLog{&tl.errors}), started: lb4Start, topo: topo, node: n}
	tl.lb4 = &lb4{a: a, table: ipvs.NewTable(tl.kernel), vips: tl.bgp, now: func() time.Time { return tl.at }}
	if err := tl.init(topo); err != nil {
		t.Fatal(err)
	}
	// What Start does once the speaker runs.
	tl.disabled, tl.disabledVIPs = tl.disableExists()
	if err := tl.reconcile(); err != nil {
		t.Fatal(err)
	}
	tl.steady(t)
	return tl
}

// steady checks that the LB4 has converged: no error was logged, and
// reconciling again changes neither IPVS nor BGP, nor logs an event.
func (tl *testLB4) steady(t *testing.T) {
	t.Helper()
	if len(tl.errors) > 0 {
		t.Fatalf("errors logged: %q", tl.errors)
	}
	kernel, routes, updates, events := tl.kernel.State(), maps.Clone(tl.bgp.routes), tl.bgp.updates, len(tl.a.events)
	if err := tl.reconcile(); err != nil {
		t.Fatalf("reconcile again: %v", err)
	}
	if diff := cmp.Diff(kernel, tl.kernel.State()); diff != "" {
		t.Errorf("reconcile again changed IPVS (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(routes, tl.bgp.routes, cmpopts.EquateComparable(netip.Addr{})); diff != "" || tl.bgp.updates != updates {
		t.Errorf("reconcile again sent %d BGP updates (-before +after):\n%s", tl.bgp.updates-updates, diff)
	}
	if evs := tl.a.events[events:]; len(evs) > 0 {
		t.Errorf("reconcile again logged events: %v", evs)
	}
}

// health reports a verdict on an LB7, as the checker does, and checks that
// the LB4 converged.
func (tl *testLB4) health(t *testing.T, lb7 string, healthy bool) {
	t.Helper()
	tl.onHealth(health.State{Name: lb7, Healthy: healthy, Known: true})
	tl.steady(t)
}

// allHealthy reports every LB7 healthy.
func (tl *testLB4) allHealthy(t *testing.T) {
	t.Helper()
	for _, d := range tl.lb7s {
		tl.health(t, d.name, true)
	}
}

// graceOver moves the clock past the grace time and reconciles, as the
// timer Start sets does.
func (tl *testLB4) graceOver(t *testing.T) {
	t.Helper()
	tl.at = lb4Start.Add(announceGrace*tl.a.node.Settings.Health.Interval + time.Millisecond)
	if err := tl.reconcile(); err != nil {
		t.Fatal(err)
	}
	tl.steady(t)
}

// setDisable creates or removes /etc/lb/disable and lets the LB4 notice,
// as its watch does.
func (tl *testLB4) setDisable(t *testing.T, on bool) {
	t.Helper()
	tl.setFile(t, DisableFile, on)
}

// wantAnnounced checks what the routers learn: the VIP of each family
// through lb4-1 of the minimal topology, or nothing.
func (tl *testLB4) wantAnnounced(t *testing.T, announced bool) {
	t.Helper()
	want := map[netip.Prefix]netip.Addr{}
	if announced {
		want[netip.MustParsePrefix(minimalVIP+"/32")] = netip.MustParseAddr(lb41Addr)
		want[netip.MustParsePrefix(minimalVIP6+"/128")] = netip.MustParseAddr(lb41Addr6)
	}
	if diff := cmp.Diff(tl.bgp.routes, want, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("BGP routes (-got +want):\n%s", diff)
	}
}

// wantIPVS checks the kernel's IPVS state of an LB4 of the minimal
// topology: its IPv4 VIP (mh, port) with dests, head first, and its IPv6
// VIP with the same LB7s at their IPv6 addresses.
func (tl *testLB4) wantIPVS(t *testing.T, dests ...ipvstest.DestState) {
	t.Helper()
	const fallbackPort = 0x0008 | 0x0010 // IP_VS_SVC_F_SCHED1 | IP_VS_SVC_F_SCHED2
	var dests6 []ipvstest.DestState
	for _, d := range dests {
		a4 := strings.TrimSuffix(d.Addr, ":80")
		a6, ok := minimalV6[a4]
		if !ok {
			t.Fatalf("no IPv6 address for LB7 %s", a4)
		}
		d.Addr = "[" + a6 + "]:80"
		dests6 = append(dests6, d)
	}
	want := []ipvstest.ServiceState{
		{Key: "10/6/[" + minimalVIP6 + "]:80", Scheduler: "mh", Flags: fallbackPort | ipvstest.FlagHashed, Dests: dests6},
		{Key: "2/6/" + minimalVIP + ":80", Scheduler: "mh", Flags: fallbackPort | ipvstest.FlagHashed, Dests: dests},
	}
	if diff := cmp.Diff(tl.kernel.State(), want); diff != "" {
		t.Errorf("IPVS (-got +want):\n%s", diff)
	}
}

// ipvsDest is an IPIP destination on port 80 with its weight and the kernel's
// last weight, which gives it its Maglev slots when not 0.
func ipvsDest(addr string, weight, lastWeight int) ipvstest.DestState {
	return ipvstest.DestState{Addr: addr + ":80", Weight: weight, LastWeight: lastWeight, Fwd: mobyipvs.ConnFwdTunnel}
}

func minimalTopology(t *testing.T, removeFailed bool) *topology.Topology {
	t.Helper()
	topo := load(t, "minimal")
	for i := range topo.Nodes {
		topo.Nodes[i].Settings.Health.RemoveFailed = removeFailed
	}
	return topo
}

func TestShouldAnnounce(t *testing.T) {
	lb7s := []lb7Target{{name: "lb7-1"}, {name: "lb7-2"}}
	two := func(s lb4State) lb4State { s.lb7s = lb7s; return s }
	up := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	cases := []struct {
		name string
		s    lb4State
		want bool
	}{
		{"starting, no verdict yet", two(lb4State{}), false},
		{"starting, one healthy, the other without a verdict", two(lb4State{healthy: up("lb7-1"), known: up("lb7-1")}), false},
		{"starting, one healthy, the other down, within the grace time", two(lb4State{healthy: up("lb7-1"), known: up("lb7-1", "lb7-2")}), false},
		{"starting, every LB7 healthy", two(lb4State{healthy: up("lb7-1", "lb7-2"), known: up("lb7-1", "lb7-2")}), true},
		{"starting, one healthy, the other down, after the grace time", two(lb4State{healthy: up("lb7-1"), known: up("lb7-1", "lb7-2"), graceOver: true}), true},
		{"starting, one healthy, the other without a verdict, after the grace time", two(lb4State{healthy: up("lb7-1"), known: up("lb7-1"), graceOver: true}), false},
		{"starting, every LB7 down, after the grace time", two(lb4State{known: up("lb7-1", "lb7-2"), graceOver: true}), false},
		{"announced, one LB7 fails", two(lb4State{healthy: up("lb7-2"), known: up("lb7-1", "lb7-2"), announced: true}), true},
		{"announced, every LB7 down", two(lb4State{known: up("lb7-1", "lb7-2"), announced: true, graceOver: true}), false},
		{"disabled, every LB7 healthy", two(lb4State{healthy: up("lb7-1", "lb7-2"), known: up("lb7-1", "lb7-2"), disabled: true, graceOver: true}), false},
		{"disabled while announced", two(lb4State{healthy: up("lb7-1", "lb7-2"), known: up("lb7-1", "lb7-2"), disabled: true, announced: true}), false},
		{"withdrawn after an outage, one LB7 back, within the grace time", two(lb4State{healthy: up("lb7-1"), known: up("lb7-1", "lb7-2")}), false},
		{"no LB7 at all", lb4State{graceOver: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := shouldAnnounce(tc.s); got != tc.want {
				t.Errorf("shouldAnnounce(%+v) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

// A starting LB4 programs every LB7 at once (weight 0 until healthy, with
// its Maglev slots) and announces only when every LB7 is healthy.
func TestLB4StartWaitsForEveryLB7(t *testing.T) {
	tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
	tl.wantAnnounced(t, false)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 0, 1), ipvsDest(lb71Addr, 0, 1))

	tl.health(t, "lb7-1", true)
	tl.wantAnnounced(t, false)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 0, 1), ipvsDest(lb71Addr, 1, 1))
	if ok, why := tl.Ready(); ok || why != "lb7-2 not healthy yet" {
		t.Errorf("Ready() = %v, %q; want false, lb7-2 not healthy yet", ok, why)
	}

	tl.health(t, "lb7-2", false)
	tl.wantAnnounced(t, false)

	tl.health(t, "lb7-2", true)
	tl.wantAnnounced(t, true)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))
	if ok, why := tl.Ready(); !ok {
		t.Errorf("Ready() = false, %q; want true", why)
	}
}

// After the grace time, an LB4 announces with some LB7 known down as long
// as one is healthy; the down LB7 keeps its place and slots at weight 0.
func TestLB4AnnouncesAfterGrace(t *testing.T) {
	tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
	tl.health(t, "lb7-1", true)
	tl.health(t, "lb7-2", false)

	tl.at = lb4Start.Add(announceGrace * tl.a.node.Settings.Health.Interval)
	tl.steady(t)
	tl.wantAnnounced(t, false)

	tl.graceOver(t)
	tl.wantAnnounced(t, true)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 0, 1), ipvsDest(lb71Addr, 1, 1))
}

// /etc/lb/disable withdraws the VIPs while it exists, whatever the LB7s'
// health, and leaves IPVS alone.
func TestLB4Disable(t *testing.T) {
	t.Run("withdraws and re-announces", func(t *testing.T) {
		tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
		tl.allHealthy(t)
		tl.wantAnnounced(t, true)

		tl.setDisable(t, true)
		tl.wantAnnounced(t, false)
		tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))
		if ok, why := tl.Ready(); !ok {
			t.Errorf("Ready() = false, %q; want true: disabled on purpose", why)
		}
		tl.health(t, "lb7-1", false)
		tl.health(t, "lb7-1", true)
		tl.graceOver(t)
		tl.wantAnnounced(t, false)

		tl.setDisable(t, false)
		tl.wantAnnounced(t, true)
	})
	t.Run("disabled from the start", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, LBDirName), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, LBDirName, DisableFile), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", dir)
		tl.allHealthy(t)
		tl.graceOver(t)
		tl.wantAnnounced(t, false)
		tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))

		tl.setDisable(t, false)
		tl.wantAnnounced(t, true)
	})
}

// setFile creates or removes a file of /etc/lb and lets the LB4 notice, as
// its watch does.
func (tl *testLB4) setFile(t *testing.T, name string, on bool) {
	t.Helper()
	p := tl.a.lbFile(name)
	var err error
	if on {
		err = os.WriteFile(p, nil, 0o644)
	} else {
		err = os.Remove(p)
	}
	if err != nil {
		t.Fatal(err)
	}
	tl.checkDisable()
	tl.steady(t)
}

// A VIP taken out of service on its own (/etc/lb/disable.NAME) is
// withdrawn in both families while IPVS keeps serving it, and comes back
// when the file goes; /etc/lb/disable still withdraws everything.
func TestLB4DisableVIP(t *testing.T) {
	tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
	tl.allHealthy(t)
	tl.wantAnnounced(t, true)

	events := len(tl.a.events)
	tl.setFile(t, DisableVIPFile("www"), true)
	tl.wantAnnounced(t, false)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))
	var msgs []string
	for _, e := range tl.a.events[events:] {
		msgs = append(msgs, e.Kind+": "+e.Msg)
	}
	want := []string{
		"maintenance: /etc/lb/disable.www created",
		"bgp: withdraw VIP www " + minimalVIP,
		"bgp: withdraw VIP www " + minimalVIP6,
	}
	if diff := cmp.Diff(msgs, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if !tl.announced || !tl.disabledVIPs["www"] {
		t.Errorf("announced %v, disabled VIPs %v; want true, www", tl.announced, tl.disabledVIPs)
	}

	// The whole LB4 out and back: the VIP stays withdrawn.
	tl.setDisable(t, true)
	tl.wantAnnounced(t, false)
	tl.setDisable(t, false)
	tl.wantAnnounced(t, false)

	tl.setFile(t, DisableVIPFile("www"), false)
	tl.wantAnnounced(t, true)
}

func TestVIPRoutes(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.1")
	a6 := netip.MustParseAddr("2001:db8:100::1")
	b := netip.MustParseAddr("198.51.100.2")
	vips := []topology.VIP{{Name: "www1", Address: a}, {Name: "www1", Address: a6}, {Name: "www2", Address: b}}
	serving := lb4State{lb7s: []lb7Target{{name: "lb7-1"}}, healthy: map[string]bool{"lb7-1": true}, announced: true}
	cases := []struct {
		name string
		s    func(lb4State) lb4State
		want []netip.Addr
	}{
		{"in service", func(s lb4State) lb4State { return s }, []netip.Addr{a, a6, b}},
		{"one VIP out", func(s lb4State) lb4State { s.disabledVIPs = map[string]bool{"www1": true}; return s }, []netip.Addr{b}},
		{"every VIP out", func(s lb4State) lb4State {
			s.disabledVIPs = map[string]bool{"www1": true, "www2": true}
			return s
		}, nil},
		{"LB4 disabled", func(s lb4State) lb4State { s.disabled = true; return s }, nil},
		{"no LB7 healthy", func(s lb4State) lb4State { s.healthy = nil; return s }, nil},
		{"unknown VIP name", func(s lb4State) lb4State { s.disabledVIPs = map[string]bool{"www3": true}; return s }, []netip.Addr{a, a6, b}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := vipRoutes(tc.s(serving), vips)
			if !slices.Equal(got, tc.want) {
				t.Errorf("vipRoutes = %v, want %v", got, tc.want)
			}
		})
	}
}

// Once announced, an LB4 keeps announcing while one LB7 is healthy; the
// failed LB7 keeps its place at weight 0.
func TestLB4KeepsAnnouncingWhileOneLB7Healthy(t *testing.T) {
	tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
	tl.allHealthy(t)
	tl.health(t, "lb7-1", false)
	tl.wantAnnounced(t, true)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 0, 1))
}

// With no LB7 healthy the LB4 withdraws; it announces again when one comes
// back after the grace time.
func TestLB4WithdrawsWhenNoLB7Healthy(t *testing.T) {
	tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
	tl.allHealthy(t)
	tl.health(t, "lb7-1", false)
	tl.health(t, "lb7-2", false)
	tl.wantAnnounced(t, false)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 0, 1), ipvsDest(lb71Addr, 0, 1))

	tl.graceOver(t)
	tl.wantAnnounced(t, false)
	tl.health(t, "lb7-2", true)
	tl.wantAnnounced(t, true)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 0, 1))
}

// Every LB4 programs the same IPVS tables from the same LB7 health,
// whatever it saw before: same destination order (the last LB7 of the
// topology first), weights and last weights, hence the same Maglev tables.
func TestLB4SameIPVSOnEveryLB4(t *testing.T) {
	topo := load(t, "reference")
	down := []string{"lb7-3", "lb7-7"}

	// lb4-1 saw every LB7 healthy, then two fail.
	a := newTestLB4(t, topo, "lb4-1", "")
	a.allHealthy(t)
	for _, name := range down {
		a.health(t, name, false)
	}
	// lb4-2 starts with them down already.
	b := newTestLB4(t, topo, "lb4-2", "")
	for _, d := range b.lb7s {
		b.health(t, d.name, !slices.Contains(down, d.name))
	}
	b.graceOver(t)
	// lb4-3 saw them flap.
	c := newTestLB4(t, topo, "lb4-3", "")
	for _, name := range down {
		c.health(t, name, true)
		c.health(t, name, false)
	}
	c.allHealthy(t)
	for _, name := range down {
		c.health(t, name, false)
	}

	want := a.kernel.State()
	if len(want) != len(topo.VIPs) {
		t.Fatalf("%d IPVS services, want one per VIP (%d)", len(want), len(topo.VIPs))
	}
	for _, s := range want {
		var got []string
		for _, d := range s.Dests {
			got = append(got, d.Addr)
			if d.LastWeight != 1 {
				t.Errorf("%s: %s has last weight %d, want 1: a failed LB7 keeps its slots", s.Key, d.Addr, d.LastWeight)
			}
		}
		f := topology.IPv4
		if strings.HasPrefix(s.Key, "10/") { // AF_INET6: an IPv6 VIP's service
			f = topology.IPv6
		}
		var order []string
		for _, d := range slices.Backward(a.lb7s) {
			order = append(order, netip.AddrPortFrom(d.addrs[f], 80).String())
		}
		if diff := cmp.Diff(got, order); diff != "" {
			t.Errorf("%s: destination order (-got +want, the reverse of the topology's):\n%s", s.Key, diff)
		}
	}
	for _, other := range []*testLB4{b, c} {
		if diff := cmp.Diff(other.kernel.State(), want); diff != "" {
			t.Errorf("%s IPVS differs from lb4-1's (-%s +lb4-1):\n%s", other.a.node.Name, other.a.node.Name, diff)
		}
	}
	for _, l := range []*testLB4{a, b, c} {
		if len(l.bgp.routes) != len(topo.VIPAddresses()) {
			t.Errorf("%s announces %d VIPs, want %d", l.a.node.Name, len(l.bgp.routes), len(topo.VIPAddresses()))
		}
	}
}

// With remove-failed, a failed LB7 leaves IPVS instead of taking weight 0;
// back, it is where a fresh LB4 has it.
func TestLB4RemoveFailed(t *testing.T) {
	tl := newTestLB4(t, minimalTopology(t, true), "lb4-1", "")
	tl.wantIPVS(t)
	tl.allHealthy(t)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))

	tl.health(t, "lb7-1", false)
	tl.wantAnnounced(t, true)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1))

	tl.health(t, "lb7-1", true)
	tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))
}

// reconcile is idempotent: in every state, a second call changes nothing
// in IPVS, sends no BGP update and logs no event. (Every step of these
// tests checks it through steady; this test walks through the states with
// and without remove-failed and checks a third call too.)
func TestLB4ReconcileIdempotent(t *testing.T) {
	for _, removeFailed := range []bool{false, true} {
		tl := newTestLB4(t, minimalTopology(t, removeFailed), "lb4-1", "")
		for _, step := range []func(){
			func() { tl.health(t, "lb7-1", true) },
			func() { tl.health(t, "lb7-2", true) },
			func() { tl.health(t, "lb7-2", false) },
			func() { tl.setDisable(t, true) },
			func() { tl.graceOver(t) },
			func() { tl.setDisable(t, false) },
			func() { tl.health(t, "lb7-1", false) },
		} {
			step()
			tl.steady(t)
		}
	}
}

// An IPVS error holds the BGP decision back; a BGP error leaves the LB4
// withdrawn. The next reconcile converges either way.
func TestLB4RetriesAfterErrors(t *testing.T) {
	t.Run("ipvs", func(t *testing.T) {
		tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
		tl.health(t, "lb7-1", true)
		tl.kernel.FailNext("UpdateDestination", unix.ENOMEM)
		tl.onHealth(health.State{Name: "lb7-2", Healthy: true, Known: true})
		if len(tl.errors) != 1 {
			t.Fatalf("errors logged: %q, want the IPVS one", tl.errors)
		}
		tl.errors = nil
		tl.wantAnnounced(t, false)
		tl.wantIPVS(t, ipvsDest(lb72Addr, 0, 1), ipvsDest(lb71Addr, 1, 1))

		if err := tl.reconcile(); err != nil {
			t.Fatal(err)
		}
		tl.steady(t)
		tl.wantAnnounced(t, true)
		tl.wantIPVS(t, ipvsDest(lb72Addr, 1, 1), ipvsDest(lb71Addr, 1, 1))
	})
	t.Run("bgp", func(t *testing.T) {
		tl := newTestLB4(t, minimalTopology(t, false), "lb4-1", "")
		tl.health(t, "lb7-1", true)
		boom := errors.New("boom")
		tl.bgp.fail = boom
		tl.onHealth(health.State{Name: "lb7-2", Healthy: true, Known: true})
		if len(tl.errors) != 1 {
			t.Fatalf("errors logged: %q, want the BGP one", tl.errors)
		}
		tl.errors = nil
		tl.wantAnnounced(t, false)
		if ok, _ := tl.Ready(); ok {
			t.Error("Ready with the VIPs not announced")
		}

		if err := tl.reconcile(); err != nil {
			t.Fatal(err)
		}
		tl.steady(t)
		tl.wantAnnounced(t, true)
	})
}
