package agentcheck

import (
	"encoding/csv"
	"fmt"
	"github.com/lab-lb/lab/internal/testenv"
	"io"
	"log/slog"
	"net"
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

// startHAProxy runs haproxy in the foreground with config until the test
// ends, and returns the path of its admin socket, which config must name
// as {{SOCKET}}.
func startHAProxy(t *testing.T, bin, config string) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(config, "{{SOCKET}}", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	waitUntil(t, "haproxy's admin socket", func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", out.String())
		default:
		}
		_, err := os.Stat(sock)
		return err == nil, fmt.Sprint(err)
	})
	return sock
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

// serverStat returns the named columns of a server's "show stat" row.
func serverStat(t *testing.T, sock, backend, server string, columns ...string) []string {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial haproxy socket: %v", err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		t.Fatalf("show stat: %v", err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("show stat: %v", err)
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("parse show stat %q: %v", b, err)
	}
	index := map[string]int{}
	for i, name := range rows[0] {
		index[name] = i
	}
	for _, row := range rows[1:] {
		if len(row) < 2 || row[0] != backend || row[1] != server {
			continue
		}
		var out []string
		for _, c := range columns {
			i, ok := index[c]
			if !ok || i >= len(row) {
				t.Fatalf("show stat has no column %q", c)
			}
			out = append(out, row[i])
		}
		return out
	}
	t.Fatalf("show stat has no row %s/%s:\n%s", backend, server, b)
	return nil
}

// TestHAProxyAppliesAnswers checks the answers against the real HAProxy:
// a server with only an agent check (the reference lab's "enabler" trick)
// follows the file, and keeps its state while the file is invalid.
func TestHAProxyAppliesAnswers(t *testing.T) {
	bin := requireHAProxy(t)
	path := filepath.Join(t.TempDir(), "agent-check")
	addr, rec := startServer(t, path)
	_, port, _ := net.SplitHostPort(addr)
	sock := startHAProxy(t, bin, `
global
    stats socket {{SOCKET}} level admin
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend be
    balance roundrobin
    server s1 127.0.0.1:9 weight 100 agent-check agent-addr 127.0.0.1 agent-port `+port+` agent-inter 50ms
`)

	steps := []struct {
		name    string
		content *string  // nil keeps the file as it is
		settle  string   // a log line to wait for before checking, if any
		want    []string // status, weight and last_agt in "show stat"
	}{
		// With an agent check alone, HAProxy shows an up server as "no
		// check"; last_agt is empty after a line without a health word.
		{name: "missing file: up", want: []string{"no check", "100", "via agent : up"}},
		{name: "drain at half weight", content: ptr("drain 50%\n"), want: []string{"DRAIN (agent)", "50", ""}},
		{name: "maint", content: ptr("maint\n"), want: []string{"MAINT", "50", ""}},
		{name: "ready at full weight", content: ptr("ready 100%\n"), want: []string{"no check", "100", ""}},
		{name: "explicit up", content: ptr("up\n"), want: []string{"no check", "100", "via agent : up"}},
		{
			name:    "invalid file keeps a server up",
			content: ptr("up dwon\n"),
			settle:  "DEBUG agent-check file still unusable, not answering",
			want:    []string{"no check", "100", "TCPCHK got an empty response at step 2"},
		},
		{name: "down with a reason", content: ptr("down #disk full\n"), want: []string{"DOWN (agent)", "100", "via agent : down (disk full)"}},
		{
			name:    "invalid file keeps a server down",
			content: ptr("dwon\n"),
			settle:  "DEBUG agent-check file still unusable, not answering",
			want:    []string{"DOWN (agent)", "100", "TCPCHK got an empty response at step 2"},
		},
		{name: "up again", content: ptr("up\n"), want: []string{"no check", "100", "via agent : up"}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if step.content != nil {
				if err := os.WriteFile(path, []byte(*step.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if step.settle != "" {
				rec.take(slog.LevelDebug)
				waitUntil(t, step.settle, func() (bool, string) {
					return rec.has(step.settle), "not logged"
				})
			}
			waitUntil(t, fmt.Sprintf("status, weight, last_agt %q", step.want), func() (bool, string) {
				got := serverStat(t, sock, "be", "s1", "status", "weight", "last_agt")
				return cmp.Equal(got, step.want), fmt.Sprint(got)
			})
		})
	}
}
