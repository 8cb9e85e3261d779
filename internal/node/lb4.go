package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/lab-lb/lab/internal/bfd"
	"github.com/lab-lb/lab/internal/bgp"
	"github.com/lab-lb/lab/internal/health"
	"github.com/lab-lb/lab/internal/ipvs"
	"github.com/lab-lb/lab/internal/topology"
)

// announceGrace, in health-check intervals, is how long a starting LB4
// waits for every LB7 to be healthy before it announces with some down.
const announceGrace = 20

// DisableFile on an LB4 withdraws its VIPs from BGP while it exists.
const DisableFile = "disable"

// DisableVIPPrefix begins the name of the file, beside DisableFile, that
// withdraws one VIP from BGP while it exists: /etc/lb/disable.NAME takes
// every address of the VIP named NAME out of service on this LB4, and
// `lab maint --vip NAME on` writes it on every LB4.
const DisableVIPPrefix = DisableFile + "."

// DisableVIPFile is the file that withdraws the VIP named vip.
func DisableVIPFile(vip string) string { return DisableVIPPrefix + vip }

// lb4 is tier 2: IPVS spreads the VIPs' flows over the LB7s (IPIP
// tunnels), health checks keep failed LB7s at weight 0, and BGP announces
// the VIPs while at least one LB7 is healthy and /etc/lb/disable does not
// exist.
//
// Every LB4 lists the LB7s in reverse topology order, so all LB4s program
// the same destination list and so the same Maglev table (see package
// ipvs), and an LB7 added at runtime (last in the topology) costs no
// re-ordering. A failed
// LB7 keeps its place with weight 0: with the fallback flag only its own
// flows move, consistently on every LB4.
//
// Its decisions are pure functions of [lb4State] ([shouldAnnounce],
// [ipvsPlan]); reconcile applies them through the small interfaces below,
// which the real LB4 fills with the kernel's IPVS table and its BGP
// speaker, and unit tests with ipvstest's in-memory kernel and a fake.
type lb4 struct {
	a       *agent
	speaker *bgp.Speaker // sessions and peers; vips announces through it
	bfd     *bfd.Server  // sessions with the routers; nil when BFD is off
	checker *health.Checker
	// nextHops are the LB4's addresses facing a router, by family: the
	// next hop of the VIPs of that family.
	nextHops [2]netip.Addr
	lb7s     []lb7Target

	// What reconcile drives: the IPVS table and the VIPs' announcements,
	// and the clock that ends the grace time (time.Now when nil).
	table ipvsTable
	vips  announcer
	now   func() time.Time

	mu           sync.Mutex
	healthy      map[string]bool
	known        map[string]bool // checked enough to be healthy or not
	disabled     bool
	disabledVIPs map[string]bool     // VIP names with a /etc/lb/disable.NAME
	announced    bool                // in service: shouldAnnounce said yes
	routes       map[netip.Addr]bool // the VIP addresses announced now
	changes      []ipvs.Change
}

// lb7Target is an LB7 as this LB4 reaches it: by family, the zero Addr
// where they share no segment of that family. Checks go over IPv4, and
// decide for both families: one HAProxy serves them.
type lb7Target struct {
	name  string
	addrs [2]netip.Addr
}

// ipvsTable is what the LB4 needs of its IPVS table: an *ipvs.Table, over
// the kernel (ipvs.Open) or over ipvstest's in-memory kernel.
type ipvsTable interface {
	Apply(want []ipvs.Desired) ([]ipvs.Change, error)
	Dump() ([]ipvs.Desired, error)
}

// announcer is what the LB4 needs of its BGP speaker to announce and
// withdraw the VIPs: a *bgp.Speaker.
type announcer interface {
	Announce(p netip.Prefix, nextHop netip.Addr) error
	Withdraw(p netip.Prefix) error
}

