package cpustat

import (
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseSystem(t *testing.T) {
	got, err := parseSystem([]byte("cpu  100 5 50 800 10 3 7 0 0 0\ncpu0 50 2 25 400 5 1 3 0 0 0\ncpu1 50 3 25 400 5 2 4 0 0 0\nintr 1 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := System{User: 100, Nice: 5, Kernel: 50, Idle: 800, IOWait: 10, IRQ: 3, SoftIRQ: 7, CPUs: 2}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("parseSystem() (-got +want):\n%s", diff)
	}
	if got.Total() != 975 || got.Busy() != 165 {
		t.Errorf("Total() = %d, Busy() = %d; want 975, 165", got.Total(), got.Busy())
	}
	if _, err := parseSystem([]byte("intr 1\n")); err == nil {
		t.Error("parseSystem() without a cpu line: no error")
	}
}

func TestParseProcess(t *testing.T) {
	// A command with spaces and a closing parenthesis, as a process may
	// name itself.
	line := "4242 (lab (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 123 45 0 0 20 0 12 0 6789 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	got, err := parseProcess([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, Process{PID: 4242, Comm: "lab (x) y", Ticks: 168, Start: 6789}); diff != "" {
		t.Errorf("parseProcess() (-got +want):\n%s", diff)
	}
	for _, bad := range []string{"", "12 noparen S", "12 (x) S 1 2"} {
		if _, err := parseProcess([]byte(bad)); err == nil {
			t.Errorf("parseProcess(%q): no error", bad)
		}
	}
	if got := parseNSLink("net:[4026531840]"); got != 4026531840 {
		t.Errorf("parseNSLink() = %d", got)
	}
}

func TestCompare(t *testing.T) {
	t0 := time.Unix(1000, 0)
	before := Snapshot{Time: t0, System: System{User: 1000, Idle: 1000, CPUs: 1}, Processes: []Process{
		{PID: 10, Comm: "lab", Ticks: 500, Start: 1},
		{PID: 11, Comm: "haproxy", Ticks: 100, Start: 2},
		{PID: 12, Comm: "lab", Ticks: 300, Start: 3}, // ends; its PID is reused
	}}
	after := Snapshot{Time: t0.Add(10 * time.Second), System: System{User: 1600, Idle: 1400, CPUs: 1}, Processes: []Process{
		{PID: 10, Comm: "lab", Ticks: 800, Start: 1},     // +300
		{PID: 11, Comm: "haproxy", Ticks: 150, Start: 2}, // +50
		{PID: 12, Comm: "lab", Ticks: 100, Start: 900},   // new: +100
		{PID: 13, Comm: "sshd", Ticks: 20, Start: 950},   // not counted apart
	}}
	kind := func(p Process) string {
		switch p.Comm {
		case "lab":
			return "agent"
		case "haproxy":
			return "haproxy"
		}
		return ""
	}
	got := Compare(before, after, kind)
	want := Report{Interval: 10 * time.Second, CPUs: 1, Busy: 0.6, Kinds: []Kind{
		{Kind: "agent", Processes: 2, CPU: 0.4},
		{Kind: OtherKind, CPU: 0.15},
		{Kind: "haproxy", Processes: 1, CPU: 0.05},
	}}
	if diff := cmp.Diff(got, want, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("Compare() (-got +want):\n%s", diff)
	}
	boot := SinceBoot(after, kind)
	if boot.Interval != 0 || boot.Busy != 0.5333333333333333 || boot.Kinds[0].Kind != "agent" {
		t.Errorf("SinceBoot() = %+v", boot)
	}
}

func TestTakeHere(t *testing.T) {
	s, err := Take("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	for _, p := range s.Processes {
		if p.PID == self {
			if p.NetNS == 0 || p.Comm == "" {
				t.Errorf("this process read as %+v", p)
			}
			return
		}
	}
	t.Errorf("this process (%d) is not among %d read", self, len(s.Processes))
}
