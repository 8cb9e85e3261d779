package agentcheck

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder is a slog.Handler that keeps "LEVEL message" lines for tests.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Level.String()+" "+rec.Message)
	return nil
}

// take returns the lines logged at level or above since the last call.
func (r *recorder) take(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		lv, _, _ := strings.Cut(l, " ")
		var got slog.Level
		if err := got.UnmarshalText([]byte(lv)); err == nil && got >= level {
			out = append(out, l)
		}
	}
	r.lines = nil
	return out
}

// has reports whether line was logged and not yet taken.
func (r *recorder) has(line string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if l == line {
			return true
		}
	}
	return false
}

// startServer runs a Server for path on a loopback listener until the test
// ends, and returns its address and log recorder.
func startServer(t *testing.T, path string) (string, *recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	rec := &recorder{}
	srv := &Server{Path: path, Log: slog.New(rec)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String(), rec
}

// query connects to addr, optionally sends data first as HAProxy's
// agent-send would, and returns everything the agent sent before closing.
func query(t *testing.T, addr, send string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if send != "" {
		if _, err := io.WriteString(conn, send); err != nil {
			t.Fatalf("send to agent: %v", err)
		}
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read agent answer: %v", err)
	}
	return string(b)
}

func TestServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent-check")
	addr, rec := startServer(t, path)

	// The steps share one server and run in order: the file changes between
	// connections and every answer must reflect the file at that moment.
	steps := []struct {
		name     string
		content  *string // nil keeps the file as it is
		remove   bool
		send     string
		want     string
		wantLogs []string // warnings and above, or info when recovering
	}{
		{name: "missing file answers up", want: "up\n"},
		{name: "drain", content: ptr("drain\n"), want: "drain\n"},
		{name: "canonical form", content: ptr("DOWN,  maint 50% #disk full\n"), want: "maint 50% down #disk full\n"},
		{name: "agent-send data is read and ignored", content: ptr("ready up"), send: "S1 backend\n", want: "ready up\n"},
		{name: "empty file changes nothing", content: ptr(""), want: "\n"},
		{
			name:     "invalid file: no answer and a warning",
			content:  ptr("dwon\n"),
			want:     "",
			wantLogs: []string{"WARN agent-check file unusable, not answering"},
		},
		{name: "same invalid file: no second warning", want: ""},
		{
			name:     "fixed file answers again",
			content:  ptr("up\n"),
			want:     "up\n",
			wantLogs: []string{"INFO agent-check file usable again"},
		},
		{name: "removed file answers up", remove: true, want: "up\n"},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			switch {
			case step.content != nil:
				if err := os.WriteFile(path, []byte(*step.content), 0o644); err != nil {
					t.Fatal(err)
				}
			case step.remove:
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			}
			got := query(t, addr, step.send)
			if diff := cmp.Diff(got, step.want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(rec.take(slog.LevelInfo), step.wantLogs); diff != "" {
				t.Errorf("logs (-got +want):\n%s", diff)
			}
		})
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &Server{Path: filepath.Join(t.TempDir(), "agent-check")}
	go func() { done <- srv.Serve(ctx, ln) }()
	if got := query(t, ln.Addr().String(), ""); got != "up\n" {
		t.Fatalf("answer before cancel = %q, want %q", got, "up\n")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		conn.Close()
		t.Fatal("listener still accepts connections after Serve returned")
	}
}

func ptr(s string) *string { return &s }
