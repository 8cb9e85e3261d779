package bfd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Port is the destination port of single-hop BFD control packets (RFC 5881).
const Port = 3784

// Source ports of control packets (RFC 5881 §4).
const (
	minSrcPort = 49152
	maxSrcPort = 65535
)

// ttl is the TTL and hop limit of every packet sent, and the only one
// accepted (RFC 5881 §5).
const ttl = 255

// ListenFunc opens a packet socket like net.ListenPacket. The server opens
// every socket through it, so that a caller sharing its process with other
// network namespaces can open them in the right one; open sockets stay in the
// namespace they were made in, whatever thread later uses them. The sockets
// must be *net.UDPConn, as net.ListenPacket returns for "udp4" and "udp6".
type ListenFunc func(network, address string) (net.PacketConn, error)

// Server runs a BFD session with each of a set of peers. One goroutine owns
// the sessions; it sends their packets, runs their timers and applies the
// packets that one reader goroutine per address family hands it.
type Server struct {
	cfg      Config
	listen   ListenFunc
	log      *slog.Logger
	onChange func(Session)

	port, peerPort int // Port, but tests run several servers on one host

	mu       sync.Mutex // guards the fields below
	sessions map[netip.Addr]*session
	started  bool

	echo4, echo6 *echoConn // nil without the echo function; the owner's

	wake    chan struct{} // SetPeers to the owner: sessions changed
	rx      chan received // readers to the owner
	readers atomic.Int32  // readers running, for tests
	done    chan struct{} // closed when every goroutine has ended
}

// received is a parsed packet and its source.
type received struct {
	p   Packet
	src netip.Addr
}

// NewServer returns a server with no peers. listen nil means net.ListenPacket,
// log nil discards the logs, onChange nil reports nothing. onChange is called
// with the new snapshot on every state change, from the goroutine that runs
// the sessions: it must return quickly and may call Sessions and SetPeers.
func NewServer(cfg Config, listen ListenFunc, log *slog.Logger, onChange func(Session)) *Server {
	if listen == nil {
		listen = net.ListenPacket
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Session) {}
	}
	return &Server{
		cfg:      cfg.withDefaults(),
		listen:   listen,
		log:      log,
		onChange: onChange,
		port:     Port,
		peerPort: Port,
		sessions: make(map[netip.Addr]*session),
		wake:     make(chan struct{}, 1),
		rx:       make(chan received, 64),
		done:     make(chan struct{}),
	}
}

// SetPeers makes the sessions exactly those with peers: new ones start Down,
// removed ones end (no callback for removal). Safe from any goroutine, before
// or after Start.
func (s *Server) SetPeers(peers []netip.Addr) {
	now := time.Now()
	want := make(map[netip.Addr]bool, len(peers))
	for _, p := range peers {
		if p.IsValid() {
			want[p.Unmap()] = true
		}
	}
	s.mu.Lock()
	for p := range s.sessions {
		if !want[p] {
			delete(s.sessions, p)
		}
	}
	for p := range want {
		if s.sessions[p] == nil {
			s.sessions[p] = newSession(p, s.newDiscr(), s.cfg, now)
		}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// newDiscr returns a random local discriminator, non-zero and unused by the
// other sessions. s.mu must be held.
func (s *Server) newDiscr() uint32 {
next:
	for {
		d := rand.Uint32()
		if d == 0 {
			continue
		}
		for _, ss := range s.sessions {
			if ss.localDiscr == d {
				continue next
			}
		}
		return d
	}
}

// Sessions reports every session, sorted by peer.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, ss.snapshot())
	}
	slices.SortFunc(out, func(a, b Session) int { return a.Peer.Compare(b.Peer) })
	return out
}

