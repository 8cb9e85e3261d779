package backend

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseProxyHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name    string
		in      string
		want    proxyHeader
		wantErr string
	}{
		{
			name: "tcp4",
			in:   "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
			want: proxyHeader{Proto: protoTCP4, Src: ap("192.168.0.1:56324"), Dst: ap("192.168.0.11:443")},
		},
		{
			name: "tcp4 longest",
			in:   "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
			want: proxyHeader{Proto: protoTCP4, Src: ap("255.255.255.255:65535"), Dst: ap("255.255.255.255:65535")},
		},
		{
			name: "tcp4 port zero",
			in:   "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
			want: proxyHeader{Proto: protoTCP4, Src: ap("0.0.0.0:0"), Dst: ap("0.0.0.0:0")},
		},
		{
			name: "tcp6",
			in:   "PROXY TCP6 2001:db8::1 2001:db8:1::5 40000 80\r\n",
			want: proxyHeader{Proto: protoTCP6, Src: ap("[2001:db8::1]:40000"), Dst: ap("[2001:db8:1::5]:80")},
		},
		{
			name: "tcp6 longest, upper case",
			in:   "PROXY TCP6 FFFF:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
			want: proxyHeader{
				Proto: protoTCP6,
				Src:   ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Dst:   ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
			},
		},
		{
			// What inet_ntop, hence HAProxy, writes for a mapped address.
			name: "tcp6 ipv4-mapped",
			in:   "PROXY TCP6 ::ffff:203.0.113.1 ::ffff:198.51.100.1 1 80\r\n",
			want: proxyHeader{Proto: protoTCP6, Src: ap("[::ffff:203.0.113.1]:1"), Dst: ap("[::ffff:198.51.100.1]:80")},
		},
		{name: "unknown short", in: "PROXY UNKNOWN\r\n", want: proxyHeader{Proto: protoUnknown}},
		{
			name: "unknown worst case is ignored",
			in:   "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
			want: proxyHeader{Proto: protoUnknown},
		},
		{name: "unknown with garbage", in: "PROXY UNKNOWN what ever\r\n", want: proxyHeader{Proto: protoUnknown}},

		{name: "longer than 107 bytes", in: "PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n", wantErr: "longer than 107"},
		{name: "lf only", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", wantErr: "CRLF"},
		{name: "no line end", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2", wantErr: "CRLF"},
		{name: "cr inside", in: "PROXY UNKNOWN\r \r\n", wantErr: "CRLF"},
		{name: "lower-case magic", in: "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: "not a PROXY"},
		{name: "http request", in: "GET / HTTP/1.1\r\n", wantErr: "not a PROXY"},
		{name: "lower-case protocol", in: "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: `unknown protocol "tcp4"`},
		{name: "udp", in: "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: `unknown protocol "UDP4"`},
		{name: "unknown glued", in: "PROXY UNKNOWNX\r\n", wantErr: `unknown protocol "UNKNOWNX"`},
		{name: "empty protocol", in: "PROXY \r\n", wantErr: `unknown protocol ""`},
		{name: "double space", in: "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", wantErr: "6 fields"},
		{name: "trailing space", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", wantErr: "6 fields"},
		{name: "missing port", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", wantErr: "6 fields"},
		{name: "tab separator", in: "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", wantErr: "6 fields"},
		{name: "ipv6 in tcp4", in: "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", wantErr: "source: \"::1\" is not an IPv4"},
		{name: "ipv4 in tcp6", in: "PROXY TCP6 ::1 5.6.7.8 1 2\r\n", wantErr: "destination: \"5.6.7.8\" is not an IPv6"},
		{name: "ipv4 leading zero", in: "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", wantErr: "source"},
		{name: "ipv4 short", in: "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", wantErr: "source"},
		{name: "ipv6 zone", in: "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", wantErr: "has a zone"},
		{name: "port leading zero", in: "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", wantErr: "source port"},
		{name: "port too large", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", wantErr: "destination port"},
		{name: "port sign", in: "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", wantErr: "source port"},
		{name: "port hex", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n", wantErr: "destination port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProxyHeader([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseProxyHeader(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseProxyHeader(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(got, tt.want, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("parseProxyHeader(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

func TestReadProxyHeader(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantRest string // what is left for HTTP
		wantErr  string
	}{
		{name: "reads no byte past the CRLF", in: "PROXY UNKNOWN\r\nGET / HTTP/1.1\r\n", wantRest: "GET / HTTP/1.1\r\n"},
		{name: "plain http fails at the first byte", in: "GET / HTTP/1.1\r\n", wantRest: "ET / HTTP/1.1\r\n", wantErr: `starts with "G"`},
		{name: "proxy v2 signature", in: "\r\n\r\n\x00\r\nQUIT\n", wantErr: "not a PROXY"},
		{name: "no crlf within 107 bytes", in: "PROXY UNKNOWN " + strings.Repeat("x", 200), wantErr: "no CRLF within 107 bytes"},
		{name: "eof mid-header", in: "PROXY TCP4 1.2", wantErr: "EOF"},
		{name: "eof at once", in: "", wantErr: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tt.in))
			_, err := readProxyHeader(r)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("readProxyHeader: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("readProxyHeader error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantRest == "" {
				return
			}
			rest, _ := io.ReadAll(r)
			if diff := cmp.Diff(string(rest), tt.wantRest); diff != "" {
				t.Errorf("rest (-got +want):\n%s", diff)
			}
		})
	}
}

// FuzzParseProxyHeader checks that the parser never panics, accepts nothing
// longer than 107 bytes, and that what it accepts formats back to a header
// that parses to the same value (byte for byte for TCP4, whose form is
// canonical).
func FuzzParseProxyHeader(f *testing.F) {
	for _, seed := range []string{
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 0 65535\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
		"GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := parseProxyHeader(in)
		if err != nil {
			return
		}
		if len(in) > proxyMaxLen {
			t.Fatalf("accepted %d bytes, more than %d", len(in), proxyMaxLen)
		}
		line := h.String()
		again, err := parseProxyHeader([]byte(line))
		if err != nil {
			t.Fatalf("%+v from %q formats as %q, which does not parse: %v", h, in, line, err)
		}
		if again != h {
			t.Fatalf("%q parses to %+v, its format %q to %+v", in, h, line, again)
		}
		if h.Proto == protoTCP4 && line != string(in) {
			t.Fatalf("TCP4 header %q formats as %q", in, line)
		}
		// The same bytes read from a stream give the same header.
		r := bufio.NewReader(strings.NewReader(string(in) + "GET"))
		streamed, err := readProxyHeader(r)
		if err != nil || streamed != h {
			t.Fatalf("readProxyHeader(%q) = %+v, %v; want %+v", in, streamed, err, h)
		}
	})
}

// startServer runs s on a listener on addr until the test ends, and returns
// the listener's address.
func startServer(t *testing.T, s *Server, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// dial connects to addr with a deadline for the whole exchange.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestServeProxyProtocol(t *testing.T) {
	rec := &recorder{}
	addr := startServer(t, &Server{Name: "S2", ProxyProtocol: true, Log: slog.New(rec)}, "127.0.0.1:0")
	const get = "GET / HTTP/1.1\r\nHost: lab\r\n\r\n"

	t.Run("accepted", func(t *testing.T) {
		tests := []struct {
			name       string
			writes     []string              // sent in this order, separately
			wantClient func(net.Conn) string // the expected X-Lab-Client
		}{
			{
				name:       "tcp4",
				writes:     []string{"PROXY TCP4 203.0.113.184 198.51.100.1 40000 80\r\n" + get},
				wantClient: func(net.Conn) string { return "203.0.113.184:40000" },
			},
			{
				name:       "tcp6",
				writes:     []string{"PROXY TCP6 2001:db8::203.0.113.7 2001:db8::198.51.100.1 51000 80\r\n" + get},
				wantClient: func(net.Conn) string { return "[2001:db8::cb00:7107]:51000" },
			},
			{
				name:       "header split over two writes",
				writes:     []string{"PROXY TCP4 203.0.1", "13.9 198.51.100.1 1 80\r\n", get},
				wantClient: func(net.Conn) string { return "203.0.113.9:1" },
			},
			{
				name:       "unknown keeps the real address",
				writes:     []string{"PROXY UNKNOWN\r\n" + get},
				wantClient: func(c net.Conn) string { return c.LocalAddr().String() },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				conn := dial(t, addr)
				br := bufio.NewReader(conn)
				for _, w := range tt.writes {
					if _, err := io.WriteString(conn, w); err != nil {
						t.Fatalf("write: %v", err)
					}
				}
				// Two requests on the connection: the address holds for both.
				for i := range 2 {
					if i > 0 {
						if _, err := io.WriteString(conn, get); err != nil {
							t.Fatalf("write: %v", err)
						}
					}
					res, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("request %d: read response: %v", i, err)
					}
					body, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil {
						t.Fatalf("request %d: read body: %v", i, err)
					}
					got := []string{res.Status, res.Header.Get("X-Lab-Server"), res.Header.Get("X-Lab-Client"), string(body)}
					want := []string{"200 OK", "S2", tt.wantClient(conn), "S2\n"}
					if diff := cmp.Diff(got, want); diff != "" {
						t.Errorf("request %d: status, server, client, body (-got +want):\n%s", i, diff)
					}
				}
			})
		}
	})

	t.Run("a silent client holds up no one", func(t *testing.T) {
		silent := dial(t, addr)
		conn := dial(t, addr)
		if _, err := io.WriteString(conn, "PROXY TCP4 203.0.113.5 198.51.100.1 2 80\r\n"+get); err != nil {
			t.Fatalf("write: %v", err)
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		res.Body.Close()
		if got := res.Header.Get("X-Lab-Client"); got != "203.0.113.5:2" {
			t.Errorf("X-Lab-Client %q, want %q", got, "203.0.113.5:2")
		}
		silent.Close()
	})

	t.Run("rejected", func(t *testing.T) {
		tests := []struct {
			name string
			send string
		}{
			{name: "no header", send: get},
			{name: "invalid address", send: "PROXY TCP4 203.0.113.256 198.51.100.1 1 80\r\n" + get},
			{name: "lf only", send: "PROXY TCP4 203.0.113.1 198.51.100.1 1 80\n" + get},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				conn := dial(t, addr)
				if _, err := io.WriteString(conn, tt.send); err != nil {
					t.Fatalf("write: %v", err)
				}
				// The server closes without answering; closing with the
				// request unread may reset the connection.
				got, err := io.ReadAll(conn)
				if err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("read: %v", err)
				}
				if len(got) != 0 {
					t.Fatalf("got an answer %q, want the connection closed", got)
				}
				rec.wait(t, "WARN invalid PROXY protocol header, closing connection", i+1)
			})
		}
	})
}

func TestServeWithoutProxyProtocol(t *testing.T) {
	addr := startServer(t, &Server{Name: "S4"}, "127.0.0.1:0")
	conn := dial(t, addr)
	if _, err := io.WriteString(conn, "GET /healthcheck HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	got := []string{res.Status, res.Header.Get("X-Lab-Client"), string(body)}
	want := []string{"200 OK", conn.LocalAddr().String(), "ok\n"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("status, client, body (-got +want):\n%s", diff)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&Server{Name: "S5"}).Serve(ctx, ln) }()

	conn := dial(t, ln.Addr().String())
	if _, err := io.WriteString(conn, "GET /100M HTTP/1.1\r\nHost: lab\r\n\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer res.Body.Close()

	// Stop the server with the download in progress: it must finish.
	cancel()
	var w patternWriter
	if _, err := io.Copy(&w, res.Body); err != nil {
		t.Fatalf("read body after cancel: %v", err)
	}
	if w.n != 100<<20 || w.err != nil {
		t.Errorf("read %d bytes (content error %v), want %d intact", w.n, w.err, 100<<20)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("listener still accepts connections after Serve returned")
	}
}
