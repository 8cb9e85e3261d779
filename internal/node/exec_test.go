package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/control"
)

// TestExecInterruptOnEOF checks that the end of an exec request's input
// interrupts the command when the client asks for it (how lab capture
// stops tcpdump and still gets all it wrote), and only then.
func TestExecInterruptOnEOF(t *testing.T) {
	a := &agent{cfg: Config{Node: "n1", Lab: "test"}, at: place{ns: -1}}
	srv := httptest.NewServer(http.HandlerFunc(a.exec))
	defer srv.Close()
	c, err := control.NewClient(control.Endpoint("tcp://"+strings.TrimPrefix(srv.URL, "http://")), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The shell runs its trap once the command in the foreground ends.
	script := `trap 'echo interrupted; exit 3' INT; cat >/dev/null; i=0; while [ $i -lt 10 ]; do sleep 0.1; i=$((i+1)); done; echo done`
	interrupt := "/exec?" + control.ExecInterruptParam + "=1"
	for _, tc := range []struct {
		path     string
		script   string
		endInput time.Duration // when the request body ends
		want     string
		wantCode int
	}{
		{"/exec", script, 200 * time.Millisecond, "done\n", 0},
		{interrupt, script, 200 * time.Millisecond, "interrupted\n", 3},
		// A command that ends before its input does: its answer does
		// not wait for the input.
		{interrupt, "echo quick", 5 * time.Second, "quick\n", 0},
	} {
		pr, pw := io.Pipe()
		timer := time.AfterFunc(tc.endInput, func() { pw.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out bytes.Buffer
		start := time.Now()
		code, err := c.Exec(ctx, tc.path, []string{"sh", "-c", tc.script}, pr, &out, &out)
		took := time.Since(start)
		cancel()
		timer.Stop()
		pw.Close()
		if err != nil || code != tc.wantCode || out.String() != tc.want {
			t.Errorf("%s %q: exit %d %v, output %q; want exit %d, %q", tc.path, tc.script, code, err, out.String(), tc.wantCode, tc.want)
		}
		if took > 3*time.Second {
			t.Errorf("%s %q: answered after %s", tc.path, tc.script, took)
		}
	}
}
