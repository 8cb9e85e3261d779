package bgp

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/lab-lb/lab/internal/testenv"

	"github.com/google/go-cmp/cmp"
)

// addrComparer lets go-cmp compare netip values, whose fields are
// unexported.
var addrComparer = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// testLogger logs to the test's output until the test's cleanups run;
// GoBGP goroutines that outlive the test log into the void.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &closingWriter{w: t.Output()}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, nil))
}

type closingWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (c *closingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *closingWriter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
}

// requireE2E stops a test that needs what reason names: it skips, or
// fails when LAB_REQUIRE_E2E=1 makes such tests mandatory.
func requireE2E(t *testing.T, reason string) {
	t.Helper()
	testenv.SkipOrFail(t, "%s", reason)
}

// requireRoot stops the test unless it runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		requireE2E(t, "needs root to create network namespaces")
	}
}
