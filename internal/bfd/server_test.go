package bfd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/lab-lb/lab/internal/testenv"
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// needIPv6 skips the test when there is no IPv6 loopback: every server opens
// IPv6 sockets.
func needIPv6(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback, which every server needs: %v", err)
	}
	c.Close()
}

// freePort returns a UDP port that was free for IPv4 and IPv6 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// recorder collects what a server reports through onChange.
type recorder struct {
	mu      sync.Mutex
	changes []Session
}

func (r *recorder) add(s Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, s)
}

// find returns the first change from the index from on that matches ok.
func (r *recorder) find(from int, ok func(Session) bool) (Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.changes[min(from, len(r.changes)):] {
		if ok(s) {
			return s, true
		}
	}
	return Session{}, false
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

// eventually waits, with testenv's deadline loop, until cond holds.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.EventuallyEvery(t, within, 5*time.Millisecond, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

func allUp(s *Server, n int) bool {
	ss := s.Sessions()
	for _, x := range ss {
		if x.State != Up {
			return false
		}
	}
	return len(ss) == n
}

// testServer starts a server receiving on port and sending to peerPort; it
// stops with the test.
func testServer(t *testing.T, port, peerPort int, peers []netip.Addr, listen ListenFunc, onChange func(Session)) (*Server, context.CancelFunc) {
	t.Helper()
	s := NewServer(fast, listen, nil, onChange)
	s.port, s.peerPort = port, peerPort
	s.SetPeers(peers)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s, cancel
}

func TestServerUpDownUp(t *testing.T) {
	needIPv6(t)
	peers := []netip.Addr{lo6, lo4}
	pa, pb := freePort(t), freePort(t)
	var rec recorder
	a, _ := testServer(t, pa, pb, peers, nil, rec.add)
	b, stopB := testServer(t, pb, pa, peers, nil, nil)
	eventually(t, 5*time.Second, "both servers up", func() bool { return allUp(a, 2) && allUp(b, 2) })
	for _, s := range a.Sessions() {
		if s.TxInterval != fast.Interval || s.DetectTime != 60*time.Millisecond {
			t.Errorf("%s: tx interval %v, detect time %v; want 20ms, 60ms", s.Peer, s.TxInterval, s.DetectTime)
		}
	}

	// b stops: a notices within the detection time, give or take the
	// scheduler of a busy test machine.
	mark := rec.len()
	stopped := time.Now()
	stopB()
	<-b.done
	for _, peer := range peers {
		var got Session
		eventually(t, 5*time.Second, "a reports "+peer.String()+" down", func() bool {
			var ok bool
			got, ok = rec.find(mark, func(s Session) bool { return s.Peer == peer && s.State == Down })
			return ok
		})
		if got.Diag != DiagDetectExpired || !got.Failed() || got.Downs < 1 {
			t.Errorf("%s: %+v, want down, detection time expired, failed", peer, got)
		}
		if d := got.Since.Sub(stopped); d > time.Second {
			t.Errorf("%s: down %v after the peer stopped, want well under 1s", peer, d)
		}
	}

	// b comes back, as a restarted process: a new server on the same port.
	b2, _ := testServer(t, pb, pa, peers, nil, nil)
	eventually(t, 5*time.Second, "both servers up again", func() bool { return allUp(a, 2) && allUp(b2, 2) })
	for _, s := range a.Sessions() {
		if s.Failed() || s.Downs < 1 {
			t.Errorf("after recovery %+v, want up with a down counted", s)
		}
	}
}

// A receive socket shut down from outside, as the lab does to a crashed
// namespace, must not make its reader spin. On some kernels every read then
// returns 0 bytes from no address at once; on others (Linux 6.18 here) the
// non-blocking read keeps returning EAGAIN, so it blocks until ctx is done.
func TestServerShutdownDoesNotSpin(t *testing.T) {
	needIPv6(t)
	var mu sync.Mutex
	conns := map[string]net.PacketConn{}
	listen := func(network, address string) (net.PacketConn, error) {
		c, err := net.ListenPacket(network, address)
		if err == nil {
			mu.Lock()
			conns[network+" "+address] = c
			mu.Unlock()
		}
		return c, err
	}
	port := freePort(t)
	s, stop := testServer(t, port, freePort(t), []netip.Addr{lo4, lo6}, listen, nil)
	if n := s.readers.Load(); n != 2 {
		t.Fatalf("%d readers, want 2", n)
	}
	before := cpuTime(t)
	mu.Lock()
	for _, addr := range []string{"udp4 0.0.0.0:", "udp6 [::]:"} {
		c := conns[addr+strconv.Itoa(port)]
		if c == nil {
			t.Fatalf("no receive socket %s%d among %v", addr, port, conns)
		}
		raw, err := c.(*net.UDPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		// Linux shuts an unconnected socket down but says ENOTCONN.
		var serr error
		if err := raw.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RDWR) }); err != nil || (serr != nil && serr != unix.ENOTCONN) {
			t.Fatalf("shutdown: %v, %v", err, serr)
		}
	}
	mu.Unlock()
	// A spinning reader would burn most of a CPU in the meantime; the
	// server, idle with its peers silent, burns next to nothing.
	time.Sleep(300 * time.Millisecond)
	if used := cpuTime(t) - before; used > 150*time.Millisecond {
		t.Errorf("%v of CPU time used in 300ms after the shutdown", used)
	}
	if got := s.Sessions(); len(got) != 2 {
		t.Errorf("Sessions after the shutdown = %+v", got)
	}
	stop()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		t.Fatalf("goroutines still running 2s after the stop, %d readers", s.readers.Load())
	}
}