func (l *lb4) Start(ctx context.Context) error {
	t := l.a.topology()
	// The speaker first: routers and reflectors dial it (see upstreams),
	// and a dial that comes before it listens costs them 1 to 2 s more.
	// It announces nothing before reconcile says so.
	cfg, err := l.a.bgpConfig()
	if err != nil {
		return err
	}
	if cfg.Neighbors, err = l.a.upstreams(topology.RoleRouter, false); err != nil {
		return err
	}
	// Pooled, the LB4's speaker cannot dial (see upstreams): it listens,
	// in its node's namespace.
	cfg.Listen, cfg.Serve = true, l.a.at.goForever
	l.speaker = bgp.New(cfg, l.a.log)
	if err := l.speaker.Start(ctx); err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}
	// BFD only answers the routers, which act on it.
	if l.bfd, err = l.a.startBFD(ctx, l.a.bfdPeers(topology.RoleRouter), false, nil); err != nil {
		l.speaker.Stop()
		return err
	}
	table, err := ipvs.Open(l.a.at.netnsPath())
	if err != nil {
		l.speaker.Stop()
		return err
	}
	l.table = table
	if err := l.init(t); err != nil {
		l.speaker.Stop()
		table.Close()
		return err
	}
	l.vips = l.speaker
	l.disabled, l.disabledVIPs = l.disableExists()
	if err := l.reconcile(); err != nil {
		return err
	}

	h := l.a.node.Settings.Health
	l.checker = health.New(health.Config{
		Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
		Dial: l.a.at.dial(&net.Dialer{KeepAlive: -1}),
	}, l.a.log, l.onHealth)
	go l.checker.Run(ctx, healthTargets(l.lb7s))
	// The grace time ends without a health change to reconcile on.
	grace := time.AfterFunc(announceGrace*h.Interval+time.Millisecond, func() {
		if err := l.reconcile(); err != nil {
			l.a.log.Error("reconcile", "err", err)
		}
	})
	go func() { <-ctx.Done(); grace.Stop() }()
	go l.watchDisable(ctx)
	go l.a.watchPeers(ctx, l.speaker)
	go func() { <-ctx.Done(); l.speaker.Stop(); table.Close() }()
	return nil
}

// init sets up the LB4's view of topology t: its LB7s, none of them
// healthy yet, and the next hop it announces: its own address as the
// routers see it.
func (l *lb4) init(t *topology.Topology) error {
	var err error
	if l.lb7s, err = l.targets(t); err != nil {
		return err
	}
	l.healthy, l.known = map[string]bool{}, map[string]bool{}
	for _, f := range topology.Families {
		for _, r := range t.NodesByRole(topology.RoleRouter) {
			if addr, ok := t.AddressFacing(r.Name, l.a.node.Name, f); ok {
				l.nextHops[f] = addr
				break
			}
		}
	}
	for _, v := range t.VIPs {
		if f := topology.FamilyOf(v.Address); !l.nextHops[f].IsValid() {
			return fmt.Errorf("lb4 %s shares no %s segment with a router to announce VIP %s (%s)", l.a.node.Name, f, v.Name, v.Address)
		}
	}
	return nil
}

// onHealth follows a health change of an LB7.
func (l *lb4) onHealth(s health.State) {
	l.mu.Lock()
	l.healthy[s.Name], l.known[s.Name] = s.Healthy, s.Known
	l.mu.Unlock()
	l.a.event("health", fmt.Sprintf("%s healthy=%v %s", s.Name, s.Healthy, s.LastError))
	if err := l.reconcile(); err != nil {
		l.a.log.Error("reconcile", "err", err)
	}
}

// dir is the directory of the disable file: the node's /etc/lb.
func (l *lb4) dir() string { return l.a.lbDir() }

// clock is the time now, for the grace time.
func (l *lb4) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// disableExists reports whether /etc/lb/disable exists, and the VIPs of
// the topology that have a /etc/lb/disable.NAME.
func (l *lb4) disableExists() (bool, map[string]bool) {
	_, err := os.Stat(filepath.Join(l.dir(), DisableFile))
	vips := map[string]bool{}
	for _, v := range l.a.topology().VIPs {
		if _, err := os.Stat(filepath.Join(l.dir(), DisableVIPFile(v.Name))); err == nil {
			vips[v.Name] = true
		}
	}
	return !errors.Is(err, fs.ErrNotExist), vips
}

