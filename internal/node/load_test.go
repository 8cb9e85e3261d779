package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lab-lb/lab/internal/backend"
	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/internal/traffic"
)

// loadBackend serves a backend named S1 on 127.0.0.2 (local on Linux
// without configuration) until the test ends and returns its address.
func loadBackend(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&backend.Server{Name: "S1"}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve backend: %v", err)
		}
	})
	return addr
}

// loadAgent serves the load API of a registry whose context the returned
// function cancels (the agent stopping); the registry's loads are stopped
// when the test ends.
func loadAgent(t *testing.T) (*httptest.Server, *loadRegistry, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := newLoadRegistry(ctx, slog.New(slog.DiscardHandler), nil)
	mux := http.NewServeMux()
	reg.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		reg.stopAll()
	})
	return srv, reg, cancel
}

// call sends method path with body (a string sent as is, or a value sent as
// JSON) and returns the status and the body of the answer.
func call(t *testing.T, srv *httptest.Server, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer of %s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// callJSON is call that wants 200 and decodes the answer into v.
func callJSON(t *testing.T, srv *httptest.Server, method, path string, body, v any) {
	t.Helper()
	code, b := call(t, srv, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", method, path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode answer of %s %s: %v: %s", method, path, err, b)
	}
}

// loadSources returns 127.0.0.10 to 127.0.0.12.
func loadSources() []netip.Addr {
	return []netip.Addr{
		netip.MustParseAddr("127.0.0.10"), netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("127.0.0.12"),
	}
}

// TestLoadAPI starts a load through the agent's API, watches its progress
// grow, stops it and checks the report: connections from the requested
// sources, served by the backend, none broken. The stopped load is
// forgotten.
func TestLoadAPI(t *testing.T) {
	target := loadBackend(t)
	srv, _, _ := loadAgent(t)
	req := NewLoadRequest(traffic.Config{
		Targets:  []netip.AddrPort{target},
		Sources:  loadSources(),
		Workers:  4,
		Path:     "/64K",
		ReadSize: 8 << 10,
		Pause:    time.Millisecond,
		Seed:     1,
	})
	var started LoadStarted
	callJSON(t, srv, http.MethodPost, "/load", req, &started)
	if started.ID != "1" {
		t.Errorf("id = %q, want 1", started.ID)
	}

	var first LoadProgress
	callJSON(t, srv, http.MethodGet, "/load/"+started.ID, nil, &first)
	testenv.Eventually(t, 20*time.Second, "progress grows", func() error {
		var p LoadProgress
		callJSON(t, srv, http.MethodGet, "/load/"+started.ID, nil, &p)
		switch {
		case p.OK < first.OK+20:
			return fmt.Errorf("%d ok, want at least %d", p.OK, first.OK+20)
		case p.Elapsed <= first.Elapsed:
			return fmt.Errorf("elapsed %s, not after %s", p.Elapsed, first.Elapsed)
		case len(p.Seconds) == 0:
			return fmt.Errorf("no per-second figures")
		}
		return nil
	})

	var rep traffic.Report
	callJSON(t, srv, http.MethodPost, "/load/"+started.ID+"/stop", nil, &rep)
	if rep.Total < 20 || rep.Total != len(rep.Conns) {
		t.Errorf("report has %d connections and %d records, want at least 20 of each", rep.Total, len(rep.Conns))
	}
	if rep.Broken != 0 {
		t.Errorf("%d broken connections, want none: %v", rep.Broken, rep.ByOutcome)
	}
	// A connection cut by the stop may have had no answer yet.
	if n := rep.ByServer["S1"]; len(rep.ByServer) != 1 || n < rep.Total-rep.Stopped || n > rep.Total {
		t.Errorf("connections per server %v, want S1 only, with %d to %d", rep.ByServer, rep.Total-rep.Stopped, rep.Total)
	}
	srcs := map[netip.Addr]bool{}
	for _, c := range rep.Conns {
		srcs[c.Source] = true
	}
	want := map[netip.Addr]bool{}
	for _, s := range loadSources() {
		want[s] = true
	}
	if diff := cmp.Diff(srcs, want, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("source addresses (-got +want):\n%s", diff)
	}

	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/load/" + started.ID},
		{http.MethodPost, "/load/" + started.ID + "/stop"},
	} {
		if code, b := call(t, srv, c.method, c.path, nil); code != http.StatusNotFound {
			t.Errorf("%s %s after stop: status %d (%s), want 404", c.method, c.path, code, b)
		}
	}
}

