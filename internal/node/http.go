package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/lab-lb/lab/internal/backend"
)

const defaultProbeTimeout = 2 * time.Second

// backendServer adapts backend.Server to the agent's listeners.
type backendServer struct {
	name  string
	proxy bool
	log   *slog.Logger
}

func (b *backendServer) Serve(ctx context.Context, ln net.Listener) error {
	s := &backend.Server{Name: b.name, ProxyProtocol: b.proxy, Log: b.log}
	return s.Serve(ctx, ln)
}

func httpStatus(ctx context.Context, d *net.Dialer, url string) (int, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// HTTPResult is the answer of `lab curl`.
type HTTPResult struct {
	URL     string              `json:"url"`
	Source  string              `json:"source,omitempty"`
	Status  int                 `json:"status"`
	Header  map[string][]string `json:"header,omitempty"`
	Body    string              `json:"body"`
	Elapsed time.Duration       `json:"elapsed_ns"`
	Error   string              `json:"error,omitempty"`
}

// maxCurlBody bounds what `lab curl` brings back.
const maxCurlBody = 1 << 20

// httpGet makes one HTTP request from inside the node, from source when
// given: what `lab curl --from NODE` runs. One process making requests is
// much cheaper than forking curl in the VM.
func (a *agent) httpGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	res := HTTPResult{URL: q.Get("url"), Source: q.Get("source")}
	timeout := 10 * time.Second
	if t, err := time.ParseDuration(q.Get("timeout")); err == nil && t > 0 {
		timeout = t
	}
	d := &net.Dialer{Timeout: timeout}
	if res.Source != "" {
		src, err := netip.ParseAddr(res.Source)
		if err != nil {
			http.Error(w, fmt.Sprintf("source %q: %v", res.Source, err), http.StatusBadRequest)
			return
		}
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	start := time.Now()
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, res.URL, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = c.Do(req); err == nil {
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxCurlBody))
			resp.Body.Close()
			res.Status, res.Header, res.Body, err = resp.StatusCode, resp.Header, string(body), rerr
		}
	}
	res.Elapsed = time.Since(start)
	if err != nil {
		res.Error = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
