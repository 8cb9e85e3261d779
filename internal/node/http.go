package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lab-lb/lab/internal/backend"
	"github.com/lab-lb/lab/internal/topology"
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

func httpStatus(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), url string) (int, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
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
	if ns := NameServers(a.topology()); len(ns) > 0 {
		// A URL may name a service: ask the lab's name servers. The
		// addresses are tried one after the other on the calling
		// goroutine: Go's fast fallback would dial from goroutines of its
		// own, outside the node's network namespace.
		d.Resolver, d.FallbackDelay = a.netResolver(ns), -1
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	start := time.Now()
	c := &http.Client{Transport: &http.Transport{DialContext: a.at.dial(d), DisableKeepAlives: true}}
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

// BenchResult is the answer of a request-rate measurement from a node.
type BenchResult struct {
	URL      string        `json:"url"`
	Requests int           `json:"requests"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"per_second"`
	FirstErr string        `json:"first_error,omitempty"`
}

// bench makes n HTTP/1.0 requests (one connection each) to addr with c
// workers, from the given source addresses in turn, and measures the
// rate. Hand-made requests keep the client's own cost low.
func (a *agent) bench(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target, err := netip.ParseAddrPort(q.Get("addr"))
	if err != nil {
		http.Error(w, fmt.Sprintf("addr: %v", err), http.StatusBadRequest)
		return
	}
	n, _ := strconv.Atoi(q.Get("n"))
	c, _ := strconv.Atoi(q.Get("c"))
	if n <= 0 || c <= 0 {
		http.Error(w, "n and c must be positive", http.StatusBadRequest)
		return
	}
	var sources []netip.Addr
	for _, s := range q["source"] {
		src, err := netip.ParseAddr(s)
		if err != nil {
			http.Error(w, fmt.Sprintf("source: %v", err), http.StatusBadRequest)
			return
		}
		sources = append(sources, src)
	}
	req := "GET / HTTP/1.0\r\nHost: " + target.String() + "\r\n\r\n"
	var next, errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				d := net.Dialer{Timeout: 5 * time.Second}
				if len(sources) > 0 {
					d.LocalAddr = &net.TCPAddr{IP: sources[int(i)%len(sources)].AsSlice()}
				}
				if err := oneRequest(r.Context(), a.at.dial(&d), target.String(), req, buf); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	res := BenchResult{URL: "http://" + target.String() + "/", Requests: n, Errors: int(errs.Load()), Elapsed: time.Since(start)}
	res.PerSec = float64(n) / res.Elapsed.Seconds()
	if e, ok := firstErr.Load().(string); ok {
		res.FirstErr = e
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func oneRequest(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr, req string, buf []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := io.WriteString(conn, req); err != nil {
		return err
	}
	total := 0
	for {
		m, err := conn.Read(buf[total:])
		total += m
		if err == io.EOF || total == len(buf) {
			break
		}
		if err != nil {
			return err
		}
	}
	if total < 12 || string(buf[9:12]) != "200" {
		return fmt.Errorf("bad answer %q", buf[:min(total, 20)])
	}
	return nil
}

// maintFiles are the files of /etc/lb that `lab maint` and `lab agent`
// may write.
var maintFiles = map[string]bool{DisableFile: true, AgentCheckFile: true}

// isDisableVIPFile reports whether name is the /etc/lb/disable.NAME of a
// VIP of the lab.
func (a *agent) isDisableVIPFile(name string) bool {
	vip, ok := strings.CutPrefix(name, DisableVIPPrefix)
	return ok && slices.ContainsFunc(a.topology().VIPs, func(v topology.VIP) bool { return v.Name == vip })
}

// maint writes (or, with remove, deletes) one of the node's maintenance
// files, atomically: a reader never sees half a file.
func (a *agent) maint(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("file")
	if !maintFiles[name] && !a.isDisableVIPFile(name) {
		http.Error(w, fmt.Sprintf("file %q: want %s, %s or %s for a VIP of the lab", name, DisableFile, AgentCheckFile, DisableVIPFile("NAME")), http.StatusBadRequest)
		return
	}
	path := a.lbFile(name)
	var err error
	if q.Get("remove") != "" {
		if err = os.Remove(path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		a.event("maintenance", "removed /etc/lb/"+name)
	} else {
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, []byte(q.Get("content")), 0o644); err == nil {
			err = os.Rename(tmp, path)
		}
		a.event("maintenance", fmt.Sprintf("/etc/lb/%s: %q", name, q.Get("content")))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}\n")
}