// TestLoadAPIErrors checks the answers to bad requests and unknown loads.
func TestLoadAPIErrors(t *testing.T) {
	srv, _, _ := loadAgent(t)
	target := netip.MustParseAddrPort("127.0.0.2:1")
	cases := []struct {
		name     string
		method   string
		path     string
		body     any
		wantCode int
		wantMsg  string
	}{
		{name: "not json", method: http.MethodPost, path: "/load", body: "{targets",
			wantCode: http.StatusBadRequest, wantMsg: "decode load request"},
		{name: "unknown field", method: http.MethodPost, path: "/load", body: `{"targets":["127.0.0.2:80"],"worker":3}`,
			wantCode: http.StatusBadRequest, wantMsg: `unknown field "worker"`},
		{name: "bad address", method: http.MethodPost, path: "/load", body: `{"targets":["nowhere"]}`,
			wantCode: http.StatusBadRequest, wantMsg: "decode load request"},
		{name: "bad durations", method: http.MethodPost, path: "/load",
			body:     LoadRequest{Targets: []netip.AddrPort{target}, ReadTimeout: "3x", Pause: "soon"},
			wantCode: http.StatusBadRequest, wantMsg: "load request: pause: time: invalid duration \"soon\"\nread_timeout: time: unknown unit"},
		{name: "bad lease", method: http.MethodPost, path: "/load",
			body:     LoadRequest{Targets: []netip.AddrPort{target}, Lease: "-1s"},
			wantCode: http.StatusBadRequest, wantMsg: "load request: lease: -1s is negative"},
		{name: "no target", method: http.MethodPost, path: "/load", body: LoadRequest{},
			wantCode: http.StatusBadRequest, wantMsg: "traffic configuration: no target"},
		{name: "stall above read timeout", method: http.MethodPost, path: "/load",
			body:     LoadRequest{Targets: []netip.AddrPort{target}, ReadTimeout: "1s", StallThreshold: "2s"},
			wantCode: http.StatusBadRequest, wantMsg: "stall threshold 2s: want between 0 and the read timeout 1s"},
		{name: "no family source", method: http.MethodPost, path: "/load",
			body:     LoadRequest{Targets: []netip.AddrPort{netip.MustParseAddrPort("[::1]:80")}, Sources: loadSources()},
			wantCode: http.StatusBadRequest, wantMsg: "no IPv6 source"},
		{name: "unknown load", method: http.MethodGet, path: "/load/42",
			wantCode: http.StatusNotFound, wantMsg: `no load "42"`},
		{name: "stop unknown load", method: http.MethodPost, path: "/load/42/stop",
			wantCode: http.StatusNotFound, wantMsg: `no load "42"`},
		{name: "wrong method", method: http.MethodDelete, path: "/load",
			wantCode: http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, b := call(t, srv, tc.method, tc.path, tc.body)
			if code != tc.wantCode {
				t.Errorf("status %d (%s), want %d", code, b, tc.wantCode)
			}
			if !strings.Contains(string(b), tc.wantMsg) {
				t.Errorf("answer %q does not contain %q", b, tc.wantMsg)
			}
		})
	}
}

// TestLoadAgentStops checks that the end of the agent's context stops the
// running loads and refuses new ones.
func TestLoadAgentStops(t *testing.T) {
	target := loadBackend(t)
	srv, _, stopAgent := loadAgent(t)
	req := NewLoadRequest(traffic.Config{
		// Connections that never end on their own: every one is active
		// when the agent stops.
		Targets: []netip.AddrPort{target}, Workers: 3, Path: "/1G", Pause: 10 * time.Millisecond, EarlyStop: -1,
	})
	var started LoadStarted
	callJSON(t, srv, http.MethodPost, "/load", req, &started)
	testenv.Eventually(t, 10*time.Second, "connections active", func() error {
		var p LoadProgress
		callJSON(t, srv, http.MethodGet, "/load/"+started.ID, nil, &p)
		if p.Active != 3 {
			return fmt.Errorf("%d active, want 3", p.Active)
		}
		return nil
	})

	stopAgent()
	testenv.Eventually(t, 10*time.Second, "load stopped", func() error {
		var p LoadProgress
		callJSON(t, srv, http.MethodGet, "/load/"+started.ID, nil, &p)
		if p.Active != 0 {
			return fmt.Errorf("%d active, want 0", p.Active)
		}
		return nil
	})
	if code, b := call(t, srv, http.MethodPost, "/load", req); code != http.StatusServiceUnavailable {
		t.Errorf("start after the agent stopped: status %d (%s), want 503", code, b)
	}
	var rep traffic.Report
	callJSON(t, srv, http.MethodPost, "/load/"+started.ID+"/stop", nil, &rep)
	if rep.Stopped != 3 || rep.Broken != 0 {
		t.Errorf("%d connections cut by the stop and %d broken, want 3 and none", rep.Stopped, rep.Broken)
	}
}