// watchDisable follows /etc/lb/disable with inotify: nothing to do while
// nothing changes (a poll wakes the agent ten times a second, which adds
// up over many LB4s in a one-CPU VM), and a change is seen at once. It
// polls every 100 ms should inotify be unavailable.
func (l *lb4) watchDisable(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		err = w.Add(l.dir())
	}
	if err != nil {
		l.a.log.Warn("watch /etc/lb with inotify, polling instead", "err", err)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				l.checkDisable()
			}
		}
	}
	// A change made before the watch began.
	l.checkDisable()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if b := filepath.Base(ev.Name); b == DisableFile || strings.HasPrefix(b, DisableVIPPrefix) {
				l.checkDisable()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// The queue overflowed: events were lost, the file's state
			// was not.
			l.a.log.Warn("watch /etc/lb", "err", err)
			l.checkDisable()
		}
	}
}

// checkDisable withdraws or announces the VIPs when /etc/lb/disable or a
// /etc/lb/disable.NAME came or went since the last look.
func (l *lb4) checkDisable() {
	d, vips := l.disableExists()
	l.mu.Lock()
	changed := d != l.disabled
	var msgs []string
	if changed {
		msgs = append(msgs, fmt.Sprintf("/etc/lb/%s %s", DisableFile, createdOrRemoved(d)))
	}
	seen := map[string]bool{}
	for _, v := range l.a.topology().VIPs {
		if !seen[v.Name] && vips[v.Name] != l.disabledVIPs[v.Name] {
			changed = true
			msgs = append(msgs, fmt.Sprintf("/etc/lb/%s %s", DisableVIPFile(v.Name), createdOrRemoved(vips[v.Name])))
		}
		seen[v.Name] = true
	}
	l.disabled, l.disabledVIPs = d, vips
	l.mu.Unlock()
	for _, m := range msgs {
		l.a.event("maintenance", m)
	}
	if changed {
		if err := l.reconcile(); err != nil {
			l.a.log.Error("reconcile", "err", err)
		}
	}
}

func createdOrRemoved(exists bool) string {
	if exists {
		return "created"
	}
	return "removed"
}

// lb4State is what the LB4's decisions depend on.
type lb4State struct {
	lb7s         []lb7Target     // in topology order
	healthy      map[string]bool // by LB7 name
	known        map[string]bool // by LB7 name: checked enough to be healthy or not
	disabled     bool            // /etc/lb/disable exists
	disabledVIPs map[string]bool // by VIP name: /etc/lb/disable.NAME exists
	announced    bool            // the LB4 is in service (shouldAnnounce said yes)
	graceOver    bool            // announceGrace health intervals have passed since the start
}

// shouldAnnounce says whether the VIPs should be announced in state s.
//
// Never while no LB7 is healthy or /etc/lb/disable exists. Otherwise, an
// LB4 that announces keeps announcing, and a starting LB4 announces once
// every LB7 is healthy: with one LB7 missing from its Maglev table while
// the other LB4s have it, flows ECMP moves to it would reach other LB7s
// than the ones holding them. A first check that times out in a busy lab
// is not proof that the others see that LB7 down; when some LB7 is still
// down after the grace time, and every LB7 has a verdict, the LB4
// announces anyway with what it knows.
func shouldAnnounce(s lb4State) bool {
	anyHealthy, allHealthy, allKnown := false, true, true
	for _, t := range s.lb7s {
		anyHealthy = anyHealthy || s.healthy[t.name]
		allHealthy = allHealthy && s.healthy[t.name]
		allKnown = allKnown && s.known[t.name]
	}
	return anyHealthy && !s.disabled && (s.announced || allHealthy || allKnown && s.graceOver)
}

