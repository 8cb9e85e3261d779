package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

// TestAPIErrorText checks what a refused request says: the server's own
// reason alone, or the request and its status when the server gave none
// (a route this server does not know, an empty answer).
func TestAPIErrorText(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/nodes/lb7-2/add", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "node lb7-2 already exists", http.StatusConflict)
	})
	mux.HandleFunc("POST /v1/empty", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := NewClient(Endpoint("unix://"+sock), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/v1/nodes/lb7-2/add", "node lb7-2 already exists", http.StatusConflict},
		{"/v1/empty", "POST /v1/empty: 502 Bad Gateway", http.StatusBadGateway},
		{"/v1/unknown", "POST /v1/unknown: 404 Not Found", http.StatusNotFound},
	} {
		err := c.Post(context.Background(), tc.path, nil)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Code != tc.code || err.Error() != tc.want {
			t.Errorf("POST %s: error %v, want %q (code %d)", tc.path, err, tc.want, tc.code)
		}
	}
}
