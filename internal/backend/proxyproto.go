package backend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// PROXY protocol version 1, as specified in HAProxy's
// doc/proxy-protocol.txt, section 2.1.
const (
	proxyPrefix = "PROXY "
	// proxyMaxLen is the longest valid header, CRLF included.
	proxyMaxLen = 107
	// proxyHeaderTimeout bounds how long a client may take to send the
	// header.
	proxyHeaderTimeout = 5 * time.Second
)

// Transport protocols of a PROXY v1 header.
const (
	protoTCP4    = "TCP4"
	protoTCP6    = "TCP6"
	protoUnknown = "UNKNOWN"
)

// proxyHeader is a parsed PROXY v1 header.
type proxyHeader struct {
	// Proto is protoTCP4, protoTCP6 or protoUnknown.
	Proto string
	// Src and Dst are the original connection's endpoints, zero for
	// protoUnknown.
	Src, Dst netip.AddrPort
}

// String formats h as a header line, CRLF included.
func (h proxyHeader) String() string {
	if h.Proto == protoUnknown {
		return proxyPrefix + protoUnknown + "\r\n"
	}
	return fmt.Sprintf("%s%s %s %s %d %d\r\n", proxyPrefix, h.Proto,
		h.Src.Addr(), h.Dst.Addr(), h.Src.Port(), h.Dst.Port())
}

// errNotProxy reports a connection that does not start like a PROXY v1
// header.
var errNotProxy = errors.New("not a PROXY protocol v1 header")

// readProxyHeader reads one PROXY v1 header from r, reading no byte past its
// CRLF, and rejecting early what cannot become a header.
func readProxyHeader(r io.ByteReader) (proxyHeader, error) {
	var buf [proxyMaxLen]byte
	n := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if n == 0 && errors.Is(err, io.EOF) {
				return proxyHeader{}, fmt.Errorf("read PROXY header: %w", err)
			}
			return proxyHeader{}, fmt.Errorf("read PROXY header after %q: %w", buf[:n], err)
		}
		buf[n] = c
		n++
		switch {
		case n <= len(proxyPrefix) && c != proxyPrefix[n-1]:
			return proxyHeader{}, fmt.Errorf("%w: starts with %q", errNotProxy, buf[:n])
		case c == '\n':
			return parseProxyHeader(buf[:n])
		case n == proxyMaxLen:
			return proxyHeader{}, fmt.Errorf("PROXY header %q: no CRLF within %d bytes", buf[:n], proxyMaxLen)
		}
	}
}

// parseProxyHeader parses a complete PROXY v1 header line, CRLF included,
// strictly: exactly one space between fields, IPv4 addresses in dotted
// decimal without leading zeros, IPv6 addresses without zone, ports in
// decimal without leading zeros. After UNKNOWN, anything up to the CRLF is
// ignored, as the specification requires.
func parseProxyHeader(line []byte) (proxyHeader, error) {
	if len(line) > proxyMaxLen {
		return proxyHeader{}, fmt.Errorf("PROXY header: longer than %d bytes", proxyMaxLen)
	}
	body, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok || bytes.ContainsAny(body, "\r\n") {
		return proxyHeader{}, fmt.Errorf("PROXY header %q: must end with the only CRLF", line)
	}
	rest, ok := strings.CutPrefix(string(body), proxyPrefix)
	if !ok {
		return proxyHeader{}, fmt.Errorf("%w: %q", errNotProxy, line)
	}
	fields := strings.Split(rest, " ")
	h := proxyHeader{Proto: fields[0]}
	switch h.Proto {
	case protoUnknown:
		return h, nil
	case protoTCP4, protoTCP6:
	default:
		return proxyHeader{}, fmt.Errorf("PROXY header %q: unknown protocol %q", line, h.Proto)
	}
	if len(fields) != 5 {
		return proxyHeader{}, fmt.Errorf("PROXY header %q: want 6 fields separated by single spaces", line)
	}
	src, err := parseProxyAddr(h.Proto, fields[1])
	if err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY header %q: source: %w", line, err)
	}
	dst, err := parseProxyAddr(h.Proto, fields[2])
	if err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY header %q: destination: %w", line, err)
	}
	sport, err := parseProxyPort(fields[3])
	if err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY header %q: source port: %w", line, err)
	}
	dport, err := parseProxyPort(fields[4])
	if err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY header %q: destination port: %w", line, err)
	}
	h.Src = netip.AddrPortFrom(src, sport)
	h.Dst = netip.AddrPortFrom(dst, dport)
	return h, nil
}

