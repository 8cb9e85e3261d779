// Package testenv decides, for tests, whether this machine can run what a
// test needs (root, a binary, a kernel feature). A test that cannot run
// skips with its reason printed, except when LAB_REQUIRE_E2E=1 (set by
// `make test` and CI): then it fails, so that a green run means every
// end-to-end test really ran.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireVar is the environment variable that turns skips into failures.
const RequireVar = "LAB_REQUIRE_E2E"

// Required reports whether skips are failures here.
func Required() bool { return os.Getenv(RequireVar) == "1" }

// SkipOrFail skips t with the reason, or fails it when Required.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("cannot run with %s=1: %s", RequireVar, reason)
	}
	t.Skipf("skipped: %s (%s=1 makes this a failure)", reason, RequireVar)
}

// RequireRoot skips or fails t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (network namespaces, mounts, netlink)")
	}
}

// RequireBinary returns the path of the program name, or skips or fails t.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "no %s binary: %v", name, err)
	}
	return path
}

// Eventually polls cond until it returns nil, or fails t with cond's last
// error once timeout has passed: tests wait on conditions, never on fixed
// sleeps.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	EventuallyEvery(t, timeout, 10*time.Millisecond, what, cond)
}

// EventuallyEvery is Eventually polling every interval: a condition that
// asks a lab in a one-CPU VM must not keep that CPU busy answering.
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}