// vipRoutes is the VIP addresses the LB4 announces in state s, in VIP
// order: none when it is out of service (shouldAnnounce), else every VIP's
// but those withdrawn on their own (/etc/lb/disable.NAME). IPVS keeps
// serving a withdrawn VIP: flows still on their way drain.
func vipRoutes(s lb4State, vips []topology.VIP) []netip.Addr {
	if !shouldAnnounce(s) {
		return nil
	}
	var out []netip.Addr
	for _, v := range vips {
		if !s.disabledVIPs[v.Name] {
			out = append(out, v.Address)
		}
	}
	return out
}

// ipvsPlan is the IPVS state the LB4 wants in state s: [IPVSPlan] of its
// LB7s.
func ipvsPlan(t *topology.Topology, s lb4State, removeFailed bool) []ipvs.Desired {
	dests := make([]LB7Dest, len(s.lb7s))
	for i, d := range s.lb7s {
		dests[i] = LB7Dest{Addrs: d.addrs, Healthy: s.healthy[d.name]}
	}
	return IPVSPlan(t, dests, removeFailed)
}

// setRoute announces VIP address v through a, with the next hop of its
// family, or withdraws it.
func setRoute(a announcer, v netip.Addr, nextHops [2]netip.Addr, announce bool) error {
	p := netip.PrefixFrom(v, v.BitLen())
	var err error
	if announce {
		err = a.Announce(p, nextHops[topology.FamilyOf(v)])
	} else {
		err = a.Withdraw(p)
	}
	if err != nil {
		return fmt.Errorf("bgp %s: %w", p, err)
	}
	return nil
}

// reconcile programs IPVS from the LB7s' health and announces or
// withdraws the VIPs. It is safe to call at any time and repeatedly.
func (l *lb4) reconcile() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.a.node.Settings.Health
	t := l.a.topology()
	s := lb4State{lb7s: l.lb7s, healthy: l.healthy, known: l.known, disabled: l.disabled,
		disabledVIPs: l.disabledVIPs, announced: l.announced}
	changes, err := l.table.Apply(ipvsPlan(t, s, h.RemoveFailed))
	for _, c := range changes {
		l.a.log.Info("ipvs", "change", c.String())
		l.a.event("ipvs", c.String())
	}
	l.changes = append(l.changes, changes...)
	if err != nil {
		return fmt.Errorf("program ipvs: %w", err)
	}
	s.graceOver = l.clock().Sub(l.a.started) > announceGrace*h.Interval
	announce := shouldAnnounce(s)
	want := map[netip.Addr]bool{}
	for _, a := range vipRoutes(s, t.VIPs) {
		want[a] = true
	}
	if l.routes == nil {
		l.routes = map[netip.Addr]bool{}
	}
	// Whole-LB4 changes are one event; a VIP withdrawn or back on its own
	// is an event of its own.
	var vipEvents []string
	for _, v := range t.VIPs {
		if want[v.Address] == l.routes[v.Address] {
			continue
		}
		if err := setRoute(l.vips, v.Address, l.nextHops, want[v.Address]); err != nil {
			return err
		}
		if want[v.Address] {
			l.routes[v.Address] = true
		} else {
			delete(l.routes, v.Address)
		}
		if announce == l.announced {
			verb := map[bool]string{true: "announce", false: "withdraw"}[want[v.Address]]
			vipEvents = append(vipEvents, fmt.Sprintf("%s VIP %s %s", verb, v.Name, v.Address))
		}
	}
	for a := range l.routes {
		if !want[a] { // a VIP the topology no longer has
			if err := setRoute(l.vips, a, l.nextHops, false); err != nil {
				return err
			}
			delete(l.routes, a)
		}
	}
	for _, e := range vipEvents {
		l.a.log.Info("bgp", "change", e)
		l.a.event("bgp", e)
	}
	if announce == l.announced {
		return nil
	}
	l.announced = announce
	l.a.log.Info("bgp", "announced", announce)
	l.a.event("bgp", map[bool]string{true: "announce VIPs", false: "withdraw VIPs"}[announce])
	return nil
}

// LB7Dest is an LB7 as an LB4's IPVS services see it: its address of each
// family facing the LB4 (the zero Addr where it has none) and its health.
type LB7Dest struct {
	Addrs   [2]netip.Addr // by topology.Family
	Healthy bool
}

