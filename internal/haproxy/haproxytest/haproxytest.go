// Package haproxytest runs a real HAProxy for the tests of the packages
// that HAProxy talks to (agent checks, backends) and reads its statistics.
package haproxytest

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
)

// Start runs HAProxy in the foreground with config until the test ends and
// returns the path of its admin socket, which config names as {{SOCKET}}.
// files are passed to HAProxy as fd 3 onwards (for `bind fd@3`). It skips
// the test, with its reason, when there is no haproxy binary (fails
// instead when LAB_REQUIRE_E2E=1), and prints HAProxy's output when the
// test failed.
func Start(t *testing.T, config string, files ...*os.File) string {
	t.Helper()
	bin := testenv.RequireBinary(t, "haproxy")
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(config, "{{SOCKET}}", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.ExtraFiles = files
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
	testenv.EventuallyEvery(t, 10*time.Second, 20*time.Millisecond, "haproxy's admin socket", func() error {
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", out.String())
		default:
		}
		_, err := os.Stat(sock)
		return err
	})
	return sock
}

// ServerStat returns the named columns of the "show stat" row of server
// in proxy, read from HAProxy's admin socket.
func ServerStat(sock, proxy, server string, columns ...string) ([]string, error) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("dial haproxy socket: %w", err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
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