// Start opens the sockets (for each family: a receive socket on Port, and a
// send socket bound to a source port in 49152–65535 with TTL / unicast hop
// limit 255) and starts the goroutines; they stop and close the sockets when
// ctx is done. An error opening any socket is returned, with nothing left
// open; it wraps the error of the ListenFunc (EAFNOSUPPORT for a family the
// kernel lacks, EADDRINUSE for a receive port in use). Start may be called
// once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("bfd server already started")
	}
	f4, err := s.openFamily("udp4", "0.0.0.0")
	if err != nil {
		return err
	}
	f6, err := s.openFamily("udp6", "::")
	if err != nil {
		f4.close()
		return err
	}
	if s.cfg.Echo > 0 {
		id := uint16(rand.IntN(1<<16-1) + 1)
		if s.echo4, err = openEcho(s.listen, "ip4:icmp", id); err == nil {
			if s.echo6, err = openEcho(s.listen, "ip6:ipv6-icmp", id); err != nil {
				s.echo4.close()
			}
		}
		if err != nil {
			f4.close()
			f6.close()
			return err
		}
	}
	s.started = true

	var wg sync.WaitGroup
	wg.Go(func() {
		defer f4.close()
		defer f6.close()
		if s.echo4 != nil {
			defer s.echo4.close()
			defer s.echo6.close()
		}
		s.run(ctx, f4.send, f6.send)
	})
	for _, f := range []*family{f4, f6} {
		s.readers.Add(1)
		wg.Go(func() {
			defer s.readers.Add(-1)
			s.read(ctx, f.read)
		})
	}
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return nil
}

// family is the sockets of one address family.
type family struct {
	recv, send net.PacketConn
	read       readFunc // reads recv
}

func (f *family) close() {
	f.recv.Close()
	f.send.Close()
}

// openFamily opens the sockets of network, "udp4" or "udp6", bound to host,
// the unspecified address of that family.
func (s *Server) openFamily(network, host string) (*family, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(s.port))
	recv, err := s.listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("open bfd receive socket %s %s: %w", network, addr, err)
	}
	read, err := newReader(network, recv)
	if err != nil {
		recv.Close()
		return nil, fmt.Errorf("bfd receive socket %s %s: %w", network, addr, err)
	}
	send, err := s.openSend(network, host)
	if err != nil {
		recv.Close()
		return nil, err
	}
	return &family{recv: recv, send: send, read: read}, nil
}

// openSend opens the socket that sends control packets, bound to the first
// free source port from a random one on, with TTL or hop limit 255.
func (s *Server) openSend(network, host string) (net.PacketConn, error) {
	const n = maxSrcPort - minSrcPort + 1
	start := rand.IntN(n)
	for i := range n {
		addr := net.JoinHostPort(host, strconv.Itoa(minSrcPort+(start+i)%n))
		c, err := s.listen(network, addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open bfd send socket %s %s: %w", network, addr, err)
		}
		if network == "udp4" {
			err = ipv4.NewPacketConn(c).SetTTL(ttl)
		} else {
			err = ipv6.NewPacketConn(c).SetHopLimit(ttl)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("set ttl of bfd send socket %s %s: %w", network, addr, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("open bfd send socket %s: no free port in %d-%d", network, minSrcPort, maxSrcPort)
}

// readFunc reads one datagram and its TTL or hop limit (-1 when unknown).
type readFunc func(b []byte) (n, hops int, src net.Addr, err error)

// newReader returns the readFunc of c, a socket of network.
func newReader(network string, c net.PacketConn) (readFunc, error) {
	if network == "udp4" {
		p := ipv4.NewPacketConn(c)
		if err := p.SetControlMessage(ipv4.FlagTTL, true); err != nil {
			return nil, fmt.Errorf("ask for the ttl of packets: %w", err)
		}
		return func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := p.ReadFrom(b)
			if cm == nil {
				return n, -1, src, err
			}
			return n, cm.TTL, src, err
		}, nil
	}
	p := ipv6.NewPacketConn(c)
	if err := p.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		return nil, fmt.Errorf("ask for the hop limit of packets: %w", err)
	}
	return func(b []byte) (int, int, net.Addr, error) {
		n, cm, src, err := p.ReadFrom(b)
		if cm == nil {
			return n, -1, src, err
		}
		return n, cm.HopLimit, src, err
	}, nil
}

// read hands the valid packets from one socket to the owner until the socket
// fails, is closed or is shut down, or ctx is done. (After shutdown(2), some
// kernels make every read return 0 bytes from no address at once; Linux 6.18
// makes it block, which is as good: the reader ends when ctx does.)
func (s *Server) read(ctx context.Context, read readFunc) {
	b := make([]byte, 512)
	for {
		n, hops, src, err := read(b)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("bfd receiver stops", "err", err)
			}
			return
		}
		if n == 0 && src == nil {
			// Shut down; an empty datagram has a source, and is dropped below.
			s.log.Warn("bfd receive socket shut down, receiver stops")
			return
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		from := ua.AddrPort().Addr().Unmap()
		if hops != ttl {
			s.log.Debug("drop bfd packet with ttl not 255", "from", from, "ttl", hops)
			continue
		}
		p, err := Parse(b[:n])
		if err != nil {
			s.log.Debug("drop bfd packet", "from", from, "err", err)
			continue
		}
		select {
		case s.rx <- received{p, from}:
		case <-ctx.Done():
			return
		}
	}
}