// IPVSPlan is the IPVS state an LB4 wants: one service per VIP with every
// LB7 (lb7s, in topology order: the same on every LB4) as a tunnel
// destination at its address of the VIP's family (IPIP for IPv4, IPv6 in
// IPv6 for IPv6), the last LB7 first: an LB7 added at runtime comes last
// in the topology, so it goes to the head of the kernel's list, where IPVS
// inserts, and no other destination is re-added (see package ipvs). Each
// one has weight 1 when healthy and 0 otherwise, or left out when
// removeFailed asks to delete failed LB7s.
func IPVSPlan(t *topology.Topology, lb7s []LB7Dest, removeFailed bool) []ipvs.Desired {
	var want []ipvs.Desired
	for _, v := range t.VIPs {
		d := ipvs.Desired{Service: ipvs.Service{Address: v.Address, Port: v.Port, Protocol: v.Protocol, Scheduler: v.Scheduler, Flags: v.Flags}}
		f := topology.FamilyOf(v.Address)
		for _, lb7 := range slices.Backward(lb7s) {
			a := lb7.Addrs[f]
			if !a.IsValid() || !lb7.Healthy && removeFailed {
				continue
			}
			w := 0
			if lb7.Healthy {
				w = 1
			}
			d.Destinations = append(d.Destinations, ipvs.Destination{Address: a, Weight: w})
		}
		want = append(want, d)
	}
	return want
}

// Ready when every LB7 is healthy and the VIPs are announced (or the LB4
// is disabled on purpose).
func (l *lb4) Ready() (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.lb7s {
		if !l.healthy[t.name] {
			return false, t.name + " not healthy yet"
		}
	}
	if !l.announced && !l.disabled {
		return false, "VIPs not announced"
	}
	return true, ""
}

// LB4Status is what `lab status` shows of an LB4.
type LB4Status struct {
	Announced bool `json:"announced"`
	Disabled  bool `json:"disabled"`
	// DisabledVIPs names the VIPs withdrawn on their own
	// (/etc/lb/disable.NAME), sorted.
	DisabledVIPs []string       `json:"disabled_vips,omitempty"`
	Health       []health.State `json:"health"`
	Services     []ipvs.Desired `json:"services"`
	Peers        []bgp.Peer     `json:"peers"`
	BFD          []bfd.Session  `json:"bfd,omitempty"` // sessions with the routers
}

func (l *lb4) Status() any {
	st := LB4Status{}
	l.mu.Lock()
	st.Announced, st.Disabled = l.announced, l.disabled
	st.DisabledVIPs = slices.Sorted(maps.Keys(l.disabledVIPs))
	l.mu.Unlock()
	if l.checker != nil {
		st.Health = l.checker.States()
	}
	st.Services, _ = l.table.Dump()
	st.Peers, _ = l.speaker.Peers(context.Background())
	st.BFD = bfdSessions(l.bfd)
	return st
}

func (l *lb4) Summary() string {
	st := l.Status().(LB4Status)
	healthy := 0
	for _, h := range st.Health {
		if h.Healthy {
			healthy++
		}
	}
	state := "announced"
	switch {
	case st.Disabled:
		state = "disabled (/etc/lb/disable)"
	case !st.Announced:
		state = "withdrawn"
	}
	parts := []string{state}
	for _, v := range st.DisabledVIPs {
		parts = append(parts, fmt.Sprintf("%s withdrawn (/etc/lb/%s)", v, DisableVIPFile(v)))
	}
	parts = append(parts, fmt.Sprintf("LB7s healthy %d/%d", healthy, len(st.Health)), peersUp(st.Peers))
	if b := bfdSummary(st.BFD); b != "" {
		parts = append(parts, b)
	}
	for _, s := range st.Services {
		parts = append(parts, fmt.Sprintf("%s %s %d dests", s.Service, s.Service.Scheduler, len(s.Destinations)))
	}
	return strings.Join(parts, "; ")
}
