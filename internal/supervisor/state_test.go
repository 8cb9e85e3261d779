package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/topology"
)

// TestNodeTransitions checks each transition from each life: where it
// takes the node, or why it refuses, and what becomes of the saved event
// logs. A node starts running with one saved event (the log of an agent
// killed and revived before); every transition brings the log of the
// agent it kills, freezes or removes: one event more.
func TestNodeTransitions(t *testing.T) {
	last := []control.Event{{Msg: "last words"}}
	ops := map[string]func(n *nodeState) error{
		"kill":   func(n *nodeState) error { return n.kill(false, last) },
		"freeze": func(n *nodeState) error { return n.kill(true, last) },
		"revive": (*nodeState).revive,
		"remove": func(n *nodeState) error { n.remove(last); return nil },
	}
	// start makes a node in life l, the way the transitions do.
	start := map[life][]string{nodeRunning: nil, nodeKilled: {"kill"}, nodeFrozen: {"freeze"}, nodeRemoving: {"remove"}}
	const already = "lb4-1 is already killed (bring it back with lab revive lb4-1)"
	cases := []struct {
		from      life
		op        string
		want      life
		wantErr   string
		wantSaved int
	}{
		{from: nodeRunning, op: "kill", want: nodeKilled, wantSaved: 2},
		{from: nodeRunning, op: "freeze", want: nodeFrozen, wantSaved: 2},
		{from: nodeRunning, op: "revive", wantErr: "lb4-1 is not killed"},
		{from: nodeRunning, op: "remove", want: nodeRemoving, wantSaved: 2},

		{from: nodeKilled, op: "kill", wantErr: already},
		{from: nodeKilled, op: "freeze", wantErr: already},
		{from: nodeKilled, op: "revive", want: nodeRunning, wantSaved: 2}, // a new agent, a new log: the dead one's stays
		{from: nodeKilled, op: "remove", want: nodeRemoving, wantSaved: 3},

		{from: nodeFrozen, op: "kill", wantErr: already},
		{from: nodeFrozen, op: "freeze", wantErr: already},
		{from: nodeFrozen, op: "revive", want: nodeRunning, wantSaved: 1}, // the thawed agent answers with its log again
		{from: nodeFrozen, op: "remove", want: nodeRemoving, wantSaved: 3},

		{from: nodeRemoving, op: "kill", wantErr: "lb4-1 is being removed"},
		{from: nodeRemoving, op: "freeze", wantErr: "lb4-1 is being removed"},
		{from: nodeRemoving, op: "revive", wantErr: "lb4-1 is being removed"},
		{from: nodeRemoving, op: "remove", want: nodeRemoving, wantSaved: 3}, // lab remove run again after a failure
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%s", tc.from, tc.op), func(t *testing.T) {
			n := &nodeState{name: "lb4-1", life: nodeRunning, saved: []control.Event{{Msg: "earlier agent"}}}
			for _, op := range start[tc.from] {
				if err := ops[op](n); err != nil {
					t.Fatal(err)
				}
			}
			before := len(n.saved)
			err := ops[tc.op](n)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if n.life != tc.from || len(n.saved) != before {
					t.Errorf("refused, yet the node changed: %s with %d saved events, want %s with %d", n.life, len(n.saved), tc.from, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v, want %s", err, tc.want)
			}
			if n.life != tc.want {
				t.Errorf("life %s, want %s", n.life, tc.want)
			}
			if len(n.saved) != tc.wantSaved {
				t.Errorf("%d saved events, want %d", len(n.saved), tc.wantSaved)
			}
		})
	}
}

