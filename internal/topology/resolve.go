package topology

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lab-lb/lab/internal/yamlerr"
)

const (
	maxNameLen         = 15 // node and segment names are interface names
	maxTopologyNameLen = 24
	maxVIPNameLen      = 63
	maxCount           = 999
	minMTU, maxMTU     = 1280, 9000
	defaultASN         = 65000
	defaultP2PPool     = "100.64.0.0/16"
)

// The DNS tier's lab-wide defaults and bounds (dns:). They live here, with
// the other lab-wide defaults: configs/defaults.yaml holds node settings.
const (
	defaultZone    = "example.org."
	defaultTTL     = 5 * time.Second // short: a failed VIP leaves the caches soon
	minTTL, maxTTL = time.Second, time.Hour
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// reservedName reports names that would clash with interfaces or sysctl
// directories that exist in every namespace.
func reservedName(s string) bool {
	switch s {
	case "lo", "all", "default", "tunl0", "ip6tnl0", "sit0", "gre0", "gretap0",
		"erspan0", "ip6gre0", "ip6gretap0":
		return true
	}
	return false
}

// resolver turns a decoded rawFile into a Topology, reporting every problem.
type resolver struct {
	c     *collector
	file  string
	root  *yaml.Node
	raw   rawFile
	cfg   *rawConfigs
	once  map[*yaml.Node]bool
	defs  map[string]*def
	pool  [2]netip.Prefix // p2p-pool by family; invalid when absent or wrong
	poolN [2]*yaml.Node

	zone     string          // dns.zone, or its default
	vipPool  [2]netip.Prefix // vip-pool by family; invalid when absent or wrong
	vipPoolN [2]*yaml.Node
	vipEnts  []*vipEntry
	vipAddrs []vipAddr // every VIP address, in VIP order
	segs     []*segEntry
	entries  []*nodeEntry
	members  []*member
	links    []*p2pLink
}

// vipAddr is the address of a VIP and the node it was written in: its
// address, or the VIP itself for an address from the pool.
type vipAddr struct {
	addr netip.Addr
	node *yaml.Node
}

// vipEntry is one item of vips: one VIP per family it has an address of.
type vipEntry struct {
	v      VIP           // all but the address
	node   *yaml.Node    // the list item
	addr   [2]netip.Addr // by family, pinned or allocated
	addrN  [2]*yaml.Node // where a pinned address was written
	pool   bool          // written without an address: it takes them from vip-pool
	namesN []*yaml.Node  // where each of v.Names was written
}

type segEntry struct {
	name    string
	key     *yaml.Node
	prefix  [2]netip.Prefix // by family; invalid when absent or wrong
	prefixN [2]*yaml.Node
	mtu     int
	members []*member
}

type nodeEntry struct {
	name     string
	key      *yaml.Node
	node     *yaml.Node
	raw      rawNode
	path     string
	role     Role // "" when wrong
	group    bool
	members  []*member
	items    []*linkItem
	loopback []netip.Addr
	settings Settings
}

// linkItem is one resolved item of a node entry's links.
type linkItem struct {
	v      value
	target string
	seg    *segEntry     // set for a segment
	peer   *member       // set for a point-to-point link
	pin    [2]netip.Addr // pinned address by family
	pinN   [2]*yaml.Node
}

type member struct {
	e      *nodeEntry
	index  int // within its group, from 0
	name   string
	ifaces []*iface
	routes []Route
}

type iface struct {
	item *linkItem // nil for a link declared by the peer only
	seg  *segEntry
	peer *member
	link *p2pLink
	addr [2]netip.Prefix // by family
}

type p2pLink struct {
	a, b     *member
	aIf, bIf *iface
	item     *linkItem // where the link was first declared
}

type defKind int

const (
	defSegment defKind = iota
	defNode
	defGroup
	defMember
)

// def is what a name stands for.
type def struct {
	kind defKind
	line int
	seg  *segEntry
	e    *nodeEntry
	m    *member
}

func (d *def) String() string {
	switch d.kind {
	case defSegment:
		return "segment " + d.seg.name
	case defGroup:
		return "group " + d.e.name
	case defMember:
		return fmt.Sprintf("member %s of group %s", d.m.name, d.e.name)
	}
	return "node " + d.e.name
}

func (m *member) ifaceOn(s *segEntry) *iface {
	for _, f := range m.ifaces {
		if f.seg == s {
			return f
		}
	}
	return nil
}

// resolve parses and resolves a topology file. It returns nil when the file
// is not even a mapping; otherwise a topology that is valid only if c holds
// no problems.
func resolve(c *collector, file string, data []byte, cfg *rawConfigs) *Topology {
	root := document(c, file, data)
	if root == nil {
		return nil
	}
	if root = yamlerr.Deref(root); root == nil || yamlerr.IsNull(root) {
		c.at(root, "empty topology (want a mapping with name and nodes)")
		return nil
	}
	r := &resolver{c: c, file: file, root: root, cfg: cfg, once: map[*yaml.Node]bool{}, defs: map[string]*def{}}
	decode(c, file, root, &r.raw)
	if root.Kind != yaml.MappingNode {
		return nil // The checker said so.
	}
	t := &Topology{File: file}
	t.Name = r.name()
	t.BGP.ASN = r.asn()
	t.DNS = r.dns()
	r.zone = t.DNS.Zone
	r.vips()
	r.p2pPool()
	r.segments()
	r.nodes()
	r.register()
	r.linkItems()
	r.interfaces()
	r.pins()
	r.allocateSegments()
	r.allocateLinks()
	r.loopbacks()
	t.VIPPool = r.vipPoolPrefixes()
	t.VIPs = r.allocateVIPs()
	r.nameServers()
	r.vipClashes()
	r.vipServers(len(t.VIPs))
	r.vipFamilies()
	r.settings()
	r.routes()
	t.BGP.RouteReflectors = r.reflectors()
	r.fill(t)
	return t
}

// atOnce reports a problem at n unless one was already reported there.
func (r *resolver) atOnce(n *yaml.Node, format string, args ...any) {
	if r.once[n] {
		return
	}
	r.once[n] = true
	r.c.at(n, format, args...)
}

// keyNode returns the key node of a top-level key, or the root.
func (r *resolver) keyNode(key string) *yaml.Node {
	for i := 0; i+1 < len(r.root.Content); i += 2 {
		if k := yamlerr.Deref(r.root.Content[i]); k != nil && k.Value == key {
			return k
		}
	}
	return r.root
}

// valueOf returns the value of a top-level key node, or nil.
func (r *resolver) valueOf(key *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(r.root.Content); i += 2 {
		if yamlerr.Deref(r.root.Content[i]) == key {
			return yamlerr.Deref(r.root.Content[i+1])
		}
	}
	return nil
}

// required returns the scalar of v, reporting it missing at parent.
func (r *resolver) required(v value, parent *yaml.Node, field string) (string, bool) {
	s, ok := v.str()
	if !ok && v.Node == nil {
		r.c.atField(parent, field, "required")
	}
	return s, ok
}

// byFamily parses each of vs, at most one per family, reporting problems
// at their items; it returns what parsed by family with its node.
func byFamily[T any](r *resolver, vs values, parse func(string) (T, string), family func(T) Family) (out [2]T, at [2]*yaml.Node) {
	for _, v := range vs {
		s, ok := v.str()
		if !ok {
			continue
		}
		x, problem := parse(s)
		if problem != "" {
			r.c.at(v.Node, "%s", problem)
			continue
		}
		f := family(x)
		if at[f] != nil {
			r.c.at(v.Node, "a second %s value (want at most one per family; the first is at line %d)", f, at[f].Line)
			continue
		}
		out[f], at[f] = x, v.Node
	}
	return out, at
}

func addrFamily(a netip.Addr) Family     { return FamilyOf(a) }
func prefixFamily(p netip.Prefix) Family { return FamilyOf(p.Addr()) }

// present reports whether vs holds anything, reporting it missing at parent.
func (r *resolver) present(vs values, parent *yaml.Node, field string) bool {
	if vs == nil {
		r.c.atField(parent, field, "required")
		return false
	}
	return true
}

func (r *resolver) name() string {
	s, ok := r.required(r.raw.Name, r.root, "name")
	switch {
	case !ok:
	case !nameRE.MatchString(s):
		r.c.at(r.raw.Name.Node, "bad name %q (want [a-z][a-z0-9-]*)", s)
	case len(s) > maxTopologyNameLen:
		r.c.at(r.raw.Name.Node, "name %q is longer than %d characters", s, maxTopologyNameLen)
	}
	return s
}

// checkName reports a bad node, group or segment name written at key.
func (r *resolver) checkName(key *yaml.Node, name string) {
	switch {
	case !nameRE.MatchString(name):
		r.c.at(key, "bad name %q (want [a-z][a-z0-9-]*)", name)
	case len(name) > maxNameLen:
		r.c.at(key, "name %q is longer than %d characters", name, maxNameLen)
	case reservedName(name):
		r.c.at(key, "name %q is reserved (an interface or sysctl directory has it)", name)
	}
}

func (r *resolver) asn() uint32 {
	v := r.raw.BGP.V.ASN
	s, ok := v.str()
	if !ok {
		return defaultASN
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		r.c.at(v.Node, "%q is not an AS number (want 1-4294967295)", s)
	}
	return uint32(n)
}

// dns reads the dns: block: the zone, written with or without its
// trailing dot, and the TTL of the answers, whole seconds.
func (r *resolver) dns() DNS {
	d, raw := DNS{Zone: defaultZone, TTL: defaultTTL}, r.raw.DNS.V
	if s, ok := raw.Zone.str(); ok {
		if z, problem := fqdn(s); problem != "" {
			r.c.at(raw.Zone.Node, "bad zone %q: %s", s, problem)
		} else {
			d.Zone = z
		}
	}
	if s, ok := raw.TTL.str(); ok {
		ttl, err := time.ParseDuration(s)
		switch {
		case err != nil:
			r.c.at(raw.TTL.Node, "%q is not a duration (want e.g. 5s)", s)
		case ttl%time.Second != 0:
			r.c.at(raw.TTL.Node, "ttl %s must be whole seconds", s)
		case ttl < minTTL || ttl > maxTTL:
			r.c.at(raw.TTL.Node, "ttl %s is out of range (want 1s to 1h)", s)
		default:
			d.TTL = ttl
		}
	}
	d.FailOpen = conv{c: r.c}.boolean(raw.FailOpen)
	return d
}

// vips reads the VIPs as written; allocateVIPs gives addresses to those
// written without one.
func (r *resolver) vips() {
	type key struct {
		addr  netip.Addr
		port  uint16
		proto string
	}
	names := map[string]int{}
	keys := map[key]int{}
	for i, it := range r.raw.VIPs {
		if it.Node == nil {
			continue
		}
		raw, path := it.V, fmt.Sprintf("vips[%d]", i)
		v := VIP{Name: fmt.Sprintf("vip%d", i+1), Port: 80, Protocol: "tcp", Scheduler: "mh"}
		if s, ok := raw.Name.str(); ok {
			switch {
			case !nameRE.MatchString(s):
				r.c.at(raw.Name.Node, "bad name %q (want [a-z][a-z0-9-]*)", s)
			case len(s) > maxVIPNameLen:
				r.c.at(raw.Name.Node, "name %q is longer than %d characters", s, maxVIPNameLen)
			case strings.HasSuffix(s, "-"):
				r.c.at(raw.Name.Node, "name %q ends with '-' (it is a DNS label too: %s.ZONE)", s, s)
			}
			v.Name = s
		}
		if j, dup := names[v.Name]; dup {
			r.c.atField(cmp.Or(raw.Name.Node, it.Node), path+".name", "name %q is already used by vips[%d]", v.Name, j)
		} else {
			names[v.Name] = i
		}
		e := &vipEntry{node: it.Node, pool: absent(raw.Address)}
		r.vipEnts = append(r.vipEnts, e)
		v.Names, e.namesN = r.vipNames(v.Name, cmp.Or(raw.Name.Node, it.Node), raw.Names)
		if !e.pool {
			e.addr, e.addrN = byFamily(r, raw.Address, parseAddr, addrFamily)
		} else if absent(r.raw.VIPPool) {
			r.c.atField(it.Node, path, "no address, and no vip-pool to allocate one from (add address: or vip-pool:)")
		}
		if s, ok := raw.Port.str(); ok {
			n, err := strconv.ParseUint(s, 10, 16)
			if err != nil || n == 0 {
				r.c.at(raw.Port.Node, "%q is not a port (want 1-65535)", s)
			}
			v.Port = uint16(n)
		}
		if s, ok := raw.Protocol.str(); ok {
			if s != "tcp" && s != "udp" {
				r.c.at(raw.Protocol.Node, "unknown protocol %q (want tcp or udp)", s)
			}
			v.Protocol = s
		}
		if s, ok := raw.Scheduler.str(); ok {
			if !slices.Contains(Schedulers, s) {
				r.c.at(raw.Scheduler.Node, "unknown scheduler %q (want mh, sh, wlc or rr)", s)
			}
			v.Scheduler = s
		}
		hashing := v.Scheduler == "mh" || v.Scheduler == "sh"
		switch {
		case raw.Flags == nil && hashing:
			v.Flags = []string{"port"}
		case raw.Flags == nil:
			v.Flags = []string{}
		default:
			v.Flags = []string{}
			for _, f := range raw.Flags {
				s, ok := f.str()
				switch {
				case !ok:
				case s != "port" && s != "fallback":
					r.c.at(f.Node, "unknown flag %q (want port or fallback)", s)
				case slices.Contains(v.Flags, s):
					r.c.at(f.Node, "flag %q is listed twice", s)
				case !hashing:
					r.c.at(f.Node, "flag %q applies to the mh and sh schedulers only", s)
				default:
					v.Flags = append(v.Flags, s)
				}
			}
		}
		for _, a := range e.addr {
			if !a.IsValid() {
				continue
			}
			k := key{a, v.Port, v.Protocol}
			if j, dup := keys[k]; dup {
				r.c.atField(it.Node, path, "%s port %d/%s is already used by vips[%d]", a, v.Port, v.Protocol, j)
			} else {
				keys[k] = i
			}
		}
		e.v = v
	}
}

// vipNames returns the DNS names of the VIP called name (written at at):
// NAME.ZONE, then those of names, in order, each once.
func (r *resolver) vipNames(name string, at *yaml.Node, names []value) ([]string, []*yaml.Node) {
	own, problem := fqdn(name + "." + r.zone)
	if problem != "" {
		if labelProblem(name) == "" { // A bad name is reported as such.
			r.c.at(at, "name %q in the zone is %s", name, problem)
		}
		own = name + "." + r.zone
	}
	out, nodes := []string{own}, []*yaml.Node{at}
	for _, v := range names {
		s, ok := v.str()
		if !ok {
			continue
		}
		n, problem := r.serviceName(s)
		if problem != "" {
			r.c.at(v.Node, "%s", problem)
			continue
		}
		if !slices.Contains(out, n) {
			out, nodes = append(out, n), append(nodes, v.Node)
		}
	}
	return out, nodes
}

// serviceName resolves one item of a VIP's names: a single label in the
// zone, the zone itself (or @), or a name inside the zone, fully qualified
// with or without the trailing dot. The string is a problem, or "".
func (r *resolver) serviceName(s string) (string, string) {
	if s == "@" {
		return r.zone, ""
	}
	relative := !strings.Contains(s, ".")
	if relative {
		if problem := labelProblem(s); problem != "" {
			return "", fmt.Sprintf("bad name %q: %s", s, problem)
		}
		s += "." + r.zone
	}
	n, problem := fqdn(s)
	switch {
	case problem != "" && relative:
		return "", fmt.Sprintf("name %q in the zone is %s", strings.TrimSuffix(s, "."+r.zone), problem)
	case problem != "":
		return "", fmt.Sprintf("bad name %q: %s", s, problem)
	case n != r.zone && !strings.HasSuffix(n, "."+r.zone):
		return "", fmt.Sprintf("name %q is outside the zone %s", s, strings.TrimSuffix(r.zone, "."))
	}
	return n, ""
}

// nameServers reports a VIP name that is also the name of a name server:
// each dns node is NODE.ZONE in the zone's NS records.
func (r *resolver) nameServers() {
	for _, m := range r.members {
		if m.e.role != RoleDNS {
			continue
		}
		ns, problem := fqdn(m.name + "." + r.zone)
		if problem != "" {
			r.atOnce(m.e.key, "name server %q is not a DNS name: %s", m.name+"."+r.zone, problem)
			continue
		}
		for _, e := range r.vipEnts {
			if i := slices.Index(e.v.Names, ns); i >= 0 {
				r.c.at(e.namesN[i], "name %q is also the name server %s", ns, m.name)
			}
		}
	}
}

// absent reports whether vs was not written, or written empty (null).
func absent(vs values) bool {
	return vs == nil || len(vs) == 1 && (vs[0].Node == nil || yamlerr.IsNull(vs[0].Node))
}

// vipPoolPrefixes reads vip-pool: one prefix per family that VIPs written
// without an address get theirs from. A pool that overlaps a segment or the
// point-to-point links' pool is reported and left unused.
func (r *resolver) vipPoolPrefixes() []netip.Prefix {
	if absent(r.raw.VIPPool) {
		return []netip.Prefix{}
	}
	pools, at := byFamily(r, r.raw.VIPPool, parsePrefix, prefixFamily)
	for f, p := range pools {
		if !p.IsValid() {
			continue
		}
		problem := ""
		for _, s := range r.segs {
			if s.prefix[f].IsValid() && s.prefix[f].Overlaps(p) {
				problem = fmt.Sprintf("overlaps segment %s (%s)", s.name, s.prefix[f])
				break
			}
		}
		// The p2p pool is in use when written, or when links take from it.
		switch p2p := r.pool[f]; {
		case problem != "" || !p2p.IsValid() || !p2p.Overlaps(p):
		case r.poolN[f] != nil:
			problem = fmt.Sprintf("overlaps p2p-pool %s", p2p)
		case len(r.links) > 0:
			problem = fmt.Sprintf("overlaps p2p-pool %s (the default; set p2p-pool to move it)", p2p)
		}
		if problem != "" {
			r.c.at(at[f], "%s %s", p, problem)
			continue
		}
		r.vipPool[f], r.vipPoolN[f] = p, at[f]
	}
	return valid(pools)
}

// allocateVIPs gives every VIP written without an address the lowest free
// address of each family of vip-pool, in VIP order; free means no other
// VIP has it, and the addresses written are taken before any allocation.
// It returns the VIPs, one per family of each item (IPv4 first), and
// records every VIP address.
func (r *resolver) allocateVIPs() []VIP {
	for _, f := range Families {
		pool := r.vipPool[f]
		if !pool.IsValid() {
			continue
		}
		taken := map[netip.Addr]bool{}
		for _, e := range r.vipEnts {
			if e.addr[f].IsValid() {
				taken[e.addr[f]] = true
			}
		}
		next, last := vipRange(pool)
		want, got := 0, 0
		for _, e := range r.vipEnts {
			if !e.pool {
				continue
			}
			want++
			for next.IsValid() && next.Compare(last) <= 0 && taken[next] {
				next = next.Next()
			}
			if !next.IsValid() || next.Compare(last) > 0 {
				continue
			}
			e.addr[f], taken[next] = next, true
			next = next.Next()
			got++
		}
		if got < want {
			r.c.at(r.vipPoolN[f], "vip-pool %s has %d free %s %s for %d %s", pool, got, f,
				plural(got, "address", "addresses"), want, plural(want, "VIP", "VIPs"))
		}
	}
	vips := []VIP{}
	for _, e := range r.vipEnts {
		added := false
		for f, a := range e.addr {
			if !a.IsValid() {
				continue
			}
			v := e.v
			v.Address, v.Allocated = a, e.pool
			vips = append(vips, v)
			r.vipAddrs = append(r.vipAddrs, vipAddr{a, cmp.Or(e.addrN[f], e.node)})
			added = true
		}
		if !added {
			vips = append(vips, e.v) // No valid address: the problem is reported.
		}
	}
	return vips
}

// plural returns one when n is 1, many otherwise.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// p2pPool reads p2p-pool: one prefix per family that point-to-point links
// get addresses from; IPv4 100.64.0.0/16 when absent.
func (r *resolver) p2pPool() {
	if r.raw.P2PPool == nil {
		r.pool[IPv4], _ = parsePrefix(defaultP2PPool)
		return
	}
	pools, at := byFamily(r, r.raw.P2PPool, parsePrefix, prefixFamily)
	for f, p := range pools {
		if !p.IsValid() {
			continue
		}
		if hostBits(p) < 1 {
			r.c.at(at[f], "%s is too small for a point-to-point link (want /%d or shorter)", p, p.Addr().BitLen()-1)
			continue
		}
		r.pool[f], r.poolN[f] = p, at[f]
	}
}

func (r *resolver) segments() {
	for _, e := range r.raw.Segments {
		s := &segEntry{name: e.Key.Value, key: e.Key}
		r.segs = append(r.segs, s)
		r.checkName(e.Key, s.name)
		if !r.present(e.V.Prefix, e.Key, "segments."+s.name+".prefix") {
			continue
		}
		if m, ok := e.V.MTU.str(); ok {
			n, err := strconv.Atoi(m)
			if err != nil || n < minMTU || n > maxMTU {
				r.c.at(e.V.MTU.Node, "%q is not an MTU (want %d-%d)", m, minMTU, maxMTU)
			} else {
				s.mtu = n
			}
		}
		s.prefix, s.prefixN = byFamily(r, e.V.Prefix, parsePrefix, prefixFamily)
		for f, p := range s.prefix {
			if !p.IsValid() {
				continue
			}
			for _, o := range r.segs {
				if o != s && o.prefix[f].IsValid() && o.prefix[f].Overlaps(p) {
					r.c.at(s.prefixN[f], "%s overlaps segment %s (%s)", p, o.name, o.prefix[f])
					break
				}
			}
		}
	}
}

func (r *resolver) nodes() {
	if len(r.raw.Nodes) == 0 {
		key := r.keyNode("nodes")
		if v := r.valueOf(key); v == nil || yamlerr.IsNull(v) || v.Kind == yaml.MappingNode {
			r.c.atField(key, "nodes", "required: at least one node")
		}
	}
	for _, en := range r.raw.Nodes {
		e := &nodeEntry{name: en.Key.Value, key: en.Key, node: en.Node, raw: en.V, path: "nodes." + en.Key.Value}
		r.entries = append(r.entries, e)
		r.checkName(en.Key, e.name)
		if s, ok := r.required(e.raw.Role, en.Key, e.path+".role"); ok {
			if knownRole(s) {
				e.role = Role(s)
			} else {
				r.c.at(e.raw.Role.Node, "unknown role %q (want %s)", s, roleList())
			}
		}
		count := 0
		if s, ok := e.raw.Count.str(); ok {
			n, err := strconv.Atoi(s)
			switch {
			case err != nil || n < 1 || n > maxCount:
				r.c.at(e.raw.Count.Node, "%q is not a count (want 1-%d)", s, maxCount)
			case len(e.name)+1+len(strconv.Itoa(n)) > maxNameLen && len(e.name) <= maxNameLen:
				r.c.at(e.raw.Count.Node, "member names run up to %q, longer than %d characters", fmt.Sprintf("%s-%d", e.name, n), maxNameLen)
				count = n
			default:
				count = n
			}
		}
		if count == 0 {
			e.members = []*member{{e: e, name: e.name}}
		} else {
			e.group = true
			for i := range count {
				e.members = append(e.members, &member{e: e, index: i, name: fmt.Sprintf("%s-%d", e.name, i+1)})
			}
		}
		r.members = append(r.members, e.members...)
	}
}

// register records every segment, node, group and member name, reporting
// a name used twice at its later declaration.
func (r *resolver) register() {
	var defs []*def
	for _, s := range r.segs {
		defs = append(defs, &def{kind: defSegment, line: s.key.Line, seg: s})
	}
	for _, e := range r.entries {
		if !e.group {
			defs = append(defs, &def{kind: defNode, line: e.key.Line, e: e, m: e.members[0]})
			continue
		}
		defs = append(defs, &def{kind: defGroup, line: e.key.Line, e: e})
		for _, m := range e.members {
			defs = append(defs, &def{kind: defMember, line: e.key.Line, e: e, m: m})
		}
	}
	slices.SortStableFunc(defs, func(a, b *def) int { return cmp.Compare(a.line, b.line) })
	for _, d := range defs {
		name, key := "", (*yaml.Node)(nil)
		switch d.kind {
		case defSegment:
			name, key = d.seg.name, d.seg.key
		case defMember:
			name, key = d.m.name, d.e.key
		default:
			name, key = d.e.name, d.e.key
		}
		o, taken := r.defs[name]
		switch {
		case !taken:
			r.defs[name] = d
		case d.kind == defMember:
			r.atOnce(key, "member name %q is already used by %s (line %d)", name, o, o.line)
		default:
			r.c.at(key, "name %q is already used by %s (line %d)", name, o, o.line)
		}
	}
}

func (r *resolver) linkItems() {
	for _, e := range r.entries {
		seen := map[string]int{}
		for i, v := range e.raw.Links {
			s, ok := v.str()
			if !ok {
				continue
			}
			if j, dup := seen[s]; dup {
				r.c.at(v.Node, "%q is listed twice (also links[%d])", s, j)
				continue
			}
			seen[s] = i
			it := &linkItem{v: v, target: s}
			e.items = append(e.items, it)
			switch d := r.defs[s]; {
			case d == nil:
				r.c.at(v.Node, "unknown segment or node %q", s)
			case d.kind == defSegment:
				it.seg = d.seg
			case d.kind == defGroup:
				r.c.at(v.Node, "%q is a group: link to a segment, or to one member such as %s", s, d.e.members[0].name)
			default:
				it.peer = d.m
			}
		}
	}
}

// interfaces gives every member its interfaces: its own links in order,
// then the point-to-point links that only its peers declared.
func (r *resolver) interfaces() {
	pairs := map[[2]string]*p2pLink{}
	for _, m := range r.members {
		for _, it := range m.e.items {
			switch {
			case it.seg != nil:
				m.ifaces = append(m.ifaces, &iface{item: it, seg: it.seg})
				it.seg.members = append(it.seg.members, m)
			case it.peer == m:
				r.atOnce(it.v.Node, "%s cannot link to itself", m.name)
			case it.peer != nil:
				f := &iface{item: it, peer: it.peer}
				m.ifaces = append(m.ifaces, f)
				k := [2]string{m.name, it.peer.name}
				slices.Sort(k[:])
				l := pairs[k]
				if l == nil {
					l = &p2pLink{a: m, b: it.peer, aIf: f, item: it}
					pairs[k] = l
					r.links = append(r.links, l)
				} else {
					l.bIf = f
				}
				f.link = l
			}
		}
	}
	for _, l := range r.links {
		if l.bIf == nil {
			l.bIf = &iface{peer: l.a, link: l}
			l.b.ifaces = append(l.b.ifaces, l.bIf)
		}
	}
}

// pins reads the pinned addresses of every node entry.
func (r *resolver) pins() {
	for _, e := range r.entries {
		for _, a := range e.raw.Addresses {
			i := slices.IndexFunc(e.items, func(it *linkItem) bool { return it.target == a.Key.Value })
			if i < 0 {
				r.c.at(a.Key, "%q is not in links", a.Key.Value)
				continue
			}
			it := e.items[i]
			if it.peer != nil {
				r.c.at(a.Key, "point-to-point addresses come from p2p-pool; pin segment addresses only")
				continue
			}
			if it.seg == nil {
				continue
			}
			it.pin, it.pinN = byFamily(r, a.V, parseAddr, addrFamily)
		}
	}
}

// allocateSegments checks the pinned addresses of every segment, then gives
// the other members the lowest free addresses, family by family.
func (r *resolver) allocateSegments() {
	for _, s := range r.segs {
		for _, f := range Families {
			r.allocateSegment(s, f)
		}
	}
}

func (r *resolver) allocateSegment(s *segEntry, f Family) {
	prefix := s.prefix[f]
	if !prefix.IsValid() {
		for _, m := range s.members {
			if it := m.ifaceOn(s).item; it.pin[f].IsValid() {
				r.atOnce(it.pinN[f], "segment %s has no %s prefix", s.name, f)
			}
		}
		return
	}
	var pinned []netip.Addr
	var ifs []*iface
	var ms []*member
	owner := map[netip.Addr]*member{}
	for _, m := range s.members {
		fi := m.ifaceOn(s)
		pin, pinN := fi.item.pin[f], fi.item.pinN[f]
		if !pin.IsValid() {
			pinned, ifs, ms = append(pinned, netip.Addr{}), append(ifs, fi), append(ms, m)
			continue
		}
		a := addN(pin, m.index)
		subject := a.String()
		if m.index > 0 {
			subject = fmt.Sprintf("%s gets %s, which", m.name, a)
		}
		if !a.IsValid() {
			r.atOnce(pinN, "%s runs past the end of the address space", m.name)
			continue
		}
		if problem := hostProblem(prefix, a); problem != "" {
			r.atOnce(pinN, "%s %s segment %s (%s)", subject, problem, s.name, prefix)
			continue
		}
		if o := owner[a]; o != nil {
			r.atOnce(pinN, "%s is also pinned for %s (line %d)", subject, o.name, o.ifaceOn(s).item.pinN[f].Line)
			continue
		}
		owner[a] = m
		pinned, ifs, ms = append(pinned, a), append(ifs, fi), append(ms, m)
	}
	addrs, missing := allocate(prefix, pinned)
	first := ""
	for i, fi := range ifs {
		if addrs[i].IsValid() {
			fi.addr[f] = netip.PrefixFrom(addrs[i], prefix.Bits())
		} else if first == "" {
			first = ms[i].name
		}
	}
	if missing > 0 {
		more := ""
		if missing > 1 {
			more = fmt.Sprintf(" and %d more", missing-1)
		}
		r.c.at(s.prefixN[f], "%s is exhausted: no address left for %s%s", prefix, first, more)
	}
}

// allocateLinks gives point-to-point links consecutive pairs from the pool
// of each family.
func (r *resolver) allocateLinks() {
	if len(r.links) == 0 {
		return
	}
	for _, f := range Families {
		pool := r.pool[f]
		if !pool.IsValid() {
			continue
		}
		for _, s := range r.segs {
			if !s.prefix[f].IsValid() || !s.prefix[f].Overlaps(pool) {
				continue
			}
			if r.poolN[f] != nil {
				r.c.at(r.poolN[f], "%s overlaps segment %s (%s)", pool, s.name, s.prefix[f])
			} else {
				r.c.at(s.prefixN[f], "%s overlaps p2p-pool %s (the default; set p2p-pool to move it)", s.prefix[f], pool)
			}
		}
		room := p2pCapacity(pool, len(r.links))
		for i, l := range r.links {
			if i >= room {
				at := r.poolN[f]
				if at == nil {
					at = l.item.v.Node
				}
				r.c.at(at, "p2p-pool %s is exhausted: room for %d point-to-point links, %d declared", pool, room, len(r.links))
				break
			}
			l.aIf.addr[f], l.bIf.addr[f] = p2pAddrs(pool, i)
		}
	}
}

func (r *resolver) loopbacks() {
	for _, e := range r.entries {
		seen := map[netip.Addr]bool{}
	items:
		for _, v := range e.raw.Loopback {
			s, ok := v.str()
			if !ok {
				continue
			}
			addrs, problem := expandLoopback(s, maxLoopback)
			if problem != "" {
				r.c.at(v.Node, "%s", problem)
				continue
			}
			for _, a := range addrs {
				if seen[a] {
					r.c.at(v.Node, "%s is already on lo (listed earlier)", a)
					continue items
				}
			}
			if len(e.loopback)+len(addrs) > maxLoopback {
				r.c.at(v.Node, "too many loopback addresses: %d so far, at most %d per node", len(e.loopback)+len(addrs), maxLoopback)
				break
			}
			for _, a := range addrs {
				seen[a] = true
			}
			e.loopback = append(e.loopback, addrs...)
		}
	}
}

// vipClashes reports every VIP address that the lab also gives a node, or
// that lies inside a segment: the segment would answer for it (ARP, neighbour
// discovery) instead of routing it to the LB4s.
func (r *resolver) vipClashes() {
	for _, v := range r.vipAddrs {
		if problem := r.vipClash(v.addr); problem != "" {
			r.c.at(v.node, "%s %s", v.addr, problem)
		}
	}
}

// vipClash says what a clashes with, or returns "".
func (r *resolver) vipClash(a netip.Addr) string {
	fa := FamilyOf(a)
	for _, s := range r.segs {
		prefix := s.prefix[fa]
		if !prefix.IsValid() || !prefix.Contains(a) {
			continue
		}
		for _, m := range s.members {
			if f := m.ifaceOn(s); f != nil && f.addr[fa].IsValid() && f.addr[fa].Addr() == a {
				return fmt.Sprintf("is also the address of %s on segment %s", m.name, s.name)
			}
		}
		if problem := hostProblem(prefix, a); problem != "" {
			return fmt.Sprintf("%s segment %s (%s)", problem, s.name, prefix)
		}
		return fmt.Sprintf("is inside segment %s (%s)", s.name, prefix)
	}
	for _, l := range r.links {
		switch a {
		case l.aIf.addr[fa].Addr():
			return fmt.Sprintf("is also the address of %s on its link to %s", l.a.name, l.b.name)
		case l.bIf.addr[fa].Addr():
			return fmt.Sprintf("is also the address of %s on its link to %s", l.b.name, l.a.name)
		}
	}
	for _, e := range r.entries {
		switch {
		case !slices.Contains(e.loopback, a):
		case e.group:
			return fmt.Sprintf("is also on lo of every member of group %s", e.name)
		default:
			return fmt.Sprintf("is also on lo of %s", e.name)
		}
	}
	return ""
}

// vipServers reports n VIPs that no LB4 or no LB7 would serve. A node
// whose role is unknown may be the missing one: its problem is enough.
func (r *resolver) vipServers(n int) {
	if n == 0 || len(r.entries) == 0 {
		return
	}
	has := map[Role]bool{}
	for _, e := range r.entries {
		if e.role == "" {
			return
		}
		has[e.role] = true
	}
	var missing []string
	for _, role := range []Role{RoleLB4, RoleLB7} {
		if !has[role] {
			missing = append(missing, string(role))
		}
	}
	if len(missing) == 0 {
		return
	}
	vips, them := fmt.Sprintf("%d VIPs", n), "them"
	if n == 1 {
		vips, them = "1 VIP", "it"
	}
	add := "a node with role " + missing[0]
	if len(missing) == 2 {
		add = "nodes with roles lb4 and lb7"
	}
	r.c.atField(r.keyNode("vips"), "vips", "%s but no %s node to serve %s (add %s)",
		vips, strings.Join(missing, " and no "), them, add)
}

// vipFamilies reports a VIP family that the LB4s cannot serve: each LB4
// announces a VIP with its address of the VIP's family on a segment it
// shares with a router (the next hop), and tunnels it to the LB7s'
// addresses of that family.
func (r *resolver) vipFamilies() {
	shares := func(a, b *member, f Family) bool {
		for _, fa := range a.ifaces {
			if fa.seg != nil && fa.addr[f].IsValid() && b.ifaceOn(fa.seg) != nil {
				return true
			}
		}
		return false
	}
	byRole := func(role Role) []*member {
		var out []*member
		for _, m := range r.members {
			if m.e.role == role {
				out = append(out, m)
			}
		}
		return out
	}
	lb4s, lb7s, routers := byRole(RoleLB4), byRole(RoleLB7), byRole(RoleRouter)
	if len(lb4s) == 0 || len(lb7s) == 0 || len(routers) == 0 {
		return // vipServers or the routes say what is missing.
	}
	for _, f := range Families {
		var at *yaml.Node
		for _, v := range r.vipAddrs {
			if FamilyOf(v.addr) == f {
				at = v.node
				break
			}
		}
		if at == nil {
			continue
		}
		for _, lb4 := range lb4s {
			if !slices.ContainsFunc(routers, func(rt *member) bool { return shares(lb4, rt, f) }) {
				r.atOnce(at, "an %s VIP, but %s shares no %s segment with a router to announce it through", f, lb4.name, f)
				break
			}
			if !slices.ContainsFunc(lb7s, func(lb7 *member) bool { return shares(lb4, lb7, f) }) {
				r.atOnce(at, "an %s VIP, but %s shares no %s segment with an LB7 to tunnel it to", f, lb4.name, f)
				break
			}
		}
	}
}

// settings merges the settings of every node entry. Every block is also
// checked on its own, so that a value that no node uses is still checked.
func (r *resolver) settings() {
	checkRoles(r.c, r.raw.Roles)
	for _, b := range settingsBlocks(r.raw.Defaults, r.raw.Roles) {
		decodeSettings(r.c, b, false)
	}
	for _, e := range r.entries {
		inline := inlineSettings(e.node)
		if e.role == "" {
			decodeSettings(r.c, inline, false)
			continue
		}
		e.settings = decodeSettings(r.c, merge(
			r.cfg.Defaults.Node, roleBlock(r.cfg.Roles, e.role),
			r.raw.Defaults.Node, roleBlock(r.raw.Roles, e.role),
			inline), true)
	}
}

func (r *resolver) routes() {
	for _, m := range r.members {
		for i, it := range m.e.raw.Routes {
			if it.Node == nil {
				continue
			}
			path := fmt.Sprintf("%s.routes[%d]", m.e.path, i)
			toS, okTo := r.required(it.V.To, it.Node, path+".to")
			viaS, okVia := r.required(it.V.Via, it.Node, path+".via")
			if !okTo || !okVia {
				continue
			}
			to, toOK := r.routeTo(it.V.To.Node, toS)
			vias, viaOK := r.routeVia(m, it.V.Via.Node, viaS, to)
			if !toOK || !viaOK {
				continue
			}
			for _, via := range vias {
				dst := to
				if !dst.IsValid() {
					dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
					if via.Is6() {
						dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
					}
				}
				if FamilyOf(dst.Addr()) != FamilyOf(via) {
					r.c.at(it.V.Via.Node, "%s and %s are not of the same IP family", dst, via)
					continue
				}
				rt := Route{To: dst, Via: via}
				if slices.Contains(m.routes, rt) {
					r.atOnce(it.Node, "route to %s via %s is listed twice", dst, via)
					continue
				}
				m.routes = append(m.routes, rt)
			}
		}
	}
}

// routeTo parses a route destination; the zero prefix means default.
func (r *resolver) routeTo(n *yaml.Node, s string) (netip.Prefix, bool) {
	switch {
	case s == "default":
		return netip.Prefix{}, true
	case strings.Contains(s, "/"):
		p, problem := parsePrefix(s)
		if problem != "" {
			r.c.at(n, "%s", problem)
			return p, false
		}
		return p, true
	}
	a, problem := parseAddr(s)
	if problem != "" {
		r.c.at(n, "%q is not a prefix, an address or \"default\"", s)
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// routeVia resolves the next hops of a route of m: an address on a subnet m
// is connected to, or a node that shares a segment or link with m. Via a
// node, a route to a prefix goes to its address of the prefix's family, and
// a default route to each address it has (one default route per family).
func (r *resolver) routeVia(m *member, n *yaml.Node, s string, to netip.Prefix) ([]netip.Addr, bool) {
	d := r.defs[s]
	if d == nil {
		a, problem := parseAddr(s)
		if problem != "" {
			r.c.at(n, "%q is neither a node nor an IP address", s)
			return nil, false
		}
		fa, complete := FamilyOf(a), true
		for _, f := range m.ifaces {
			switch p := f.addr[fa]; {
			case !p.IsValid():
				complete = complete && !r.expects(f, fa)
			case p.Addr() == a:
				r.atOnce(n, "%s is an address of %s itself", a, m.name)
				return nil, false
			case p.Contains(a):
				return []netip.Addr{a}, true
			}
		}
		if complete {
			r.atOnce(n, "%s is not on a subnet directly connected to %s", a, m.name)
		}
		return nil, false
	}
	switch d.kind {
	case defSegment:
		r.c.at(n, "%q is a segment (want a node or an address)", s)
		return nil, false
	case defGroup:
		r.c.at(n, "%q is a group (want one node, such as %s, or an address)", s, d.e.members[0].name)
		return nil, false
	}
	p := d.m
	if p == m {
		r.atOnce(n, "%s cannot route via itself", m.name)
		return nil, false
	}
	families := Families
	if to.IsValid() {
		families = []Family{FamilyOf(to.Addr())}
	}
	var vias []netip.Addr
	shared, pending := false, false
	for _, fam := range families {
		for _, f := range m.ifaces {
			var pf *iface
			switch {
			case f.seg != nil:
				pf = p.ifaceOn(f.seg)
			case f.peer == p && f.link.aIf == f:
				pf = f.link.bIf
			case f.peer == p:
				pf = f.link.aIf
			}
			if pf == nil {
				continue
			}
			shared = true
			if pf.addr[fam].IsValid() {
				vias = append(vias, pf.addr[fam].Addr())
				break
			}
			pending = pending || r.expects(pf, fam)
		}
	}
	switch {
	case len(vias) > 0:
		return vias, true
	case pending:
	case !shared:
		r.atOnce(n, "%s shares no segment or link with %s", p.name, m.name)
	case to.IsValid():
		r.atOnce(n, "%s has no %s address on a segment or link shared with %s", p.name, FamilyOf(to.Addr()), m.name)
	default:
		r.atOnce(n, "%s has no address on a segment or link shared with %s", p.name, m.name)
	}
	return nil, false
}

// expects reports whether f should have an address of family fam: its
// segment, or p2p-pool for a link, has that family. An interface that
// expects one and has none lost it to a problem already reported.
func (r *resolver) expects(f *iface, fam Family) bool {
	if f.seg != nil {
		return f.seg.prefix[fam].IsValid()
	}
	return r.pool[fam].IsValid()
}

// reflectors expands bgp.route-reflectors; when absent, it is every node
// with role rr.
func (r *resolver) reflectors() []string {
	names := []string{}
	if r.raw.BGP.V.RouteReflectors == nil {
		for _, m := range r.members {
			if m.e.role == RoleRR {
				names = append(names, m.name)
			}
		}
		return names
	}
	for _, v := range r.raw.BGP.V.RouteReflectors {
		s, ok := v.str()
		if !ok {
			continue
		}
		d := r.defs[s]
		var ms []*member
		switch {
		case d == nil:
			r.c.at(v.Node, "unknown node or group %q", s)
			continue
		case d.kind == defSegment:
			r.c.at(v.Node, "%q is a segment (want a node or group with role rr)", s)
			continue
		case d.kind == defGroup:
			ms = d.e.members
		default:
			ms = []*member{d.m}
		}
		if role := d.e.role; role != RoleRR {
			if role != "" {
				r.c.at(v.Node, "%q has role %s (want rr)", s, role)
			}
			continue
		}
		for _, m := range ms {
			if slices.Contains(names, m.name) {
				r.c.at(v.Node, "%s is listed twice", m.name)
				break
			}
			names = append(names, m.name)
		}
	}
	return names
}

// fill copies the resolved state into t. Empty lists are empty, not nil.
func (r *resolver) fill(t *Topology) {
	t.Segments, t.Links, t.Nodes = []Segment{}, []Link{}, []Node{}
	if t.VIPs == nil {
		t.VIPs = []VIP{}
	}
	for _, s := range r.segs {
		seg := Segment{Name: s.name, Prefixes: valid(s.prefix), MTU: s.mtu, Members: []string{}}
		for _, m := range s.members {
			seg.Members = append(seg.Members, m.name)
		}
		t.Segments = append(t.Segments, seg)
	}
	for _, l := range r.links {
		t.Links = append(t.Links, Link{A: l.a.name, B: l.b.name, AAddrs: valid(l.aIf.addr), BAddrs: valid(l.bIf.addr)})
	}
	for _, m := range r.members {
		// Members of a group share one loopback array: a group of 999 with
		// 4096 addresses each would otherwise take hundreds of megabytes.
		// Clipped, an append by one node never writes into another's.
		loopback := slices.Clip(m.e.loopback)
		if loopback == nil {
			loopback = []netip.Addr{}
		}
		n := Node{
			Name:       m.name,
			Role:       m.e.role,
			Interfaces: []Interface{},
			Loopback:   loopback,
			Routes:     append([]Route{}, m.routes...),
			Settings:   m.e.settings.clone(),
		}
		if m.e.group {
			n.Group = m.e.name
		}
		for _, f := range m.ifaces {
			i := Interface{Addresses: valid(f.addr)}
			if f.seg != nil {
				i.Name, i.Segment = f.seg.name, f.seg.name
			} else {
				i.Name, i.Peer = f.peer.name, f.peer.name
			}
			n.Interfaces = append(n.Interfaces, i)
		}
		t.Nodes = append(t.Nodes, n)
	}
}

// valid lists the valid prefixes of ps, IPv4 first; never nil.
func valid(ps [2]netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{}
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}
