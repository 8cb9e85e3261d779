// Package nameserver is the lab's authoritative DNS server: it answers for
// one zone whose service names resolve to the addresses of those services
// that are up, as a global server load balancer does. Clients that resolve
// a name before each connection thus stop being sent to an address once its
// health check fails, within the answers' TTL, and spread over the
// addresses that are up because each answer lists them from one further on.
//
// Answer is a pure function of the zone and the current up-state, so that
// tests can ask it directly; Serve puts it on the wire with miekg/dns over
// sockets the caller opened (in whichever network namespace it chose).
package nameserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Zone is what a Server answers for.
type Zone struct {
	Origin   string        // "example.org.": fully qualified, lower case
	TTL      time.Duration // of every answer (whole seconds)
	FailOpen bool          // no address of a name up: answer them all (true) or none (false: NODATA)
	NS       []Host        // the zone's name servers, for NS, SOA and glue (A/AAAA of NS names)
	// Services maps a fully qualified name ("www.example.org.") to every
	// address that may answer it, in order.
	Services map[string][]netip.Addr
}

// Host is a name server: its name in the zone and its addresses.
type Host struct {
	Name  string
	Addrs []netip.Addr
}

// NameState is what one service name resolves to now, for status.
type NameState struct {
	Name   string       `json:"name"`
	Answer []netip.Addr `json:"answer"` // what a query gets now (both families)
	Up     []netip.Addr `json:"up,omitempty"`
	Down   []netip.Addr `json:"down,omitempty"`
}

// ednsSize is the UDP payload size the server advertises and the most it
// sends over UDP whatever a client offers: the DNS flag day 2020 value, which
// fits an IPv6 packet on any link without fragments.
const ednsSize = 1232

// SOA timers other than the minimum, which is the zone's TTL. No secondary
// server ever transfers the zone; these are the usual values.
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// Server answers for one zone; which service addresses are up is set with
// SetUp. One mutex guards the up-state, the serial and the rotation.
type Server struct {
	origin   string
	ttl      uint32
	failOpen bool
	mname    string                  // the first name server's name, or the origin
	rname    string                  // hostmaster.<origin>
	ns       []Host                  // names canonical, addresses unmapped
	glue     map[string][]netip.Addr // in-zone name server names to addresses
	services map[string][]netip.Addr // canonical names to addresses, unmapped
	names    []string                // of services, sorted
	exists   map[string]bool         // every name with data or below which there is some
	log      *slog.Logger

	mu     sync.Mutex
	up     map[netip.Addr]bool // service addresses that are up
	serial uint32
	turn   map[turnKey]uint32 // where the next answer for a name and type starts
}

type turnKey struct {
	name  string
	qtype uint16
}

