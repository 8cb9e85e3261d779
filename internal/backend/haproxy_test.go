package backend

import (
	"encoding/csv"
	"fmt"
	"github.com/lab-lb/lab/internal/testenv"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// requireHAProxy returns the haproxy binary's path, or skips the test with a
// reason (fails instead when LAB_REQUIRE_E2E=1).
func requireHAProxy(t *testing.T) string {
	t.Helper()
	return testenv.RequireBinary(t, "haproxy")
}

// waitUntil polls cond every 20 ms until it holds, failing the test after
// 10 seconds with cond's last description.
func waitUntil(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		<-tick.C
	}
}

// showStat returns the named columns of a "show stat" row, or an error.
func showStat(sock, proxy, server string, columns ...string) ([]string, error) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("parse show stat %q: %v", b, err)
	}
	index := map[string]int{}
	for i, name := range rows[0] {
		index[name] = i
	}
	for _, row := range rows[1:] {
		if len(row) < 2 || row[0] != proxy || row[1] != server {
			continue
		}
		var out []string
		for _, c := range columns {
			i, ok := index[c]
			if !ok || i >= len(row) {
				return nil, fmt.Errorf("show stat has no column %q", c)
			}
			out = append(out, row[i])
		}
		return out, nil
	}
	return nil, fmt.Errorf("show stat has no row %s/%s", proxy, server)
}

// TestBehindHAProxy puts the backend behind the real HAProxy 2.6 as the lab
// does: over IPv6, with the PROXY protocol on traffic and health checks.
func TestBehindHAProxy(t *testing.T) {
	bin := requireHAProxy(t)
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

	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "haproxy.cfg")
	config := `
global
    stats socket ` + sock + ` level admin
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
    server s7 ` + backendAddr + ` send-proxy check inter 100ms
`
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.ExtraFiles = []*os.File{frontFile} // fd 3
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})

	// The health check itself carries a PROXY header: it passes only if
	// the backend accepts it.
	waitUntil(t, "the backend to be UP", func() (bool, string) {
		got, err := showStat(sock, "be", "s7", "status", "check_status")
		if err != nil {
			return false, err.Error()
		}
		return cmp.Equal(got, []string{"UP", "L7OK"}), fmt.Sprint(got)
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
