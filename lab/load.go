package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/traffic"
)

// LoadConfig describes a load; zero values take the defaults of the load
// engine (200 workers downloading /10M, read timeout 3s, stall threshold
// 1s, and so on).
type LoadConfig struct {
	// Mode is the kind of load: LoadDownloads (the default) counts the
	// connections a change breaks; LoadRequests measures latency, errors
	// per second and the time to repair.
	Mode LoadMode
	// Rate is a request load's requests a second, over every worker
	// (each sends Rate/Workers a second); default 100.
	Rate float64
	// KeepAlive makes a request load reuse each connection for the
	// worker's next request; without it every request opens a new one.
	KeepAlive bool
	// From is the node the load runs from; default: the first client.
	From string
	// VIPs names the targets: VIP names, addresses (every TCP VIP on the
	// address) or address:port pairs. Empty means every TCP VIP of the
	// topology, unless Names are given.
	VIPs []string
	// Names are service names, looked up through the lab's name servers
	// before every connection (a client with a cache that honours the
	// TTL): a name in the lab's zone (www), or a fully qualified name. The
	// port is that of the name's VIPs (80 for a name the lab does not
	// serve). Failed lookups count apart (Report.DNSFailed).
	Names []string
	// Sources are the source addresses; empty means every loopback
	// address of From in the topology (none: the kernel chooses).
	Sources []netip.Addr
	// Workers is the number of concurrent connections (downloads) or of
	// request loops (requests).
	Workers int
	// Path is the path each connection downloads.
	Path string
	// ReadSize is the largest number of bytes one read takes.
	ReadSize int
	// Pause is the longest random pause between two reads; negative means
	// none.
	Pause time.Duration
	// ReadTimeout bounds every read: a read that waits longer breaks the
	// connection.
	ReadTimeout time.Duration
	// StallThreshold is the wait above which a connection that still ends
	// well counts as interrupted; it must be below ReadTimeout.
	StallThreshold time.Duration
	// ConnectTimeout bounds the TCP handshake.
	ConnectTimeout time.Duration
	// EarlyStop is the chance, after each read, to close the connection
	// early (a success); negative means never.
	EarlyStop float64
	// Seed makes the random choices reproducible; 0 takes one from the
	// clock.
	Seed int64
}

// LoadMode is the kind of a load.
type LoadMode string

// Load modes.
const (
	// LoadDownloads runs many long downloads, read slowly, one connection
	// each: it counts the connections a change breaks.
	LoadDownloads LoadMode = "downloads"
	// LoadRequests sends short requests at a fixed rate (open loop), a new
	// connection each unless KeepAlive: it measures latency and errors per
	// second and how long a change degraded the service.
	LoadRequests LoadMode = "requests"
)

// WithDefaults returns c with its zero tunables set to the load engine's
// defaults for its mode (From, VIPs and Sources are left as they are).
func (c LoadConfig) WithDefaults() LoadConfig {
	d := c.traffic(traffic.Config{}).WithDefaults()
	c.Mode = LoadMode(d.Mode)
	c.Workers, c.Path, c.ReadSize, c.Pause = d.Workers, d.Path, d.ReadSize, d.Pause
	c.EarlyStop, c.ReadTimeout, c.StallThreshold, c.ConnectTimeout = d.EarlyStop, d.ReadTimeout, d.StallThreshold, d.ConnectTimeout
	if c.Mode == LoadRequests {
		c.Rate = d.Rate * float64(d.Workers)
	}
	return c
}

// traffic returns the load engine's configuration of c, into which it
// copies the resolved targets and sources of tc.
func (c LoadConfig) traffic(tc traffic.Config) traffic.Config {
	tc.Mode, tc.KeepAlive = traffic.Mode(c.Mode), c.KeepAlive
	tc.Workers, tc.Path, tc.ReadSize, tc.Pause = c.Workers, c.Path, c.ReadSize, c.Pause
	tc.EarlyStop, tc.ReadTimeout, tc.StallThreshold, tc.ConnectTimeout = c.EarlyStop, c.ReadTimeout, c.StallThreshold, c.ConnectTimeout
	tc.Seed = c.Seed
	if c.Rate != 0 {
		workers := c.Workers
		if workers == 0 {
			workers = traffic.DefaultRequestWorkers
		}
		tc.Rate = c.Rate / float64(workers)
	}
	return tc
}

// loadLease is how long a load runs on once its owner (this process) has
// stopped asking for it: a `lab load` killed with SIGKILL leaves no load
// running for ever. A Load asks every loadLease/4.
const loadLease = time.Minute

// Load is a load running from a node, inside its agent: it outlives the
// context that started it and runs until Stop, until the node's agent
// stops, or until this process has been gone for a minute (its lease).
type Load struct {
	// Node is the node the load runs from and ID its id there.
	Node, ID string
	// Targets and Sources are the resolved VIP:port pairs and source
	// addresses.
	Targets []netip.AddrPort
	Sources []netip.Addr

	lab      *Lab
	stopKeep context.CancelFunc
}

