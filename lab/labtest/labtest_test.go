package labtest_test

import (
	"os"
	"testing"
	"time"

	"github.com/lab-lb/lab/lab"
	"github.com/lab-lb/lab/lab/labtest"
)

func TestMain(m *testing.M) {
	lab.MaybeRunInternal()
	os.Exit(m.Run())
}

// TestLB4Crash is the package documentation's example, run: a Maglev lab
// loses an LB4 under load and no connection breaks.
func TestLB4Crash(t *testing.T) {
	l := labtest.Up(t, "../../topologies/minimal.yaml")
	load := labtest.StartLoad(t, l, lab.LoadConfig{Workers: 40})
	load.WaitStarted(t, 100, time.Minute) // connections in flight
	if err := l.Kill(t.Context(), "lb4-2"); err != nil {
		t.Fatal(err)
	}
	load.WaitStarted(t, 300, time.Minute) // and many more after
	rep := load.Stop(t)
	if rep.Total == 0 {
		t.Fatal("the load made no connection")
	}
	if rep.Broken != 0 {
		t.Errorf("%d of %d connections broke when lb4-2 died", rep.Broken, rep.Total)
	}
	t.Logf("lb4-2 killed under load: %d connections, %d broken, %d interrupted", rep.Total, rep.Broken, rep.Interrupted)
}

func TestLabName(t *testing.T) {
	for in, want := range map[string]string{
		"TestLB4Crash":                      "t-testlb4crash",
		"TestX/sub_case":                    "t-testx-sub-case",
		"TestAVeryLongNameIndeedThatGoesOn": "t-testaverylongnameindee",
	} {
		if got := labtest.LabName(in); got != want {
			t.Errorf("LabName(%q) = %q, want %q", in, got, want)
		}
	}
}