// New returns a server for z with every address down. Names are taken
// case-insensitively, with or without the trailing dot; services and name
// servers outside the zone are left out (and logged). log nil discards the
// logs.
//
// The SOA serial starts at the Unix time of New, so that a restarted server
// does not go back, and grows by one whenever the set of up addresses
// changes.
func New(z Zone, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	origin := dns.CanonicalName(z.Origin)
	s := &Server{
		origin:   origin,
		ttl:      uint32(max(z.TTL, 0) / time.Second),
		failOpen: z.FailOpen,
		mname:    origin,
		rname:    "hostmaster." + origin,
		glue:     map[string][]netip.Addr{},
		services: map[string][]netip.Addr{},
		exists:   map[string]bool{origin: true},
		log:      log,
		up:       map[netip.Addr]bool{},
		serial:   uint32(time.Now().Unix()),
		turn:     map[turnKey]uint32{},
	}
	if origin == "." {
		s.rname = "hostmaster."
	}
	for i, h := range z.NS {
		h = Host{Name: dns.CanonicalName(h.Name), Addrs: unmapAll(h.Addrs)}
		s.ns = append(s.ns, h)
		if i == 0 {
			s.mname = h.Name
		}
		if dns.IsSubDomain(origin, h.Name) {
			s.glue[h.Name] = h.Addrs
			s.addName(h.Name)
		}
	}
	for name, addrs := range z.Services {
		name = dns.CanonicalName(name)
		if !dns.IsSubDomain(origin, name) {
			log.Warn("dns service name outside the zone left out", "name", name, "zone", origin)
			continue
		}
		s.services[name] = append(s.services[name], unmapAll(addrs)...)
		s.addName(name)
	}
	for name := range s.services {
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	return s
}

// addName marks name and every name between it and the origin as existing:
// a name with no data but names below it answers NODATA, not NXDOMAIN
// (RFC 8020).
func (s *Server) addName(name string) {
	for dns.IsSubDomain(s.origin, name) && !s.exists[name] {
		s.exists[name] = true
		i, end := dns.NextLabel(name, 0)
		if end {
			return
		}
		name = name[i:]
	}
}

func unmapAll(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// SetUp sets the health of one service address; addresses start down. A
// change bumps the SOA serial. Safe from any goroutine.
func (s *Server) SetUp(addr netip.Addr, up bool) {
	addr = addr.Unmap()
	s.mu.Lock()
	if s.up[addr] == up {
		s.mu.Unlock()
		return
	}
	if up {
		s.up[addr] = true
	} else {
		delete(s.up, addr)
	}
	s.serial++
	serial := s.serial
	s.mu.Unlock()
	s.log.Info("dns address changed", "addr", addr, "up", up, "serial", serial)
}

// Names reports every service name, sorted, with what a query gets now in
// the zone's order (answers rotate from there).
func (s *Server) Names() []NameState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NameState, 0, len(s.names))
	for _, name := range s.names {
		st := NameState{Name: name, Answer: []netip.Addr{}}
		for _, a := range s.services[name] {
			if s.up[a] {
				st.Up = append(st.Up, a)
			} else {
				st.Down = append(st.Down, a)
			}
		}
		for _, is4 := range []bool{true, false} {
			st.Answer = append(st.Answer, s.answerLocked(name, is4)...)
		}
		out = append(out, st)
	}
	return out
}

// answerLocked returns the addresses of one family that a query for the
// service name gets now, in the zone's order. s.mu must be held.
func (s *Server) answerLocked(name string, is4 bool) []netip.Addr {
	var all, up []netip.Addr
	for _, a := range s.services[name] {
		if a.Is4() != is4 {
			continue
		}
		all = append(all, a)
		if s.up[a] {
			up = append(up, a)
		}
	}
	if len(up) == 0 && s.failOpen {
		return all
	}
	return up
}

// Answer returns the reply to q over the current state: the server's whole
// logic but for transport (truncation is the caller's). It advances the
// rotation of the name asked for; it blocks on nothing but the server's
// lock.
func (s *Server) Answer(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	opt := q.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		m.Rcode = dns.RcodeBadVers
	} else {
		s.answer(m, q)
	}
	if opt != nil { // last in the additional section (RFC 6891)
		m.SetEdns0(ednsSize, opt.Do())
	}
	return m
}

// answer fills in m, the reply to q.
func (s *Server) answer(m, q *dns.Msg) {
	if q.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return
	}
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return
	}
	qs := q.Question[0]
	name := dns.CanonicalName(qs.Name)
	if qs.Qclass != dns.ClassINET || !dns.IsSubDomain(s.origin, name) {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	isAddr := qs.Qtype == dns.TypeA || qs.Qtype == dns.TypeAAAA

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case isAddr && s.services[name] != nil:
		addrs := s.answerLocked(name, qs.Qtype == dns.TypeA)
		if n := len(addrs); n > 1 {
			k := turnKey{name, qs.Qtype}
			start := int(s.turn[k] % uint32(n))
			s.turn[k]++
			addrs = slices.Concat(addrs[start:], addrs[:start])
		}
		m.Answer = s.addrRecords(qs.Name, addrs)
	case isAddr && s.glue[name] != nil:
		m.Answer = s.addrRecords(qs.Name, family(s.glue[name], qs.Qtype == dns.TypeA))
	case qs.Qtype == dns.TypeSOA && name == s.origin:
		m.Answer = []dns.RR{s.soaLocked()}
	case qs.Qtype == dns.TypeNS && name == s.origin:
		for _, h := range s.ns {
			m.Answer = append(m.Answer, &dns.NS{Hdr: s.hdr(qs.Name, dns.TypeNS), Ns: h.Name})
			m.Extra = append(m.Extra, s.addrRecords(h.Name, s.glue[h.Name])...)
		}
	case !s.exists[name]:
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 { // NXDOMAIN or NODATA: the SOA says for how long
		m.Ns = []dns.RR{s.soaLocked()}
	}
}