// StartLoad resolves cfg against the lab's topology and starts the load
// from cfg.From.
func (l *Lab) StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	t, err := l.topology()
	if err != nil {
		return nil, fmt.Errorf("start load: %w", err)
	}
	if cfg.From == "" {
		if cfg.From, err = firstClient(t); err != nil {
			return nil, fmt.Errorf("start load: %w", err)
		}
	}
	tc, err := loadConfig(t, cfg)
	if err != nil {
		return nil, fmt.Errorf("start load: %w", err)
	}
	req := node.NewLoadRequest(tc)
	req.Lease = loadLease.String()
	var started node.LoadStarted
	if err := l.client.PostJSON(ctx, "/v1/nodes/"+url.PathEscape(cfg.From)+"/load", req, &started); err != nil {
		return nil, fmt.Errorf("start load from %s: %w", cfg.From, err)
	}
	ld := &Load{Node: cfg.From, ID: started.ID, Targets: tc.Targets, Sources: tc.Sources, lab: l}
	var keepCtx context.Context
	keepCtx, ld.stopKeep = context.WithCancel(context.Background())
	go ld.keep(keepCtx)
	return ld, nil
}

// keep asks for the load's progress until ctx ends, which renews its
// lease on the node. A failed renewal is retried at the next tick; should
// the lease run out all the same, Progress and Stop say so.
func (ld *Load) keep(ctx context.Context) {
	tick := time.NewTicker(loadLease / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, loadLease/4)
		_, _ = ld.Progress(pctx)
		cancel()
	}
}

// path returns the control API path of the load, with suffix.
func (ld *Load) path(suffix string) string {
	return "/v1/nodes/" + url.PathEscape(ld.Node) + "/load/" + url.PathEscape(ld.ID) + suffix
}

// Progress returns the load's live figures.
func (ld *Load) Progress(ctx context.Context) (*LoadProgress, error) {
	var lp node.LoadProgress
	if err := ld.lab.client.GetJSON(ctx, ld.path(""), &lp); err != nil {
		return nil, fmt.Errorf("progress of load %s on %s: %w", ld.ID, ld.Node, err)
	}
	return progressFrom(lp.Progress()), nil
}

// WatchLoad returns the live figures of the load id running on node,
// whoever started it (Lab.Loads lists them), without renewing its lease:
// watching a load does not keep alive one whose owner is gone.
func (l *Lab) WatchLoad(ctx context.Context, nodeName, id string) (*LoadProgress, error) {
	var lp node.LoadProgress
	path := "/v1/nodes/" + url.PathEscape(nodeName) + "/load/" + url.PathEscape(id) + "?" + control.LoadWatchParam + "=1"
	if err := l.client.GetJSON(ctx, path, &lp); err != nil {
		return nil, fmt.Errorf("progress of load %s on %s: %w", id, nodeName, err)
	}
	return progressFrom(lp.Progress()), nil
}

// Stop stops the load and returns its report; the node forgets the load,
// so a second Stop fails. Connections in progress are cut and count as ok.
func (ld *Load) Stop(ctx context.Context) (*Report, error) {
	rep, err := ld.stop(ctx)
	if err != nil {
		return nil, err
	}
	return reportFrom(rep), nil
}

// stop is Stop with the load engine's report.
func (ld *Load) stop(ctx context.Context) (*traffic.Report, error) {
	ld.stopKeep()
	var rep traffic.Report
	if err := ld.lab.client.PostJSON(ctx, ld.path("/stop"), nil, &rep); err != nil {
		return nil, fmt.Errorf("stop load %s on %s: %w", ld.ID, ld.Node, err)
	}
	return &rep, nil
}

// firstClient is the node a load runs from when none is named.
func firstClient(t *topology.Topology) (string, error) {
	clients := t.NodesByRole(topology.RoleClient)
	if len(clients) == 0 {
		return "", errors.New("no node to run the load from: the topology has no client; name one")
	}
	return clients[0].Name, nil
}

// loadConfig resolves cfg against t into the load engine's configuration:
// the node, the VIPs and the source addresses.
func loadConfig(t *topology.Topology, cfg LoadConfig) (traffic.Config, error) {
	if cfg.From == "" {
		var err error
		if cfg.From, err = firstClient(t); err != nil {
			return traffic.Config{}, err
		}
	}
	n, ok := t.Node(cfg.From)
	if !ok {
		return traffic.Config{}, fmt.Errorf("no node %s in topology %s", cfg.From, t.Name)
	}
	sources := slices.Clone(cfg.Sources)
	if len(sources) == 0 {
		sources = slices.Clone(n.Loopback)
	}
	var targets []netip.AddrPort
	if len(cfg.VIPs) > 0 || len(cfg.Names) == 0 {
		var err error
		if targets, err = loadTargets(t, cfg.VIPs, sources); err != nil {
			return traffic.Config{}, err
		}
	}
	names, err := nameTargets(t, cfg.Names)
	if err != nil {
		return traffic.Config{}, err
	}
	return cfg.traffic(traffic.Config{Targets: targets, Names: names, Sources: sources}), nil
}

