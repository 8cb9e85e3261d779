package lab_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/lab-lb/lab/internal/cli"
	"github.com/lab-lb/lab/internal/pcapstream"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

// capturedPacket is one IPv4 packet of a capture, decoded.
type capturedPacket struct {
	// outgoing is set for a packet the node sent, in a Linux cooked
	// capture (an Ethernet capture does not say).
	outgoing bool
	ip4      []*layers.IPv4 // the outer header first: two for IPIP
	tcp      *layers.TCP
}

// readPcap reads a pcap file back with a reader of its own (gopacket's),
// failing t unless the file is complete, and decodes its IPv4 packets.
func readPcap(t *testing.T, what string, b []byte) (uint32, []capturedPacket) {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: not a pcap file (%d bytes): %v", what, len(b), err)
	}
	// gopacket 1.1.19 keeps link types in a byte: 276 (Linux cooked
	// capture v2) would read as 20. The file header has it whole, in the
	// byte order of the magic number.
	order := binary.ByteOrder(binary.LittleEndian)
	if binary.BigEndian.Uint32(b) == 0xa1b2c3d4 || binary.BigEndian.Uint32(b) == 0xa1b23c4d {
		order = binary.BigEndian
	}
	lt := order.Uint32(b[20:24]) & 0x0fffffff
	var pkts []capturedPacket
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: packet %d: %v", what, len(pkts)+1, err)
		}
		// Where the network header starts, its ethertype, and whether
		// the node sent the packet (Linux cooked captures only).
		var off int
		var ethertype uint16
		var outgoing bool
		switch lt {
		case pcapstream.LinkTypeEthernet:
			off, ethertype = 14, binary.BigEndian.Uint16(data[12:])
		case pcapstream.LinkTypeLinuxSLL: // packet type 4: outgoing
			off, ethertype, outgoing = 16, binary.BigEndian.Uint16(data[14:]), binary.BigEndian.Uint16(data) == 4
		case pcapstream.LinkTypeLinuxSLL2:
			off, ethertype, outgoing = 20, binary.BigEndian.Uint16(data), data[10] == 4
		case pcapstream.LinkTypeRaw: // a tunnel: the IP header first
			if len(data) > 0 && data[0]>>4 == 4 {
				ethertype = uint16(layers.EthernetTypeIPv4)
			}
		default:
			t.Fatalf("%s: link type %d", what, lt)
		}
		if ethertype != uint16(layers.EthernetTypeIPv4) {
			continue
		}
		p := capturedPacket{outgoing: outgoing}
		for _, l := range gopacket.NewPacket(data[off:], layers.LayerTypeIPv4, gopacket.Default).Layers() {
			switch l := l.(type) {
			case *layers.IPv4:
				p.ip4 = append(p.ip4, l)
			case *layers.TCP:
				p.tcp = l
			}
		}
		pkts = append(pkts, p)
	}
	return lt, pkts
}

