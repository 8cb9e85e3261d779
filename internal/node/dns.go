package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/lab-lb/lab/internal/health"
	"github.com/lab-lb/lab/internal/nameserver"
	"github.com/lab-lb/lab/internal/resolver"
	"github.com/lab-lb/lab/internal/topology"
)

// dnsPort is where name servers listen, over UDP and TCP.
const dnsPort = 53

// dnsNode is tier 0: an authoritative name server for the lab's zone. Each
// service name answers with the addresses of its VIPs that serve, as the
// reference lab's gdnsd did: the node checks every VIP address end to end
// (GET /healthcheck on VIP:port, through the routers, an LB4 and an LB7,
// whose HAProxy answers it), with the rise and fall of its health
// settings. A VIP that no router can reach (every LB4 withdrew it) or that
// no LB7 can serve fails its check and leaves the answers.
type dnsNode struct {
	a       *agent
	server  *nameserver.Server
	checker *health.Checker

	mu      sync.Mutex
	targets map[string]dnsTarget // by health target name
}

// dnsTarget is one VIP address the node checks.
type dnsTarget struct {
	vip  string
	addr netip.Addr
}

// Zone is what the lab's name servers answer for in topology t: the zone
// of t.DNS, its name servers (the dns nodes, as NODE.ZONE) and each
// service name with the addresses of its VIPs.
func Zone(t *topology.Topology) nameserver.Zone {
	z := nameserver.Zone{
		Origin:   t.DNS.Zone,
		TTL:      t.DNS.TTL,
		FailOpen: t.DNS.FailOpen,
		Services: map[string][]netip.Addr{},
	}
	for _, n := range t.NodesByRole(topology.RoleDNS) {
		z.NS = append(z.NS, nameserver.Host{Name: n.Name + "." + t.DNS.Zone, Addrs: nodeAddrs(n)})
	}
	for _, s := range t.ServiceNames() {
		for _, v := range s.VIPs {
			if !slices.Contains(z.Services[s.Name], v.Address) {
				z.Services[s.Name] = append(z.Services[s.Name], v.Address)
			}
		}
	}
	return z
}

// NameServers are the addresses the lab's clients ask: every address of
// every dns node, IPv4 first, on port 53. None when the lab has no dns
// node.
func NameServers(t *topology.Topology) []netip.AddrPort {
	var out []netip.AddrPort
	for _, f := range topology.Families {
		for _, n := range t.NodesByRole(topology.RoleDNS) {
			for _, a := range nodeAddrs(n) {
				if topology.FamilyOf(a) == f {
					out = append(out, netip.AddrPortFrom(a, dnsPort))
				}
			}
		}
	}
	return out
}

// ResolvConf is the /etc/resolv.conf of the lab's nodes: its name servers
// (at most three, as the C library reads), the zone as search domain, and
// a short timeout; "" when the lab has no dns node.
func ResolvConf(t *topology.Topology) string {
	ns := NameServers(t)
	if len(ns) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# written by lab: the lab's own name servers\n")
	for _, s := range ns[:min(len(ns), 3)] {
		fmt.Fprintf(&b, "nameserver %s\n", s.Addr())
	}
	fmt.Fprintf(&b, "search %s\noptions timeout:1 attempts:2\n", strings.TrimSuffix(t.DNS.Zone, "."))
	return b.String()
}

// nodeAddrs lists the interface addresses of n, in interface order.
func nodeAddrs(n *topology.Node) []netip.Addr {
	var out []netip.Addr
	for _, i := range n.Interfaces {
		for _, p := range i.Addresses {
			out = append(out, p.Addr())
		}
	}
	return out
}