// TestLoadLease checks that a load with a lease runs on while its owner
// asks for its progress, stops once the owner goes quiet for the lease,
// and is then forgotten with a reason.
func TestLoadLease(t *testing.T) {
	target := loadBackend(t)
	srv, reg, _ := loadAgent(t)
	const lease = 300 * time.Millisecond
	req := NewLoadRequest(traffic.Config{Targets: []netip.AddrPort{target}, Workers: 2, Path: "/1G", EarlyStop: -1})
	req.Lease = lease.String()
	var started LoadStarted
	callJSON(t, srv, http.MethodPost, "/load", req, &started)

	// An owner asking three times a lease keeps the load running.
	pace := time.NewTicker(lease / 5)
	for deadline := time.Now().Add(3 * lease); time.Now().Before(deadline); <-pace.C {
		var p LoadProgress
		callJSON(t, srv, http.MethodGet, "/load/"+started.ID, nil, &p)
	}
	pace.Stop()
	reg.mu.Lock()
	e := reg.runs[started.ID]
	reg.mu.Unlock()
	if e == nil {
		t.Fatalf("load %s was dropped while its owner kept asking", started.ID)
	}

	// A quiet owner: the load is forgotten and stops (its connections end).
	testenv.Eventually(t, 10*time.Second, "load expired", func() error {
		reg.mu.Lock()
		registered := reg.runs[started.ID] != nil
		reg.mu.Unlock()
		if p := e.run.Snapshot(); registered || p.Active != 0 {
			return fmt.Errorf("registered %v, %d connections active", registered, p.Active)
		}
		return nil
	})
	code, b := call(t, srv, http.MethodGet, "/load/"+started.ID, nil)
	if want := fmt.Sprintf("load %q was stopped: nobody asked for it for %s", started.ID, lease); code != http.StatusNotFound || !strings.Contains(string(b), want) {
		t.Errorf("progress of the expired load: status %d %q, want 404 %q", code, b, want)
	}
}

// TestLoadRequestRoundTrip checks that a configuration survives its trip
// through a request and JSON.
func TestLoadRequestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		cfg  traffic.Config
	}{
		{name: "zero", cfg: traffic.Config{}},
		{name: "every field", cfg: traffic.Config{
			Targets:        []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:80"), netip.MustParseAddrPort("[2001:db8::1]:8080")},
			Sources:        []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:1::1")},
			Workers:        40,
			Path:           "/1M",
			ReadSize:       4096,
			Pause:          250 * time.Millisecond,
			EarlyStop:      0.1,
			ReadTimeout:    3 * time.Second,
			StallThreshold: 1500 * time.Millisecond,
			ConnectTimeout: time.Second,
			Seed:           7,
		}},
		{name: "disabled pause and early stop", cfg: traffic.Config{Pause: -1, EarlyStop: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(NewLoadRequest(tc.cfg))
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			var req LoadRequest
			if err := json.Unmarshal(b, &req); err != nil {
				t.Fatalf("decode %s: %v", b, err)
			}
			got, lease, err := req.Config()
			if err != nil || lease != 0 {
				t.Fatalf("config of %s: %v", b, err)
			}
			if diff := cmp.Diff(got, tc.cfg, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
				t.Errorf("configuration (-got +want):\n%s", diff)
			}
		})
	}
}

