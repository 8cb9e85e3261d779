package traffic

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// fakeDialer connects to an in-memory server that answers every request
// with a 200 response of size bytes.
type fakeDialer struct{ size int }

func (d *fakeDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Lab-Server: S1\r\nConnection: close\r\n\r\n", d.size)
	return &fakeConn{head: []byte(head), body: d.size}, nil
}

// fakeConn is the client's end of an in-memory connection. Reads return
// the response header, then zero bytes as fast as asked, then EOF.
type fakeConn struct {
	head []byte
	body int
}

var fakeLocal = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 10), Port: 40000}

func (c *fakeConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	if c.body == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.body)
	clear(p[:n])
	c.body -= n
	return n, nil
}

func (c *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return fakeLocal }
func (c *fakeConn) RemoteAddr() net.Addr             { return fakeLocal }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// TestFakeConn checks the fake: a whole response, then no more data.
func TestFakeConn(t *testing.T) {
	conn, _ := (&fakeDialer{size: 10}).DialContext(context.Background(), "tcp4", "")
	var got []byte
	buf := make([]byte, 7)
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	want := "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Lab-Server: S1\r\nConnection: close\r\n\r\n" + string(make([]byte, 10))
	diff(t, "response", string(got), want)
}

// TestReadsDoNotAllocate downloads bodies of 64 and 1024 reads from the
// fake server: the connections must cost the same number of allocations,
// whatever their length.
func TestReadsDoNotAllocate(t *testing.T) {
	const readSize = 16 << 10
	perConn := func(reads int) float64 {
		t.Helper()
		cfg := Config{
			Targets:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:80")},
			Sources:   []netip.Addr{netip.MustParseAddr("127.0.0.10")},
			Workers:   1,
			ReadSize:  readSize,
			Pause:     -1,
			EarlyStop: -1,
		}.WithDefaults()
		r := newRun(cfg, nil)
		r.dialers4[0].dialer = &fakeDialer{size: reads * readSize}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := r.workers[0]
		return testing.AllocsPerRun(20, func() {
			c := w.connect(ctx)
			if c.Outcome != OutcomeOK || c.Bytes != int64(reads*readSize) || c.Server != "S1" {
				t.Fatalf("connection %+v, want ok with %d bytes from S1", c, reads*readSize)
			}
		})
	}
	short, long := perConn(64), perConn(1024)
	t.Logf("allocations per connection: %.0f with 64 reads, %.0f with 1024 reads", short, long)
	if long > short+2 {
		t.Errorf("%.0f allocations for 1024 reads, %.0f for 64: reads allocate", long, short)
	}
}