// testLab is a supervisor of the reference topology with no fabric and no
// agents: its API serves, every agent is unreachable, and lab kill stops
// at opening the node's network namespace, which does not exist, after it
// has changed the node's state. Nothing here needs root or touches the
// host.
func testLab(t *testing.T) (*Supervisor, *topology.Topology, *httptest.Server) {
	t.Helper()
	topo, err := topology.Load(filepath.Join("..", "..", "topologies", "reference.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(Config{Name: fmt.Sprintf("statetest%d", os.Getpid()), Dir: t.TempDir()}, slog.New(slog.DiscardHandler))
	s.topo, s.phase = topo, phaseReady
	api := httptest.NewServer(s.routes())
	t.Cleanup(api.Close)
	return s, topo, api
}

func call(t *testing.T, api *httptest.Server, method, path string) (int, string) {
	req, err := http.NewRequest(method, api.URL+path, nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	resp, err := api.Client().Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readStatus keeps asking for the lab's status and events until stop is
// closed; run under -race, it checks that nothing reads node state
// unguarded while injections change it.
func readStatus(t *testing.T, api *httptest.Server, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, path := range []string{"/v1/status", "/v1/status?ready", "/v1/events"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, body := call(t, api, http.MethodGet, path); code != http.StatusOK {
					t.Errorf("GET %s: %d %s", path, code, body)
					return
				}
			}
		}()
	}
	return &wg
}

// TestKillWhileStatus sends two lab kill (every other one --freeze) to
// every node at once while status and events are read: exactly one of
// each pair goes through, the other finds the node already killed, and
// status then says killed or frozen.
func TestKillWhileStatus(t *testing.T) {
	_, topo, api := testLab(t)
	stop := make(chan struct{})
	readers := readStatus(t, api, stop)

	already := make([]int, len(topo.Nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range topo.Nodes {
		path := "/v1/nodes/" + n.Name + "/kill"
		if i%2 == 1 {
			path += "?freeze=1"
		}
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body := call(t, api, http.MethodPost, path)
				if code != http.StatusConflict {
					t.Errorf("POST %s: %d %s, want 409 (no namespace, or already killed)", path, code, body)
				}
				if strings.Contains(body, "already killed") {
					mu.Lock()
					already[i]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	code, body := call(t, api, http.MethodGet, "/v1/status")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/status: %d %s", code, body)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	for i, n := range st.Nodes {
		want := "killed"
		if i%2 == 1 {
			want = "frozen"
		}
		if n.Agent.State != want {
			t.Errorf("%s: state %q, want %q", n.Name, n.Agent.State, want)
		}
		if already[i] != 1 {
			t.Errorf("%s: %d of 2 kills found it already killed, want 1", n.Name, already[i])
		}
	}
}

// TestTransitionsWhileStatus moves every node through kill, revive,
// freeze, revive and remove, the way the injections do, while status and
// events are read and agents' exits are judged.
func TestTransitionsWhileStatus(t *testing.T) {
	s, topo, api := testLab(t)
	for _, n := range topo.Nodes {
		s.mu.Lock()
		s.node(n.Name).agent = &agentProc{node: n.Name, exited: make(chan struct{})}
		s.mu.Unlock()
	}
	stop := make(chan struct{})
	readers := readStatus(t, api, stop)

	var wg sync.WaitGroup
	for _, n := range topo.Nodes {
		a := s.agentOf(n.Name)
		wg.Add(2)
		go func() { // the agent's exit watcher
			defer wg.Done()
			for range 200 {
				s.exitExpected(a)
			}
		}()
		go func() {
			defer wg.Done()
			evs := []control.Event{{Time: time.Now(), Node: n.Name, Msg: "x"}}
			for range 50 {
				for _, f := range []func(*nodeState) error{
					func(n *nodeState) error { return n.kill(false, evs) },
					(*nodeState).revive,
					func(n *nodeState) error { return n.kill(true, evs) },
					(*nodeState).revive,
				} {
					if err := s.withNode(n.Name, f); err != nil {
						t.Error(err)
						return
					}
				}
			}
			s.mu.Lock()
			s.node(n.Name).remove(evs)
			s.mu.Unlock()
			s.forget(n.Name)
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	if len(s.nodes) != 0 {
		t.Errorf("%d nodes left after all were removed", len(s.nodes))
	}
	// Per node: 50 kills' logs kept, 50 freezes' dropped on thaw, one
	// remove's.
	if want := len(topo.Nodes) * 51; len(s.removed) != want {
		t.Errorf("%d saved events of removed nodes, want %d", len(s.removed), want)
	}
}