func (d *dnsNode) Start(ctx context.Context) error {
	t := d.a.topology()
	d.server = nameserver.New(Zone(t), d.a.log)
	addr := fmt.Sprintf(":%d", dnsPort)
	udp, err := d.a.at.listenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listen for dns on udp %s: %w", addr, err)
	}
	tcp, err := d.a.at.listen(ctx, net.ListenConfig{KeepAlive: -1}, "tcp", addr)
	if err != nil {
		udp.Close()
		return fmt.Errorf("listen for dns on tcp %s: %w", addr, err)
	}
	go func() {
		if err := d.server.Serve(ctx, udp, tcp); err != nil {
			d.a.log.Error("dns server", "err", err)
		}
	}()

	var targets []health.Target
	d.targets = map[string]dnsTarget{}
	for _, v := range t.VIPs {
		if len(v.Names) == 0 {
			continue
		}
		if v.Protocol != "tcp" {
			// No HTTP check through a UDP service: always answered.
			d.server.SetUp(v.Address, true)
			continue
		}
		ap := netip.AddrPortFrom(v.Address, v.Port)
		name := t.VIPLabel(v) + " " + ap.String()
		d.targets[name] = dnsTarget{vip: t.VIPLabel(v), addr: v.Address}
		targets = append(targets, health.Target{Name: name, Addr: ap, Path: "/healthcheck"})
	}
	h := d.a.node.Settings.Health
	d.checker = health.New(health.Config{
		Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
		Dial: d.a.at.dial(&net.Dialer{KeepAlive: -1}),
	}, d.a.log, d.onHealth)
	go d.checker.Run(ctx, targets)
	return nil
}

// onHealth puts a VIP address in the answers or takes it out.
func (d *dnsNode) onHealth(s health.State) {
	d.mu.Lock()
	tg, ok := d.targets[s.Name]
	d.mu.Unlock()
	if !ok {
		return
	}
	d.server.SetUp(tg.addr, s.Healthy)
	if s.Healthy {
		d.a.event(EventDNSKind, fmt.Sprintf("%s %s in the answers", tg.vip, tg.addr))
	} else {
		d.a.event(EventDNSKind, fmt.Sprintf("%s %s out of the answers: %s", tg.vip, tg.addr, s.LastError))
	}
}

// EventDNSKind is the kind of the events of a dns node.
const EventDNSKind = "dns"

// Ready once every VIP address has passed its checks.
func (d *dnsNode) Ready() (bool, string) {
	if d.checker == nil {
		return false, "not started"
	}
	for _, s := range d.checker.States() {
		if !s.Healthy {
			return false, s.Name + " not answering its check yet"
		}
	}
	return true, ""
}

// DNSStatus is what `lab status` shows of a dns node.
type DNSStatus struct {
	Zone     string                 `json:"zone"`
	TTL      time.Duration          `json:"ttl_ns"`
	FailOpen bool                   `json:"fail_open,omitempty"`
	Names    []nameserver.NameState `json:"names"`
	Health   []health.State         `json:"health"`
}

func (d *dnsNode) Status() any {
	t := d.a.topology()
	st := DNSStatus{Zone: t.DNS.Zone, TTL: t.DNS.TTL, FailOpen: t.DNS.FailOpen}
	if d.server != nil {
		st.Names = d.server.Names()
	}
	if d.checker != nil {
		st.Health = d.checker.States()
	}
	return st
}

func (d *dnsNode) Summary() string {
	st := d.Status().(DNSStatus)
	up := 0
	for _, h := range st.Health {
		if h.Healthy {
			up++
		}
	}
	return fmt.Sprintf("zone %s, %d names, VIP addresses answered %d/%d", strings.TrimSuffix(st.Zone, "."), len(st.Names), up, len(st.Health))
}

// labResolver is how the node's clients look service names up: through
// the lab's name servers, over sockets made in the node, with a cache that
// honours TTLs. nil when the lab has no dns node.
func (a *agent) labResolver() *resolver.Resolver {
	ns := NameServers(a.topology())
	if len(ns) == 0 {
		return nil
	}
	return resolver.New(ns, resolver.Config{
		Log: a.log,
		Exchange: func(ctx context.Context, m *dns.Msg, server netip.AddrPort) (*dns.Msg, error) {
			var resp *dns.Msg
			err := a.at.within(func() (err error) {
				resp, err = resolver.Exchange(ctx, m, server)
				return err
			})
			return resp, err
		},
	})
}

// netResolver is a Go resolver that asks the lab's name servers ns from
// inside the node, one after the other: what lab curl uses for a URL with
// a service name.
func (a *agent) netResolver(ns []netip.AddrPort) *net.Resolver {
	dial := a.at.dial(&net.Dialer{Timeout: time.Second})
	var next atomic.Uint32
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		s := ns[int(next.Add(1)-1)%len(ns)]
		return dial(ctx, network, s.String())
	}}
}