// family returns the addresses of addrs that are IPv4 (is4) or IPv6.
func family(addrs []netip.Addr, is4 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a.Is4() == is4 {
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: s.ttl}
}

// addrRecords returns an A or AAAA record for each address, owned by name.
func (s *Server) addrRecords(name string, addrs []netip.Addr) []dns.RR {
	out := make([]dns.RR, 0, len(addrs))
	for _, a := range addrs {
		if a.Is4() {
			out = append(out, &dns.A{Hdr: s.hdr(name, dns.TypeA), A: a.AsSlice()})
		} else {
			out = append(out, &dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}

// soaLocked returns the zone's SOA record. s.mu must be held.
func (s *Server) soaLocked() *dns.SOA {
	return &dns.SOA{
		Hdr:     s.hdr(s.origin, dns.TypeSOA),
		Ns:      s.mname,
		Mbox:    s.rname,
		Serial:  s.serial,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  s.ttl,
	}
}

// Serve answers queries on udp and tcp (either may be nil to skip it) until
// ctx is done, then closes them and returns nil once the queries in hand
// are answered. An error of either socket stops both and is returned. Over
// UDP an answer larger than 512 bytes, or than the client's EDNS0 size (at
// most 1232), is truncated with TC set so that the client asks again over
// TCP. Serve may be called once.
func (s *Server) Serve(ctx context.Context, udp net.PacketConn, tcp net.Listener) error {
	var runs []*run
	if udp != nil {
		runs = append(runs, s.start(&dns.Server{PacketConn: udp, UDPSize: ednsSize, Handler: s.handler(true)}, "udp", udp.LocalAddr()))
	}
	if tcp != nil {
		runs = append(runs, s.start(&dns.Server{Listener: tcp, Handler: s.handler(false)}, "tcp", tcp.Addr()))
	}
	if len(runs) == 0 {
		return errors.New("dns server: no socket to serve on")
	}
	exited := make(chan struct{}, len(runs))
	for _, r := range runs {
		go func() {
			<-r.exited
			exited <- struct{}{}
		}()
	}
	select {
	case <-ctx.Done():
	case <-exited: // one stopped by itself: an error, as nothing else stops it
	}
	var errs []error
	for _, r := range runs {
		if err := r.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// run is one dns.Server serving one socket.
type run struct {
	srv     *dns.Server
	started chan struct{} // closed once srv can be shut down
	exited  chan struct{} // closed when ActivateAndServe has returned, err set
	err     error
}

// start serves srv in a goroutine of its own.
func (s *Server) start(srv *dns.Server, network string, addr net.Addr) *run {
	r := &run{srv: srv, started: make(chan struct{}), exited: make(chan struct{})}
	srv.NotifyStartedFunc = func() { close(r.started) }
	go func() {
		defer close(r.exited)
		s.log.Info("dns server serving", "zone", s.origin, "net", network, "addr", addr)
		if err := srv.ActivateAndServe(); err != nil {
			r.err = fmt.Errorf("dns server on %s %s: %w", network, addr, err)
			s.log.Warn("dns server stopped", "net", network, "addr", addr, "err", err)
		}
	}()
	return r
}

// stop shuts the server down if it started and returns its error once it
// has stopped.
func (r *run) stop() error {
	select {
	case <-r.started:
		// An error here says it has stopped by itself already.
		_ = r.srv.Shutdown()
	case <-r.exited:
	}
	<-r.exited
	return r.err
}

// handler answers over UDP (udp) or TCP.
func (s *Server) handler(udp bool) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := s.Answer(q)
		if udp {
			size := dns.MinMsgSize
			if opt := q.IsEdns0(); opt != nil {
				size = min(int(opt.UDPSize()), ednsSize)
			}
			m.Truncate(size)
		} else {
			m.Compress = true
		}
		if s.log.Enabled(context.Background(), slog.LevelDebug) && len(q.Question) > 0 {
			s.log.Debug("dns query", "from", w.RemoteAddr(), "name", q.Question[0].Name,
				"type", dns.TypeToString[q.Question[0].Qtype], "rcode", dns.RcodeToString[m.Rcode],
				"answers", len(m.Answer), "truncated", m.Truncated)
		}
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("dns answer not sent", "to", w.RemoteAddr(), "err", err)
		}
	})
}
