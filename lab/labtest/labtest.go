// Package labtest brings labs up for Go tests: the lab goes down in
// t.Cleanup, and a test that cannot have one (not root, no IPVS and no
// user-mode Linux kernel) is skipped with the reason, or fails when
// LAB_REQUIRE_E2E=1 says the environment must run it.
//
// A network test in Go reads like its YAML scenario:
//
//	func TestLB4Crash(t *testing.T) {
//		l := labtest.Up(t, "topologies/minimal.yaml")
//		load := labtest.StartLoad(t, l, lab.LoadConfig{Workers: 40})
//		load.WaitStarted(t, 100, time.Minute) // connections in flight
//		if err := l.Kill(t.Context(), "lb4-2"); err != nil {
//			t.Fatal(err)
//		}
//		load.WaitStarted(t, 300, time.Minute) // and many more after
//		if rep := load.Stop(t); rep.Broken != 0 {
//			t.Errorf("%d of %d connections broke", rep.Broken, rep.Total)
//		}
//	}
package labtest

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/vm"
	"github.com/lab-lb/lab/lab"
)

// Up brings the topology up as a lab named after the test and registers
// its removal with t.Cleanup. The lab re-executes the running binary for
// its own processes, so the test binary's TestMain must call
// lab.MaybeRunInternal() first (see its documentation).
func Up(t testing.TB, topology string, opts ...lab.Options) *lab.Lab {
	t.Helper()
	if reason := missing(); reason != "" {
		if os.Getenv("LAB_REQUIRE_E2E") == "1" {
			t.Fatalf("cannot run a lab: %s (LAB_REQUIRE_E2E=1)", reason)
		}
		t.Skipf("cannot run a lab: %s", reason)
	}
	var o lab.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Name == "" {
		o.Name = LabName(t.Name())
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	_ = lab.Down(context.Background(), o.Name, nil) // a leftover of a crashed run
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	l, err := lab.Up(ctx, topology, o)
	if err != nil {
		t.Fatalf("lab up %s: %v", topology, err)
	}
	t.Cleanup(func() {
		l.Close()
		if err := lab.Down(context.Background(), o.Name, nil); err != nil {
			t.Errorf("lab down %s: %v", o.Name, err)
		}
	})
	return l
}

// Load is a load started by StartLoad.
type Load struct {
	l       *lab.Load
	stopped bool
}

// StartLoad starts cfg's load on l; it is stopped by Stop or, if the test
// ends first, in t.Cleanup.
func StartLoad(t testing.TB, l *lab.Lab, cfg lab.LoadConfig) *Load {
	t.Helper()
	ld, err := l.StartLoad(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start load: %v", err)
	}
	load := &Load{l: ld}
	t.Cleanup(func() {
		if !load.stopped {
			_, _ = ld.Stop(context.Background())
		}
	})
	return load
}

// WaitStarted waits until the load has started n connections in all,
// polling its progress; it fails the test after timeout.
func (ld *Load) WaitStarted(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	started := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, err := ld.l.Progress(ctx)
		cancel()
		if err == nil {
			started = p.Started
		}
		if started >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("load: %d connections started after %s, want %d (last error: %v)", started, timeout, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the load and returns what it measured.
func (ld *Load) Stop(t testing.TB) *lab.Report {
	t.Helper()
	ld.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := ld.l.Stop(ctx)
	if err != nil {
		t.Fatalf("stop load: %v", err)
	}
	return rep
}

// missing says why this machine cannot run a lab, "" when it can.
func missing() string {
	if testing.Short() {
		return "a lab does not come up in -short mode"
	}
	if os.Geteuid() != 0 {
		return "not root (network namespaces, mounts, netlink)"
	}
	if h := lab.CheckHost(); h.Mode == lab.ModeVM && h.UML == "" {
		return h.Reason + ", and " + vm.ErrNoKernel.Error()
	}
	return ""
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// LabName is the name Up gives the lab of a test: lower case, at most 24
// characters, starting with a letter.
func LabName(test string) string {
	n := "t-" + strings.Trim(nonName.ReplaceAllString(strings.ToLower(test), "-"), "-")
	if len(n) > 24 {
		n = strings.TrimRight(n[:24], "-")
	}
	return n
}