// stderrWatch is a command's standard error that reports its lines that
// say a capture listens.
type stderrWatch struct {
	mu        sync.Mutex
	b         bytes.Buffer
	listening chan<- string
}

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	for _, line := range strings.Split(string(p), "\n") {
		if strings.Contains(line, "listening on") {
			w.listening <- line
		}
	}
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestE2ECapture captures on lb7-1 while client1 makes requests to the
// VIP from 20 source addresses: on its infra interface through the API
// (Ethernet, with a filter), on every interface through the command line
// to standard output (Linux cooked capture), and on its tunnel from
// lb4-1 (raw IP). Read back with gopacket, the first two hold the LB4s'
// IPIP packets to the VIP and lb7-1's answers straight from the VIP to
// the clients (direct return); the tunnel, the clients' packets
// decapsulated.
// Stopping a capture stops tcpdump in the node; -c, --duration, a bad
// filter and the lab going down end captures as they should.
func TestE2ECapture(t *testing.T) {
	const name = "e2e-capture"
	l := up(t, "../topologies/minimal.yaml", name)
	st := status(t, l)
	lb4s := map[netip.Addr]bool{}
	for _, n := range []string{"lb4-1", "lb4-2"} {
		lb4s[netip.MustParseAddr(addressOn(t, st, n, "infra"))] = true
	}
	vip := netip.MustParseAddr("198.51.100.1")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	listening := make(chan string, 4)
	type outcome struct {
		res *lab.CaptureResult
		err error
	}
	var infraPcap, anyPcap, tunnelPcap bytes.Buffer
	apiDone, tunnelDone, cliDone := make(chan outcome, 1), make(chan outcome, 1), make(chan error, 1)
	filter := "ip proto 4 or src host " + vip.String()
	go func() {
		res, err := l.Capture(ctx, "lb7-1", lab.CaptureOptions{Interface: "infra", Filter: strings.Fields(filter),
			Listening: func(line string) { listening <- "api: " + line }}, &infraPcap)
		apiDone <- outcome{res, err}
	}()
	// lb7-1's tunnel from lb4-1, named after it, as the command line
	// would split its words.
	tunnel, err := l.CaptureArgs("lb7-1", []string{"lb4-1", "tcp", "port", "80"})
	if err != nil || tunnel.Interface != "lb4-1" {
		t.Fatalf("lab capture lb7-1 lb4-1 tcp port 80: %+v %v", tunnel, err)
	}
	tunnel.Listening = func(line string) { listening <- "tunnel: " + line }
	go func() {
		res, err := l.Capture(ctx, "lb7-1", tunnel, &tunnelPcap)
		tunnelDone <- outcome{res, err}
	}()
	cliStderr := &stderrWatch{listening: listening}
	go func() { cliDone <- cli.Run(ctx, []string{"--name", name, "capture", "lb7-1"}, &anyPcap, cliStderr) }()
	for range 3 {
		select {
		case line := <-listening:
			t.Logf("%s", line)
		case <-time.After(time.Minute):
			t.Fatalf("the captures do not listen; the command line said: %s", cliStderr)
		}
	}

	// Which client addresses lb7-1 answers (Maglev spreads them).
	clients := map[netip.Addr]bool{}
	for _, src := range sourceRange("203.0.113", 1, 20) {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := l.Get(rctx, "client1", "http://"+vip.String()+"/", src, 10*time.Second)
		cancel()
		if err != nil || res.Error != "" || res.Status != 200 {
			t.Fatalf("GET the VIP from %s: %v %+v", src, err, res)
		}
		if h := res.Header["X-Lab-Lb7"]; len(h) == 1 && h[0] == "lb7-1" {
			clients[netip.MustParseAddr(src)] = true
		}
	}
	if len(clients) == 0 {
		t.Fatalf("lb7-1 answered none of 20 client addresses")
	}
	// Stopped right away: tcpdump is interrupted and what it holds still
	// arrives.
	stopped := time.Now()
	stop()
	api := <-apiDone
	if api.err != nil || api.res.Stopped != lab.CaptureInterrupted {
		t.Fatalf("capture on infra: %+v %v", api.res, api.err)
	}
	if err := <-cliDone; err != nil {
		t.Fatalf("lab capture lb7-1: %v; standard error: %s", err, cliStderr)
	}
	tun := <-tunnelDone
	if tun.err != nil || tun.res.Stopped != lab.CaptureInterrupted {
		t.Fatalf("capture on the tunnel from lb4-1: %+v %v", tun.res, tun.err)
	}
	t.Logf("the captures returned %s after they were stopped; Capture on infra: %+v", time.Since(stopped).Round(time.Millisecond), *api.res)
	t.Logf("lab capture lb7-1 said: %s", strings.TrimSpace(cliStderr.String()))
	waitNoTcpdump(t, l, name)

	for _, c := range []struct {
		what string
		b    []byte
		res  *lab.CaptureResult // the API's count, to compare
	}{
		{"lb7-1 infra (" + filter + ")", infraPcap.Bytes(), api.res},
		{"lb7-1 any (command line)", anyPcap.Bytes(), nil},
	} {
		lt, pkts := readPcap(t, c.what, c.b)
		if c.res != nil && (c.res.Packets != len(pkts) || c.res.LinkType != lt) {
			// Every packet of the filter is IPv4: the counts agree.
			t.Errorf("%s: Capture reported %d packets, link type %d; the file has %d IPv4 packets, link type %d",
				c.what, c.res.Packets, c.res.LinkType, len(pkts), lt)
		}
		var ipip, direct, other int
		for _, p := range pkts {
			switch {
			case len(p.ip4) == 2 && p.ip4[0].Protocol == layers.IPProtocolIPv4 && lb4s[addrOf(p.ip4[0].SrcIP)] &&
				addrOf(p.ip4[1].DstIP) == vip && p.tcp != nil && p.tcp.DstPort == 80:
				ipip++
			case len(p.ip4) == 1 && addrOf(p.ip4[0].SrcIP) == vip && clients[addrOf(p.ip4[0].DstIP)] &&
				p.tcp != nil && p.tcp.SrcPort == 80 && (lt == pcapstream.LinkTypeEthernet || p.outgoing):
				direct++
			default:
				other++
			}
		}
		t.Logf("%s: link type %d, %d IPv4 packets: %d IPIP from an LB4 to the VIP port 80, %d from the VIP to a client (direct return), %d others",
			c.what, lt, len(pkts), ipip, direct, other)
		if ipip == 0 || direct == 0 {
			t.Errorf("%s: want IPIP packets from the LB4s to %s:80 and direct-return packets from it to the %d clients lb7-1 served", c.what, vip, len(clients))
		}
		if c.res != nil && other != 0 {
			t.Errorf("%s: %d packets the filter should have left out", c.what, other)
		}
	}

	t.Logf("lb7-1 answered %d of the 20 client addresses", len(clients))

	// The tunnel from lb4-1 holds what lb4-1 forwarded, decapsulated:
	// the clients' packets to the VIP.
	lt, pkts := readPcap(t, "lb7-1 lb4-1 (tunnel)", tunnelPcap.Bytes())
	var fromClients int
	for _, p := range pkts {
		if len(p.ip4) == 1 && clients[addrOf(p.ip4[0].SrcIP)] && addrOf(p.ip4[0].DstIP) == vip && p.tcp != nil && p.tcp.DstPort == 80 {
			fromClients++
		}
	}
	t.Logf("lb7-1 lb4-1 (tunnel): link type %d, %d IPv4 packets, %d from a client to the VIP port 80", lt, len(pkts), fromClients)
	if lt != pcapstream.LinkTypeRaw || fromClients == 0 || fromClients != len(pkts) || tun.res.Packets != len(pkts) {
		t.Errorf("lb7-1 lb4-1 (tunnel): want raw IP packets from the clients to the VIP port 80, and nothing else; Capture said %+v", *tun.res)
	}

	// -c: tcpdump stops by itself (health checks and BGP keep every
	// interface busy); --duration; a filter tcpdump refuses.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b bytes.Buffer
	res, err := l.Capture(ctx, "lb7-1", lab.CaptureOptions{Count: 3}, &b)
	t.Logf("-c 3: %+v %v", res, err)
	if err != nil || res.Stopped != lab.CaptureCount || res.Packets != 3 {
		t.Errorf("-c 3: %+v %v", res, err)
	} else if _, pkts := readPcap(t, "-c 3", b.Bytes()); len(pkts) > 3 {
		t.Errorf("-c 3: %d packets in the file", len(pkts))
	}
	b.Reset()
	start := time.Now()
	res, err = l.Capture(ctx, "lb7-1", lab.CaptureOptions{Interface: "servers", Duration: 2 * time.Second}, &b)
	t.Logf("--duration 2s on servers: %+v %v after %s", res, err, time.Since(start).Round(time.Millisecond))
	if err != nil || res.Stopped != lab.CaptureDuration || time.Since(start) < 2*time.Second {
		t.Errorf("--duration 2s: %+v %v after %s", res, err, time.Since(start))
	} else {
		readPcap(t, "--duration 2s", b.Bytes())
	}
	_, err = l.Capture(ctx, "lb7-1", lab.CaptureOptions{Filter: []string{"tcp", "port", "80", "and", "and"}}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("a bad filter: error %v, want tcpdump's syntax error", err)
	}
	t.Logf("a bad filter: %v", err)
	// What cancelling a request does (after a stopped capture's grace, or
	// ^C on lab exec): tcpdump is killed.
	ectx, ecancel := context.WithTimeout(ctx, 2*time.Second)
	code, err := l.Exec(ectx, "lb7-1", []string{"tcpdump", "-w", "-", "-i", "any"}, nil, io.Discard, io.Discard)
	ecancel()
	t.Logf("lab exec lb7-1 -- tcpdump, cancelled: %d %v", code, err)
	waitNoTcpdump(t, l, name)

	// The lab going down ends a capture well.
	b.Reset()
	heard := make(chan struct{})
	go func() {
		res, err := l.Capture(context.Background(), "lb7-1", lab.CaptureOptions{Listening: func(string) { close(heard) }}, &b)
		apiDone <- outcome{res, err}
	}()
	select {
	case <-heard:
	case <-time.After(time.Minute):
		t.Fatalf("the capture does not listen")
	}
	t.Logf("capturing while the lab goes down")
	down := time.Now()
	if err := lab.Down(ctx, name, nil); err != nil {
		t.Fatalf("down: %v", err)
	}
	t.Logf("lab down took %s", time.Since(down).Round(time.Millisecond))
	down = time.Now()
	select {
	case o := <-apiDone:
		t.Logf("the capture returned %s after the lab was down", time.Since(down).Round(time.Millisecond))
		if o.err != nil || o.res.Stopped != lab.CaptureLabDown {
			t.Errorf("capture while the lab goes down: %+v %v", o.res, o.err)
		}
		_, pkts := readPcap(t, "lab down", b.Bytes())
		t.Logf("capture while the lab went down: %+v (%d IPv4 packets)", o.res, len(pkts))
	case <-time.After(30 * time.Second):
		t.Errorf("the capture still runs 30s after the lab went down")
	}
}

func addrOf(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// waitNoTcpdump waits until no tcpdump of lab name runs (each command run
// in a node has LAB_NAME in its environment), and fails t after 10s.
func waitNoTcpdump(t *testing.T, l *lab.Lab, name string) {
	t.Helper()
	script := `for f in $(grep -lx tcpdump /proc/[0-9]*/comm 2>/dev/null); do
		p=${f%/comm}; grep -qzx "LAB_NAME=$1" $p/environ 2>/dev/null && echo "${p#/proc/}"
	done; true`
	start := time.Now()
	testenv.EventuallyEvery(t, 10*time.Second, 500*time.Millisecond, "no tcpdump left after its capture stopped", func() error {
		if out, _ := execOut(t, l, "lb7-1", "sh", "-c", script, "sh", name); out != "" {
			return fmt.Errorf("tcpdump still runs: process %s", strings.TrimSpace(out))
		}
		return nil
	})
	t.Logf("no tcpdump left (checked for %s)", time.Since(start).Round(time.Millisecond))
}