// loadTargets resolves the VIPs named in names (names, addresses or
// address:port pairs) into targets, in the topology's order, each once.
// No name means every TCP VIP that sources can reach (every one when
// sources is empty). A VIP of a family without a source is an error.
func loadTargets(t *topology.Topology, names []string, sources []netip.Addr) ([]netip.AddrPort, error) {
	var has4, has6 bool
	for _, s := range sources {
		if s.Unmap().Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	reachable := func(a netip.Addr) bool {
		return len(sources) == 0 || (a.Unmap().Is4() && has4) || (!a.Unmap().Is4() && has6)
	}
	tcp := func(v *topology.VIP) bool { return v.Protocol == "" || v.Protocol == "tcp" }

	chosen := make([]bool, len(t.VIPs))
	if len(names) == 0 {
		found := false
		for i := range t.VIPs {
			if v := &t.VIPs[i]; tcp(v) && reachable(v.Address) {
				chosen[i], found = true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("topology %s has no TCP VIP that the sources can reach", t.Name)
		}
	}
	var errs []error
	for _, name := range names {
		matched := t.VIPsNamed(name)
		if len(matched) == 0 {
			errs = append(errs, fmt.Errorf("no VIP %q in topology %s (VIPs: %s)", name, t.Name, vipNames(t)))
			continue
		}
		for _, i := range matched {
			v := &t.VIPs[i]
			switch {
			case !tcp(v):
				errs = append(errs, fmt.Errorf("VIP %s (%s port %d) is %s: the load speaks TCP", v.Name, v.Address, v.Port, v.Protocol))
			case !reachable(v.Address):
				errs = append(errs, fmt.Errorf("VIP %s (%s): no source address of its family", v.Name, v.Address))
			default:
				chosen[i] = true
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var targets []netip.AddrPort
	for i, v := range t.VIPs {
		if chosen[i] {
			targets = append(targets, netip.AddrPortFrom(v.Address, v.Port))
		}
	}
	return targets, nil
}

// nameTargets resolves service names against the topology: a name with no
// dot is in the lab's zone; the port is that of the name's first VIP. The
// lab must have a dns node to ask.
func nameTargets(t *topology.Topology, names []string) ([]traffic.NameTarget, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if len(t.NodesByRole(topology.RoleDNS)) == 0 {
		return nil, fmt.Errorf("service names %s: topology %s has no dns node to ask", strings.Join(names, ", "), t.Name)
	}
	var out []traffic.NameTarget
	for _, n := range names {
		fqdn := strings.ToLower(n)
		if !strings.Contains(strings.TrimSuffix(fqdn, "."), ".") {
			fqdn += "." + t.DNS.Zone
		}
		if !strings.HasSuffix(fqdn, ".") {
			fqdn += "."
		}
		port := uint16(80)
		for _, s := range t.ServiceNames() {
			if s.Name == fqdn && len(s.VIPs) > 0 {
				port = s.VIPs[0].Port
			}
		}
		out = append(out, traffic.NameTarget{Name: fqdn, Port: port})
	}
	return out, nil
}

// vipNames lists the topology's VIP names for messages.
func vipNames(t *topology.Topology) string {
	if len(t.VIPs) == 0 {
		return "none"
	}
	names := make([]string, len(t.VIPs))
	for i, v := range t.VIPs {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}

// LoadRepairs computes the repairs of a request load's report after the
// failures injected into the lab during it (kill, freeze, revive, link,
// impair, add, remove: the lab's event log).
func (l *Lab) LoadRepairs(ctx context.Context, rep *Report) (*Repairs, error) {
	evs, err := l.Events(ctx)
	if err != nil {
		return nil, fmt.Errorf("injections during the load: %w", err)
	}
	return rep.Repairs(injections(evs, rep.Start, rep.End))
}

// injections returns the failures injected into the lab in [from, to), as
// "kill lb4-2" or "link lb4-2 r1 down", from its event log.
func injections(evs []Event, from, to time.Time) []Injection {
	var out []Injection
	for _, e := range evs {
		if e.Kind != EventInject || e.Time.Before(from) || !e.Time.Before(to) {
			continue
		}
		head, _, _ := strings.Cut(e.Msg, ":")
		verb, rest, _ := strings.Cut(head, " ")
		label := verb + " " + e.Node
		if rest != "" {
			label += " " + rest
		}
		out = append(out, Injection{Label: label, At: e.Time})
	}
	return out
}
