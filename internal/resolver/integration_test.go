package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lab-lb/lab/internal/nameserver"
)

// serveZone serves z on 127.0.0.1 over UDP and TCP (one port) until the
// test ends, and returns the server and its address.
func serveZone(t *testing.T, z nameserver.Zone) (*nameserver.Server, netip.AddrPort) {
	t.Helper()
	var udp net.PacketConn
	var tcp net.Listener
	for range 10 { // the UDP port chosen may be taken for TCP
		var err error
		udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tcp, err = net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			break
		}
		udp.Close()
		udp = nil
	}
	if udp == nil {
		t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	}
	s := nameserver.New(z, nil)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, udp, tcp) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, netip.MustParseAddrPort(udp.LocalAddr().String())
}

// deadServer returns a UDP address on 127.0.0.1 where nothing listens.
func deadServer(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return netip.MustParseAddrPort(c.LocalAddr().String())
}

// TestAgainstNameserver resolves names of a nameserver.Server over the
// loopback with the default Exchange: failover from a dead server,
// a big answer over TCP, NXDOMAIN and NODATA, and a change of health seen
// once the cached answer's TTL has run out.
func TestAgainstNameserver(t *testing.T) {
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)}))
	}
	ns, addr := serveZone(t, nameserver.Zone{
		Origin: "example.org.",
		TTL:    30 * time.Second,
		NS:     []nameserver.Host{{Name: "ns1.example.org.", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}},
		Services: map[string][]netip.Addr{
			"www.example.org.":    addrs("192.0.2.1", "192.0.2.2", "2001:db8::1"),
			"v4only.example.org.": addrs("192.0.2.10"),
			"many.example.org.":   many,
		},
	})
	for _, a := range append(addrs("192.0.2.1", "2001:db8::1"), many...) {
		ns.SetUp(a, true)
	}
	clk := newClock()
	r := New([]netip.AddrPort{deadServer(t), addr}, Config{Timeout: 5 * time.Second, Now: clk.Now})

	lookup(t, r, "www.example.org", addrs("192.0.2.1", "2001:db8::1"))
	if st := r.Stats(); st.Queries != 4 {
		t.Errorf("%d queries, want 4: A and AAAA to the dead server, then to the live one", st.Queries)
	}
	got, err := r.Lookup(context.Background(), "many.example.org.")
	if err != nil || len(got) != len(many) {
		t.Fatalf("lookup many: %d addresses, %v; want all %d (over TCP)", len(got), err, len(many))
	}
	if _, err := r.Lookup(context.Background(), "nope.example.org."); !errors.Is(err, ErrNXDomain) {
		t.Errorf("lookup nope: %v, want NXDOMAIN", err)
	}
	if _, err := r.Lookup(context.Background(), "v4only.example.org."); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("lookup v4only, down: %v, want no address", err)
	}
	if _, err := r.Lookup(context.Background(), "www.example.com."); !errors.Is(err, ErrServer) {
		t.Errorf("lookup outside the zone: %v, want a server error (REFUSED)", err)
	}

	ns.SetUp(netip.MustParseAddr("192.0.2.1"), false)
	ns.SetUp(netip.MustParseAddr("192.0.2.2"), true)
	ns.SetUp(netip.MustParseAddr("192.0.2.10"), true)
	clk.Add(29 * time.Second)
	lookup(t, r, "www.example.org.", addrs("192.0.2.1", "2001:db8::1")) // cached
	if _, err := r.Lookup(context.Background(), "v4only.example.org."); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("lookup v4only within the negative TTL: %v, want no address", err)
	}
	clk.Add(time.Second)
	lookup(t, r, "www.example.org.", addrs("192.0.2.2", "2001:db8::1"))
	lookup(t, r, "v4only.example.org.", addrs("192.0.2.10"))
}

// TestNoServer checks the default Exchange against a dead server:
// ErrTimeout, as fast as the kernel says nothing listens.
func TestNoServer(t *testing.T) {
	r := New([]netip.AddrPort{deadServer(t)}, Config{Timeout: 500 * time.Millisecond, Attempts: 1})
	if _, err := r.Lookup(context.Background(), "www.example.org."); !errors.Is(err, ErrTimeout) {
		t.Errorf("lookup: %v, want ErrTimeout", err)
	}
}

// TestExchangeCanceled checks that the default Exchange gives up when its
// context is canceled, not only at its deadline, against a server that
// never answers.
func TestExchangeCanceled(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	server := netip.MustParseAddrPort(silent.LocalAddr().String())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Exchange(ctx, new(dns.Msg).SetQuestion("www.example.org.", dns.TypeA), server)
		done <- err
	}()
	// Cancel once the query has reached the server.
	buf := make([]byte, 512)
	if err := silent.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := silent.ReadFrom(buf); err != nil {
		t.Fatalf("no query reached the server: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("exchange: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exchange still waiting 10 s after its context was canceled")
	}
}