// run owns the sessions until ctx is done.
func (s *Server) run(ctx context.Context, send4, send6 net.PacketConn) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var rx []received
	for {
		rx = rx[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-s.rx:
			rx = append(rx, r)
		case <-s.wake:
		case <-timer.C:
		}
		// Every packet already read goes before the timers: after this
		// goroutine was held up (a busy machine), the timer and packets
		// that came in time are ready together, and select picks either.
		for drained := false; !drained; {
			select {
			case r := <-s.rx:
				rx = append(rx, r)
			default:
				drained = true
			}
		}
		next := s.step(time.Now(), rx, send4, send6)
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
	}
}

// step applies the packets rx and the echo replies queued, then runs the
// detection timers and sends the packets and echoes due. It returns the
// earliest session deadline.
func (s *Server) step(now time.Time, rx []received, send4, send6 net.PacketConn) time.Time {
	var changes []Session
	var next time.Time
	s.mu.Lock()
	for _, e := range []*echoConn{s.echo4, s.echo6} {
		if e == nil {
			continue
		}
		err := e.drain(func(src netip.Addr, seq uint16) {
			if ss := s.sessions[src]; ss != nil {
				ss.echoReply(seq)
			}
		})
		if err != nil {
			s.log.Warn("read bfd echo replies", "err", err)
		}
	}
	send := func(ss *session, p Packet) {
		c := send4
		if ss.peer.Is6() {
			c = send6
		}
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ss.peer, uint16(s.peerPort)))
		if _, err := c.WriteTo(p.Marshal(), dst); err != nil && !ss.sendFailed {
			ss.sendFailed = true
			s.log.Warn("send bfd packet", "peer", ss.peer, "state", ss.state, "err", err)
		}
	}
	for _, r := range rx {
		ss := s.demux(r)
		if ss == nil {
			continue
		}
		changed, reply := ss.receive(r.p, now)
		if changed {
			changes = append(changes, ss.snapshot())
		}
		if reply {
			send(ss, ss.final())
		}
	}
	for _, ss := range s.sessions {
		if ss.expired(now) || ss.echoExpired(now) {
			changes = append(changes, ss.snapshot())
		}
		if ss.due(now) {
			send(ss, ss.packet(now))
		}
		if seq, ok := ss.echoDue(now); ok {
			s.sendEcho(ss, seq)
		}
		if d := ss.deadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	s.mu.Unlock()

	for _, c := range changes {
		s.log.Info("bfd session changed state", "peer", c.Peer, "state", c.State, "diag", c.Diag)
		s.onChange(c)
	}
	return next
}

// sendEcho sends echo request seq of session ss, and records it sent as of
// when the send returned. s.mu must be held.
func (s *Server) sendEcho(ss *session, seq uint16) {
	e := s.echo4
	if ss.peer.Is6() {
		e = s.echo6
	}
	if e == nil {
		return
	}
	if err := e.send(ss.peer, seq); err != nil {
		s.log.Debug("send bfd echo", "peer", ss.peer, "err", err)
		return // no answer is owed
	}
	ss.echoSent(seq, time.Now())
}

// demux finds the session of a packet (RFC 5880 §6.8.6): by source address,
// as sessions are single hop, checking that a non-zero your-discriminator is
// that session's. s.mu must be held.
func (s *Server) demux(r received) *session {
	ss := s.sessions[r.src]
	if ss == nil && r.src.Zone() != "" {
		ss = s.sessions[r.src.WithZone("")]
	}
	switch {
	case ss == nil:
		s.log.Debug("drop bfd packet from unknown peer", "from", r.src)
		return nil
	case r.p.YourDiscr != 0 && r.p.YourDiscr != ss.localDiscr:
		s.log.Debug("drop bfd packet for another discriminator", "from", r.src, "discr", r.p.YourDiscr)
		return nil
	}
	return ss
}