// parseProxyAddr parses an address of the family proto announces.
func parseProxyAddr(proto, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	switch {
	case proto == protoTCP4 && !a.Is4():
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", s)
	case proto == protoTCP6 && !a.Is6():
		return netip.Addr{}, fmt.Errorf("%q is not an IPv6 address", s)
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%q has a zone", s)
	}
	return a, nil
}

// parseProxyPort parses a port in decimal without leading zeros.
func parseProxyPort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	var n int
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a port", s)
		}
		n = 10*n + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	return uint16(n), nil
}

// proxyListener wraps accepted connections so that each one reads its
// PROXY header first. The header is read lazily, in the connection's own
// goroutine (net/http asks for RemoteAddr first thing), so a slow client
// never holds up Accept.
type proxyListener struct {
	net.Listener
	log     *slog.Logger
	timeout time.Duration
}

// Accept returns the next connection, wrapped.
func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &proxyConn{Conn: c, l: l, br: bufio.NewReaderSize(c, 1024)}, nil
}

// proxyConn is a connection whose addresses come from its PROXY header.
// Until the header has been read, every method that needs it reads it; a
// connection with an invalid header is closed, and its reads and writes
// fail with a *net.OpError so that net/http drops it silently.
type proxyConn struct {
	net.Conn
	l  *proxyListener
	br *bufio.Reader

	once          sync.Once
	err           error
	remote, local net.Addr
}

func (c *proxyConn) init() {
	c.once.Do(func() {
		c.remote, c.local = c.Conn.RemoteAddr(), c.Conn.LocalAddr()
		h, err := c.readHeader()
		if err != nil {
			c.err = &net.OpError{Op: "read", Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
			if errors.Is(err, io.EOF) {
				c.l.log.Debug("connection closed before its PROXY header", "remote", c.remote)
			} else {
				c.l.log.Warn("invalid PROXY protocol header, closing connection", "remote", c.remote, "err", err)
			}
			_ = c.Conn.Close()
			return
		}
		if h.Proto != protoUnknown {
			c.remote, c.local = net.TCPAddrFromAddrPort(h.Src), net.TCPAddrFromAddrPort(h.Dst)
		}
	})
}

// readHeader reads the header within the listener's time limit.
func (c *proxyConn) readHeader() (proxyHeader, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.l.timeout)); err != nil {
		return proxyHeader{}, fmt.Errorf("set PROXY header deadline: %w", err)
	}
	h, err := readProxyHeader(c.br)
	if err != nil {
		return proxyHeader{}, err
	}
	if err := c.Conn.SetReadDeadline(time.Time{}); err != nil {
		return proxyHeader{}, fmt.Errorf("clear PROXY header deadline: %w", err)
	}
	return h, nil
}

// Read reads the data after the header.
func (c *proxyConn) Read(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.br.Read(p)
}

// Write writes once the header is known to be valid.
func (c *proxyConn) Write(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Write(p)
}

// RemoteAddr returns the header's source, or the peer's address for an
// UNKNOWN or invalid header.
func (c *proxyConn) RemoteAddr() net.Addr {
	c.init()
	return c.remote
}

// LocalAddr returns the header's destination, or the local address for an
// UNKNOWN or invalid header.
func (c *proxyConn) LocalAddr() net.Addr {
	c.init()
	return c.local
}
