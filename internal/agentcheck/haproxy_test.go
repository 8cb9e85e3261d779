package agentcheck

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/haproxy/haproxytest"
	"github.com/lab-lb/lab/internal/testenv"
)

// TestHAProxyAppliesAnswers checks the answers against the real HAProxy:
// a server with only an agent check (the reference lab's "enabler" trick)
// follows the file, and keeps its state while the file is invalid.
func TestHAProxyAppliesAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent-check")
	addr, rec := startServer(t, path)
	_, port, _ := net.SplitHostPort(addr)
	sock := haproxytest.Start(t, `
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
				testenv.Eventually(t, 10*time.Second, step.settle, func() error {
					if !rec.has(step.settle) {
						return errors.New("not logged")
					}
					return nil
				})
			}
			testenv.Eventually(t, 10*time.Second, fmt.Sprintf("status, weight, last_agt %q", step.want), func() error {
				got, err := haproxytest.ServerStat(sock, "be", "s1", "status", "weight", "last_agt")
				if err != nil {
					return err
				}
				if !cmp.Equal(got, step.want) {
					return fmt.Errorf("got %q", got)
				}
				return nil
			})
		})
	}
}
