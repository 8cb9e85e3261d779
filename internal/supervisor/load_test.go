package supervisor

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/topology"
)

// fakeAgent serves, on the agent socket of node in dir, an echo of each
// request: its method, path and body.
func fakeAgent(t *testing.T, dir, name string) {
	t.Helper()
	serveAgent(t, dir, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	}))
}

// serveAgent serves h on the agent socket of node name in dir until the
// test ends.
func serveAgent(t *testing.T, dir, name string, h http.Handler) {
	t.Helper()
	nodeDir := filepath.Join(dir, "nodes", name)
	if err := os.MkdirAll(nodeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(nodeDir, node.SocketName))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve fake agent: %v", err)
		}
	})
}

// TestProxyLoad checks that the load routes reach the node's agent at its
// /load paths.
func TestProxyLoad(t *testing.T) {
	topo, err := topology.Load(filepath.Join("..", "..", "topologies", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fakeAgent(t, dir, "client1")
	s := &Supervisor{cfg: Config{Name: "t", Dir: dir}, topo: topo}
	api := httptest.NewServer(s.routes())
	t.Cleanup(api.Close)

	cases := []struct {
		name     string
		method   string
		path     string
		body     string
		wantCode int
		want     string
	}{
		{name: "start", method: http.MethodPost, path: "/v1/nodes/client1/load", body: `{"workers":3}`,
			wantCode: http.StatusOK, want: `POST /load {"workers":3}`},
		{name: "progress", method: http.MethodGet, path: "/v1/nodes/client1/load/7",
			wantCode: http.StatusOK, want: "GET /load/7 "},
		{name: "stop", method: http.MethodPost, path: "/v1/nodes/client1/load/7/stop",
			wantCode: http.StatusOK, want: "POST /load/7/stop "},
		{name: "unknown node", method: http.MethodPost, path: "/v1/nodes/nope/load",
			wantCode: http.StatusNotFound, want: "no node nope in lab t\n"},
		{name: "agent unreachable", method: http.MethodGet, path: "/v1/nodes/r1/load/1",
			wantCode: http.StatusBadGateway},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, api.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := api.Client().Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read answer: %v", err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, b, tc.wantCode)
			}
			if tc.want == "" {
				return
			}
			if diff := cmp.Diff(string(b), tc.want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
		})
	}
}
