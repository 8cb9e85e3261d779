package lab_test

import (
	"bytes"
	"context"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
)

// extmod is a user's module of network tests: it imports lab and labtest
// and names their types, as a user would.
var extmod = filepath.Join("..", "testdata", "extmod")

// goInExtmod runs the go command with args in the external module, with
// the module proxy settings of this process and no workspace, and returns
// its output; it fails t when the command fails.
func goInExtmod(t *testing.T, ctx context.Context, env []string, args ...string) string {
	t.Helper()
	// The go command that builds this test, or the one on PATH.
	goBin := filepath.Join(build.Default.GOROOT, "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = testenv.RequireBinary(t, "go")
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = extmod
	cmd.Env = append(os.Environ(), append([]string{"GOWORK=off", "GOFLAGS="}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), extmod, err, out.String())
	}
	return out.String()
}

// TestExternalModuleBuilds vets the external module and compiles its
// test: a public name that changed, or an internal type a user names
// (lab.Status, lab.Event), fails here without a lab.
func TestExternalModuleBuilds(t *testing.T) {
	goInExtmod(t, t.Context(), nil, "vet", "./...")
}

// TestE2EExternalModule runs the external module's network test for real:
// it brings a lab up, kills an LB4 under load, and reads the status and
// the events through exported names only.
func TestE2EExternalModule(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	// The module's test must run, not skip: the environment can.
	out := goInExtmod(t, ctx, []string{"LAB_REQUIRE_E2E=1"}, "test", "-count=1", "-v", "-timeout=18m", "./...")
	t.Logf("go test in %s:\n%s", extmod, out)
	if !strings.Contains(out, "--- PASS: TestLB4CrashKeepsMaglevConnections") {
		t.Errorf("the external module's test did not pass")
	}
}
