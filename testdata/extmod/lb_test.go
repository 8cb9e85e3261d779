// Package lbtests is a user's network tests, in a module of their own:
// it imports lab and labtest as any user would, and names their types.
// lab's own tests build it (so an internal type in the API fails there)
// and run it (TestE2EExternalModule).
package lbtests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/lab"
	"github.com/lab-lb/lab/lab/labtest"
)

// TestMain lets the lab re-execute this test binary for its own
// processes.
func TestMain(m *testing.M) {
	lab.MaybeRunInternal()
	os.Exit(m.Run())
}

// topologyFile is the lab's minimal topology, which a user would keep in
// their repository.
const topologyFile = "../../topologies/minimal.yaml"

// TestLB4CrashKeepsMaglevConnections kills an LB4 under load: no
// connection to a Maglev VIP may break, the killed node's agent says so,
// and the event log tells of the injection.
func TestLB4CrashKeepsMaglevConnections(t *testing.T) {
	l := labtest.Up(t, topologyFile)
	top, err := l.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if lb4s := top.NodesByRole(lab.RoleLB4); len(lb4s) < 2 {
		t.Fatalf("topology %s has %d LB4s, want 2 or more", top.Name, len(lb4s))
	}

	load := labtest.StartLoad(t, l, lab.LoadConfig{Workers: 40})
	load.WaitStarted(t, 100, time.Minute)
	killed := time.Now()
	if err := l.Kill(t.Context(), "lb4-2"); err != nil {
		t.Fatal(err)
	}
	load.WaitStarted(t, 300, time.Minute)
	rep := load.Stop(t)
	if rep.Total == 0 {
		t.Fatal("the load made no connection")
	}
	byVIP := rep.ByTarget()
	for _, v := range top.VIPs {
		if v.Scheduler != "mh" {
			continue
		}
		if c := byVIP[v.AddrPort()]; c.Broken > 0 {
			t.Errorf("VIP %s (%s, Maglev): %d of %d connections broke when lb4-2 died", v.Name, v.AddrPort(), c.Broken, c.Total)
		}
	}

	st, err := l.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := agentState(st, "lb4-2", "killed"); err != nil {
		t.Error(err)
	}
	evs, err := l.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !hasInjection(evs, "lb4-2", killed) {
		t.Errorf("no %s event for lb4-2 after %s in %d events", lab.EventInject, killed.Format(time.TimeOnly), len(evs))
	}
	t.Logf("lb4-2 killed under load: %d connections, %d broken, %d interrupted", rep.Total, rep.Broken, rep.Interrupted)
}

// agentState says what is wrong when node's agent is not in state.
func agentState(st *lab.Status, node, state string) error {
	n, ok := st.Node(node)
	switch {
	case !ok:
		return fmt.Errorf("lab %s has no node %s", st.Name, node)
	case n.Agent.State != state:
		return fmt.Errorf("node %s: agent %s, want %s", node, n.Agent.State, state)
	}
	return nil
}

// hasInjection reports whether evs hold an injection into node at or
// after since (a second early: the lab's clock and ours may differ).
func hasInjection(evs []lab.Event, node string, since time.Time) bool {
	for _, e := range evs {
		if e.Kind == lab.EventInject && e.Node == node && !e.Time.Before(since.Add(-time.Second)) && strings.Contains(e.Msg, "kill") {
			return true
		}
	}
	return false
}
