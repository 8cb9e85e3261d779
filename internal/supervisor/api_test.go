package supervisor

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/node"
)

// TestAskAgentStates checks what status says of an agent that does not
// answer: slow while its process runs, exited once it is gone, unreachable
// when nothing serves its socket.
func TestAskAgentStates(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor(Config{Name: "t", Dir: dir}, nil)

	// lb7-1: a running agent that never answers.
	nodeDir := filepath.Join(dir, "nodes", "lb7-1")
	if err := os.MkdirAll(nodeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(nodeDir, node.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { close(release); srv.Close() })
	running := &agentProc{node: "lb7-1", exited: make(chan struct{})}
	s.node("lb7-1").agent = running

	ctx := context.Background()
	if got := s.askAgent(ctx, "lb7-1", "/status", 100*time.Millisecond); got.State != "slow" {
		t.Errorf("agent alive, no answer: state %q (%s), want slow", got.State, got.Error)
	}
	close(running.exited)
	if got := s.askAgent(ctx, "lb7-1", "/status", 100*time.Millisecond); got.State != "exited" {
		t.Errorf("agent process gone: state %q (%s), want exited", got.State, got.Error)
	}
	s.node("lb7-2").agent = &agentProc{node: "lb7-2", exited: make(chan struct{})}
	if got := s.askAgent(ctx, "lb7-2", "/status", 100*time.Millisecond); got.State != "unreachable" {
		t.Errorf("nothing on the socket: state %q (%s), want unreachable", got.State, got.Error)
	}
}