// cpuTime is the CPU time the test process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A read of 0 bytes from no address is a shut-down socket: the reader stops
// at the first.
func TestReaderStopsOnShutdownRead(t *testing.T) {
	s := NewServer(fast, nil, nil, nil)
	calls := 0
	read := func([]byte) (int, int, net.Addr, error) {
		calls++
		if calls > 100 {
			return 0, 0, nil, errors.New("still reading")
		}
		return 0, -1, nil, nil
	}
	s.read(context.Background(), read)
	if calls != 1 {
		t.Errorf("%d reads, want 1", calls)
	}
}

// Packets whose TTL or hop limit is not 255 may come from further than one
// hop: they are dropped (RFC 5881 §5).
func TestServerDropsLowTTL(t *testing.T) {
	needIPv6(t)
	var rec recorder
	port := freePort(t)
	s, _ := testServer(t, port, freePort(t), []netip.Addr{lo4, lo6}, nil, rec.add)
	for _, peer := range []netip.Addr{lo4, lo6} {
		c, err := net.ListenPacket("udp", net.JoinHostPort(peer.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		setTTL := func(ttl int) error {
			if peer.Is4() {
				return ipv4.NewPacketConn(c).SetTTL(ttl)
			}
			return ipv6.NewPacketConn(c).SetHopLimit(ttl)
		}
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, uint16(port)))
		// An empty datagram is not a shut-down socket: it is dropped.
		if _, err := c.WriteTo(nil, dst); err != nil {
			t.Fatal(err)
		}
		for _, ttl := range []int{64, 255} {
			if err := setTTL(ttl); err != nil {
				t.Fatal(err)
			}
			// The discriminator names the packet: the one that moves the
			// session to Init shows in the change.
			p := Packet{State: Down, DetectMult: 3, MyDiscr: uint32(ttl), DesiredMinTx: time.Second, RequiredMinRx: time.Second}
			if _, err := c.WriteTo(p.Marshal(), dst); err != nil {
				t.Fatal(err)
			}
		}
		var got Session
		eventually(t, 5*time.Second, peer.String()+" goes init", func() bool {
			var ok bool
			got, ok = rec.find(0, func(s Session) bool { return s.Peer == peer && s.State == Init })
			return ok
		})
		if got.RemoteDiscr != 255 {
			t.Errorf("%s went init on the packet with ttl %d, want 255", peer, got.RemoteDiscr)
		}
		if n := s.readers.Load(); n != 2 {
			t.Errorf("%d readers after an empty datagram, want 2", n)
		}
	}
}

func TestSetPeersBeforeStart(t *testing.T) {
	s := NewServer(fast, nil, nil, nil)
	s.SetPeers([]netip.Addr{lo6, netip.MustParseAddr("::ffff:10.0.0.2"), lo4, {}})
	got := s.Sessions()
	want := []netip.Addr{netip.MustParseAddr("10.0.0.2"), lo4, lo6}
	if len(got) != len(want) {
		t.Fatalf("Sessions = %+v, want peers %v", got, want)
	}
	discrs := map[uint32]bool{}
	for i, x := range got {
		if x.Peer != want[i] || x.State != Down || x.Failed() || x.LocalDiscr == 0 || discrs[x.LocalDiscr] {
			t.Errorf("session %d = %+v, want peer %s, down, a fresh discriminator", i, x, want[i])
		}
		discrs[x.LocalDiscr] = true
	}
	s.SetPeers([]netip.Addr{lo4})
	if got := s.Sessions(); len(got) != 1 || got[0].Peer != lo4 || !discrs[got[0].LocalDiscr] {
		t.Errorf("after removal Sessions = %+v, want the same %s session alone", got, lo4)
	}
}

func TestDemux(t *testing.T) {
	s := NewServer(fast, nil, nil, nil)
	s.SetPeers([]netip.Addr{lo4})
	discr := s.Sessions()[0].LocalDiscr
	for _, tc := range []struct {
		src   netip.Addr
		your  uint32
		found bool
	}{
		{lo4, 0, true},
		{lo4, discr, true},
		{lo4, discr + 1, false},
		{lo6, 0, false},
		{lo6, discr, false}, // the discriminator is lo4's
	} {
		s.mu.Lock()
		got := s.demux(received{Packet{YourDiscr: tc.your}, tc.src})
		s.mu.Unlock()
		if (got != nil) != tc.found {
			t.Errorf("demux from %s to discr %d found %v, want %v", tc.src, tc.your, got != nil, tc.found)
		}
	}
}

func TestStartTwice(t *testing.T) {
	needIPv6(t)
	s, _ := testServer(t, freePort(t), freePort(t), nil, nil, nil)
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("second Start = %v, want already started", err)
	}
}

func TestStartClosesOnError(t *testing.T) {
	var opened []net.PacketConn
	listen := func(network, address string) (net.PacketConn, error) {
		if network == "udp6" {
			return nil, unix.EAFNOSUPPORT
		}
		c, err := net.ListenPacket(network, address)
		if err == nil {
			opened = append(opened, c)
		}
		return c, err
	}
	s := NewServer(fast, listen, nil, nil)
	s.port = freePort(t)
	err := s.Start(context.Background())
	if !errors.Is(err, unix.EAFNOSUPPORT) || !strings.Contains(err.Error(), "open bfd receive socket udp6") {
		t.Fatalf("Start = %v, want an error opening the IPv6 receive socket", err)
	}
	for _, c := range opened {
		if _, err := c.WriteTo([]byte{0}, c.LocalAddr()); err == nil {
			t.Errorf("socket %s left open", c.LocalAddr())
		}
	}
	if len(opened) == 0 {
		t.Error("no socket opened before the failure")
	}
}
