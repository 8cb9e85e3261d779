package backend

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/haproxy/haproxytest"
	"github.com/lab-lb/lab/internal/testenv"
)

// TestBehindHAProxy puts the backend behind the real HAProxy 2.6 as the lab
// does: over IPv6, with the PROXY protocol on traffic and health checks.
func TestBehindHAProxy(t *testing.T) {
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("skipping: no IPv6 loopback: %v", err)
	}
	probe.Close()
	backendAddr := startServer(t, &Server{Name: "S7", ProxyProtocol: true}, "[::1]:0")

	front, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer front.Close()
	frontFile, err := front.(*net.TCPListener).File()
	if err != nil {
		t.Fatalf("listener file: %v", err)
	}
	defer frontFile.Close()

	sock := haproxytest.Start(t, `
global
    stats socket {{SOCKET}} level admin
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind fd@3
    default_backend be
backend be
    option httpchk GET /healthcheck
    server s7 `+backendAddr+` send-proxy check inter 100ms
`, frontFile) // fd 3

	// The health check itself carries a PROXY header: it passes only if
	// the backend accepts it.
	testenv.Eventually(t, 10*time.Second, "the backend to be UP", func() error {
		got, err := haproxytest.ServerStat(sock, "be", "s7", "status", "check_status")
		if err != nil {
			return err
		}
		if !cmp.Equal(got, []string{"UP", "L7OK"}) {
			return fmt.Errorf("status, check_status %q", got)
		}
		return nil
	})

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	t.Run("name and client address", func(t *testing.T) {
		res, err := client.Get("http://" + front.Addr().String() + "/")
		if err != nil {
			t.Fatalf("GET /: %v", err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		client := res.Header.Get("X-Lab-Client")
		host, _, err := net.SplitHostPort(client)
		if err != nil {
			t.Fatalf("X-Lab-Client %q: %v", client, err)
		}
		// HAProxy reaches the backend over IPv6 but reports the client's
		// IPv4 address.
		got := []string{res.Status, res.Header.Get("X-Lab-Server"), host, string(body)}
		want := []string{"200 OK", "S7", "127.0.0.1", "S7\n"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("status, server, client host, body (-got +want):\n%s", diff)
		}
	})
	t.Run("large body through haproxy", func(t *testing.T) {
		res, err := client.Get("http://" + front.Addr().String() + "/10M")
		if err != nil {
			t.Fatalf("GET /10M: %v", err)
		}
		defer res.Body.Close()
		var w patternWriter
		if _, err := io.Copy(&w, res.Body); err != nil {
			t.Fatalf("read body: %v", err)
		}
		if w.n != 10<<20 || w.err != nil {
			t.Errorf("read %d bytes (content error %v), want %d intact", w.n, w.err, 10<<20)
		}
	})
}
