package supervisor

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/testenv"
)

var t0 = time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)

func ev(sec int, node, msg string) control.Event {
	return control.Event{Time: t0.Add(time.Duration(sec) * time.Second), Node: node, Kind: "health", Msg: msg}
}

// msgs returns the number and message of each event.
func msgs(evs []control.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Msg + "#" + string(rune('0'+e.Seq))
	}
	return out
}

// TestNumberedLog reads the lab's log as the API does, with late events
// and reads that miss a node: a client that asks for what came after the
// last number it got sees every event once.
func TestNumberedLog(t *testing.T) {
	a, b, c, d := ev(1, "r1", "a"), ev(3, "lb4-1", "b"), ev(5, "r1", "c"), ev(7, "r1", "d")
	late := ev(2, "lb4-2", "late") // its node answered after c was seen
	var l numberedLog
	for _, step := range []struct {
		name  string
		read  []control.Event
		since uint64
		want  []string
	}{
		{name: "first read", read: []control.Event{a, b}, since: 0, want: []string{"a#1", "b#2"}},
		{name: "nothing new", read: []control.Event{a, b}, since: 2, want: []string{}},
		{name: "a late event and a new one", read: []control.Event{a, late, b, c}, since: 2, want: []string{"late#3", "c#4"}},
		{name: "a read that misses lb4-1", read: []control.Event{a, late, c, d}, since: 4, want: []string{"d#5"}},
		{name: "lb4-1 back", read: []control.Event{a, late, b, c, d}, since: 5, want: []string{}},
		{name: "whole log, by time", read: nil, since: 0, want: []string{"a#1", "late#3", "b#2", "c#4", "d#5"}},
	} {
		read := append([]control.Event(nil), step.read...)
		l.add(read)
		if diff := cmp.Diff(step.want, msgs(l.since(step.since))); diff != "" {
			t.Errorf("%s: since %d (-want +got):\n%s", step.name, step.since, diff)
		}
	}
}

// TestNumberedLogConcurrent reads the log from several clients at once,
// each following it with since=, while events arrive: every client sees
// every event exactly once.
func TestNumberedLogConcurrent(t *testing.T) {
	var l numberedLog
	var mu sync.Mutex
	var evs []control.Event
	const n = 300
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			mu.Lock()
			evs = append(evs, ev(i, "r1", "e"))
			mu.Unlock()
		}
	})
	got := make([]map[uint64]int, 4)
	for c := range got {
		got[c] = map[uint64]int{}
		wg.Go(func() {
			var since uint64
			for len(got[c]) < n {
				mu.Lock()
				read := append([]control.Event(nil), evs...)
				mu.Unlock()
				l.add(read)
				for _, e := range l.since(since) {
					got[c][e.Seq]++
					since = max(since, e.Seq)
				}
			}
		})
	}
	wg.Wait()
	for c, seen := range got {
		for seq, k := range seen {
			if k != 1 {
				t.Errorf("client %d saw event %d %d times", c, seq, k)
			}
		}
	}
}

// indent re-indents a JSON answer for a golden file.
func indent(t *testing.T, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(body), "", "  "); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// TestAPIEventsLoadsLinks reads the event log with since=, the loads of
// every node and the links set down, through the API, from two fake
// agents (the other nodes' agents are unreachable).
func TestAPIEventsLoadsLinks(t *testing.T) {
	s, _, api := testLab(t)
	var mu sync.Mutex
	r1Events := []control.Event{ev(1, "r1", "session up")}
	agent := func(name string, loads []control.LoadInfo) *http.ServeMux {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /events", func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if name == "r1" {
				writeJSON(w, r1Events)
				return
			}
			writeJSON(w, []control.Event{ev(2, name, "lb7-1 healthy")})
		})
		mux.HandleFunc("GET /load", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, loads) })
		return mux
	}
	serveAgent(t, s.cfg.Dir, "r1", agent("r1", []control.LoadInfo{}))
	serveAgent(t, s.cfg.Dir, "users", agent("users", []control.LoadInfo{
		{ID: "2", Targets: []string{"198.51.100.1:80", "[2001:db8:100::1]:80"}, Workers: 20, Started: t0.Add(9 * time.Second)},
		{ID: "1", Names: []string{"www.lab.example.:80"}, Workers: 200, Started: t0.Add(8 * time.Second)},
	}))
	serveAgent(t, s.cfg.Dir, "internet", agent("internet", []control.LoadInfo{
		{ID: "1", Targets: []string{"198.51.100.3:80"}, Workers: 5, Started: t0.Add(8 * time.Second)},
	}))

	get := func(path string) string {
		t.Helper()
		code, body := call(t, api, http.MethodGet, path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return body
	}
	testenv.Golden(t, "testdata/events.json", indent(t, get("/v1/events?since=0")))
	mu.Lock()
	r1Events = append(r1Events, ev(4, "r1", "route to 198.51.100.1/32 via 2 next hops"))
	mu.Unlock()
	// One of the supervisor's own (lab kill), stamped for the golden file.
	s.mu.Lock()
	s.events = append(s.events, control.Event{Time: t0.Add(3 * time.Second), Node: "lb4-1", Kind: control.EventInject, Msg: "kill: every process of the node killed, links up"})
	s.mu.Unlock()
	testenv.Golden(t, "testdata/events-since.json", indent(t, get("/v1/events?since=3")))
	if code, body := call(t, api, http.MethodGet, "/v1/events?since=-1"); code != http.StatusBadRequest {
		t.Errorf("GET /v1/events?since=-1: %d %s, want 400", code, body)
	}

	testenv.Golden(t, "testdata/loads.json", indent(t, get(control.PathLoads)))

	// Links: a segment leg, and a link between two nodes named from
	// either end.
	s.setLinkState("lb4-1", "infra", false)
	s.setLinkState("r1", "internet", false)
	s.setLinkState("users", "internet", false)
	s.setLinkState("internet", "users", true)
	var st control.Status
	if err := json.Unmarshal([]byte(get("/v1/status?ready=1")), &st); err != nil {
		t.Fatal(err)
	}
	want := []control.LinkStatus{{Node: "internet", Link: "r1"}, {Node: "lb4-1", Link: "infra"}}
	if diff := cmp.Diff(want, st.DownLinks); diff != "" {
		t.Errorf("links down (-want +got):\n%s", diff)
	}
	s.forget("internet")
	s.mu.Lock()
	got := s.downLinkList()
	s.mu.Unlock()
	if diff := cmp.Diff(want[1:], got); diff != "" {
		t.Errorf("links down once internet left the lab (-want +got):\n%s", diff)
	}
}
