package bfd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The echo function. A BFD session runs between two agents: Go programs,
// which a saturated one-CPU VM holds up for longer than a sub-second
// detection time (measured: sessions at 3 x 200ms went down every few
// seconds under a load that kept the VM 100 % busy, while the same LB4s
// answered pings within 32ms). RFC 5880 §6.4 answers this with the echo
// function: packets the peer's forwarding plane returns, with no process
// of the peer's in the loop, so that control packets can go slowly. Here
// the echoes are ICMP echo requests, which the peer's kernel answers
// whatever its agent does (and an LB4's IPVS forwards in that kernel): a
// frozen peer (every packet dropped) or a dark link answers nothing.
//
// The sender's own delays must not fail a session either. So the echo
// socket is never read by a goroutine of its own: the goroutine that runs
// the sessions reads every reply already queued, without blocking, before
// it judges any session (echoConn.drain). A reply that came in time is
// then seen however late that goroutine ran.

// echoConn is a raw ICMP socket of one family that sends echo requests
// with one identifier and reads the replies to them without blocking.
type echoConn struct {
	c     net.PacketConn
	raw   syscall.RawConn
	v6    bool
	id    uint16
	buf   []byte
	proto int // for icmp.ParseMessage
}

// openEcho opens the echo socket of network, "ip4:icmp" or
// "ip6:ipv6-icmp", through listen, letting only echo replies in.
func openEcho(listen ListenFunc, network string, id uint16) (*echoConn, error) {
	v6 := network == "ip6:ipv6-icmp"
	host, proto := "0.0.0.0", 1
	if v6 {
		host, proto = "::", 58
	}
	c, err := listen(network, host)
	if err != nil {
		return nil, fmt.Errorf("open echo socket %s: %w", network, err)
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("echo socket %s: %T has no file descriptor", network, c)
	}
	raw, err := sc.SyscallConn()
	if err == nil {
		err = filterEchoReplies(c, v6)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("echo socket %s: %w", network, err)
	}
	return &echoConn{c: c, raw: raw, v6: v6, id: id, buf: make([]byte, 1500), proto: proto}, nil
}

// filterEchoReplies makes the kernel queue echo replies only on c: a raw
// ICMP socket gets every ICMP message of the namespace otherwise
// (neighbour discovery, other programs' pings).
func filterEchoReplies(c net.PacketConn, v6 bool) error {
	if v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		return ipv6.NewPacketConn(c).SetICMPFilter(&f)
	}
	var f ipv4.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv4.ICMPTypeEchoReply)
	return ipv4.NewPacketConn(c).SetICMPFilter(&f)
}

func (e *echoConn) close() { e.c.Close() }

// send sends echo request seq to dst.
func (e *echoConn) send(dst netip.Addr, seq uint16) error {
	typ := icmp.Type(ipv4.ICMPTypeEcho)
	if e.v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(e.id), Seq: int(seq), Data: []byte("lab bfd echo")}}
	b, err := m.Marshal(nil) // the kernel sums ICMPv6 (it knows the pseudo-header)
	if err != nil {
		return err
	}
	_, err = e.c.WriteTo(b, &net.IPAddr{IP: net.IP(dst.AsSlice()), Zone: dst.Zone()})
	return err
}

// drain reads, without blocking, every datagram queued on the socket, and
// calls reply with the source and sequence number of each echo reply
// carrying e's identifier. An unreachable peer (an ICMP error, or no
// neighbour) makes a read fail once with the socket's pending error
// (EHOSTUNREACH...): that is no answer, and reading goes on.
func (e *echoConn) drain(reply func(src netip.Addr, seq uint16)) error {
	var rerr error
	err := e.raw.Read(func(fd uintptr) bool {
		for failures := 0; ; {
			n, from, err := unix.Recvfrom(int(fd), e.buf, unix.MSG_DONTWAIT)
			switch {
			case err == nil:
				e.parse(e.buf[:n], from, reply)
			case err == unix.EAGAIN:
				return true // done: never wait for more
			case err == unix.EINTR:
			case failures < maxPendingErrors:
				failures++
			default:
				rerr = err
				return true
			}
		}
	})
	return errors.Join(err, rerr)
}

// maxPendingErrors is how many failed reads in a row drain takes for
// pending errors of the socket (each is reported once) before it gives up.
const maxPendingErrors = 16

// parse applies one datagram: an IPv4 raw socket reads the IP header too.
func (e *echoConn) parse(b []byte, from unix.Sockaddr, reply func(netip.Addr, uint16)) {
	var src netip.Addr
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(sa.Addr)
		if len(b) < 20 || b[0]>>4 != 4 || len(b) < int(b[0]&0x0f)*4 {
			return
		}
		b = b[int(b[0]&0x0f)*4:]
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(sa.Addr)
	default:
		return
	}
	m, err := icmp.ParseMessage(e.proto, b)
	if err != nil || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
		return
	}
	if echo, ok := m.Body.(*icmp.Echo); ok && echo.ID == int(e.id) {
		reply(src, uint16(echo.Seq))
	}
}

// Answers says whether addr's kernel answers an ICMP echo request within
// d: it sends one every quarter of d, and after d looks at what came
// back, so that being held up past d does not make a peer that answered
// look dead. listen opens the socket (nil: net.ListenPacket). An error
// opening it is returned.
func Answers(ctx context.Context, listen ListenFunc, addr netip.Addr, d time.Duration) (bool, error) {
	if listen == nil {
		listen = net.ListenPacket
	}
	network := "ip4:icmp"
	if addr.Is6() {
		network = "ip6:ipv6-icmp"
	}
	e, err := openEcho(listen, network, uint16(rand.IntN(1<<16-1)+1))
	if err != nil {
		return false, err
	}
	defer e.close()
	answered := false
	seen := func(src netip.Addr, _ uint16) {
		if src == addr.WithZone("") || src == addr {
			answered = true
		}
	}
	end := time.Now().Add(d)
	tick := time.NewTicker(d / 4)
	defer tick.Stop()
	for seq := uint16(1); ; seq++ {
		if time.Now().Before(end) {
			_ = e.send(addr, seq)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
		}
		if err := e.drain(seen); err != nil {
			return false, fmt.Errorf("read echo replies: %w", err)
		}
		if answered {
			return true, nil
		}
		if !time.Now().Before(end) {
			return false, nil
		}
	}
}
