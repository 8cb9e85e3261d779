package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestExitCodes checks the documented exit statuses of commands that need
// no lab and no root.
func TestExitCodes(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\nsteps:\n  - kill: Lb4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badTopo := filepath.Join(t.TempDir(), "topo.yaml")
	if err := os.WriteFile(badTopo, []byte("name: t\nnodes:\n  r1: {role: rooter}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"version"}, ExitOK},
		{[]string{"test", "--check", "../../testdata/scenarios/steady.yaml"}, ExitOK},
		{[]string{"test", "--check", bad}, ExitFailed},
		{[]string{"up", "--dry-run", badTopo}, ExitFailed},
		{[]string{"no-such-command"}, ExitUsage},
		{[]string{"status", "--no-such-flag"}, ExitUsage},
		{[]string{"up"}, ExitUsage},
		{[]string{"maint", "lb4-1"}, ExitUsage},
		{[]string{"--name", "no-such-lab-here", "load", "--from", "users", "--rate", "50"}, ExitUsage},
		{[]string{"--name", "no-such-lab-here", "load", "--from", "users", "--requests", "--rate", "50"}, ExitLab},
		{[]string{"--name", "no-such-lab-here", "status"}, ExitLab},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &errOut)
		if got := ExitCode(err); got != tc.want {
			t.Errorf("lab %q: exit %d (%v), want %d", tc.args, got, err, tc.want)
		}
	}
}

// TestNoFlagShadowsName checks that no command has a flag of its own
// named like a global one: lab --name LAB load --name www would not say
// which lab.
func TestNoFlagShadowsName(t *testing.T) {
	root := newRootCmd()
	for _, c := range root.Commands() {
		for _, global := range []string{"name", "verbose"} {
			if c.LocalNonPersistentFlags().Lookup(global) != nil {
				t.Errorf("lab %s has a flag --%s of its own, which hides the global one", c.Name(), global)
			}
		}
	}
}