// TestLoadProgressJSON checks the JSON form of a progress and its way back.
func TestLoadProgressJSON(t *testing.T) {
	p := traffic.Progress{
		Elapsed: 2500 * time.Millisecond, Started: 9, Active: 2, OK: 6, Broken: 1, Interrupted: 1,
		Seconds:  []traffic.Second{{Started: 5, OK: 2}, {Started: 4, OK: 4, Broken: 1, Interrupted: 1}},
		ByTarget: map[string][]traffic.Second{"198.51.100.1:80": {{OK: 2}, {OK: 4, Broken: 1, Interrupted: 1}}},
	}
	b, err := json.Marshal(NewLoadProgress(p))
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	want := `{"elapsed_ns":2500000000,"started":9,"active":2,"ok":6,"broken":1,"interrupted":1,` +
		`"seconds":[{"started":5,"ok":2,"broken":0,"interrupted":0},{"started":4,"ok":4,"broken":1,"interrupted":1}],` +
		`"by_target":{"198.51.100.1:80":[{"started":0,"ok":2,"broken":0,"interrupted":0},{"started":0,"ok":4,"broken":1,"interrupted":1}]}}`
	if diff := cmp.Diff(string(b), want); diff != "" {
		t.Errorf("json (-got +want):\n%s", diff)
	}
	var lp LoadProgress
	if err := json.Unmarshal(b, &lp); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if diff := cmp.Diff(lp.Progress(), p); diff != "" {
		t.Errorf("progress after the round trip (-got +want):\n%s", diff)
	}
}

// TestLoadList lists the loads running: each with its id, targets,
// workers and start, oldest first; a stopped load leaves the list.
func TestLoadList(t *testing.T) {
	target := loadBackend(t)
	srv, _, _ := loadAgent(t)
	var empty []control.LoadInfo
	callJSON(t, srv, http.MethodGet, "/load", nil, &empty)
	if empty == nil || len(empty) != 0 {
		t.Errorf("loads of an idle agent: %#v, want an empty list", empty)
	}
	before := time.Now()
	var ids []string
	for _, workers := range []int{2, 3} {
		var started LoadStarted
		req := NewLoadRequest(traffic.Config{Targets: []netip.AddrPort{target}, Workers: workers, Path: "/1M"})
		callJSON(t, srv, http.MethodPost, "/load", req, &started)
		ids = append(ids, started.ID)
	}
	var got []control.LoadInfo
	callJSON(t, srv, http.MethodGet, "/load", nil, &got)
	for _, li := range got {
		if li.Started.Before(before) || time.Since(li.Started) > time.Minute {
			t.Errorf("load %s started at %s, want just now", li.ID, li.Started)
		}
	}
	want := []control.LoadInfo{
		{ID: ids[0], Targets: []string{target.String()}, Workers: 2},
		{ID: ids[1], Targets: []string{target.String()}, Workers: 3},
	}
	if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(control.LoadInfo{}, "Started")); diff != "" {
		t.Errorf("loads (-got +want):\n%s", diff)
	}
	var rep traffic.Report
	callJSON(t, srv, http.MethodPost, "/load/"+ids[0]+"/stop", nil, &rep)
	callJSON(t, srv, http.MethodGet, "/load", nil, &got)
	if len(got) != 1 || got[0].ID != ids[1] {
		t.Errorf("loads after %s stopped: %+v, want %s alone", ids[0], got, ids[1])
	}
}

// TestLoadWatchKeepsNoLease: a watcher (a page that charts the load)
// reads the progress of a load without renewing its lease, so the load
// stops once its owner is gone, watched or not.
func TestLoadWatchKeepsNoLease(t *testing.T) {
	target := loadBackend(t)
	srv, reg, _ := loadAgent(t)
	req := NewLoadRequest(traffic.Config{Targets: []netip.AddrPort{target}, Workers: 2, Path: "/1G", EarlyStop: -1})
	req.Lease = (300 * time.Millisecond).String()
	var started LoadStarted
	callJSON(t, srv, http.MethodPost, "/load", req, &started)
	testenv.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, "load expired while watched", func() error {
		if code, b := call(t, srv, http.MethodGet, "/load/"+started.ID+"?"+control.LoadWatchParam+"=1", nil); code == http.StatusOK {
			return fmt.Errorf("still running: %.80s", b)
		}
		reg.mu.Lock()
		defer reg.mu.Unlock()
		if reg.runs[started.ID] != nil {
			return fmt.Errorf("still registered")
		}
		return nil
	})
}
