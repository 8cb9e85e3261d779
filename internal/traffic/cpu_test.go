package traffic

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCPUTimes reads /proc/stat's total line and computes the busy share
// between two readings; bad files are errors.
func TestCPUTimes(t *testing.T) {
	write := func(content string) string {
		p := filepath.Join(t.TempDir(), "stat")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// user nice system idle iowait irq softirq steal guest guest_nice
	a, err := readCPUTimes(write("cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 100 0 50 800 50 0 0 0 30 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a != (cpuTimes{total: 1000, idle: 850}) {
		t.Errorf("first reading %+v, want total 1000 idle 850 (guest time is in user already)", a)
	}
	b, err := readCPUTimes(write("cpu  400 0 50 850 100 0 0 0 30 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	// 400 more jiffies, 100 of them idle: 75 % busy.
	if got := busy(a, b); got != 0.75 {
		t.Errorf("busy = %v, want 0.75", got)
	}
	if got := busy(a, a); got != 0 {
		t.Errorf("busy with no time passed = %v, want 0", got)
	}

	for name, content := range map[string]string{
		"empty":        "",
		"no total":     "cpu0 1 2 3 4 5 6 7 8\n",
		"short":        "cpu 1 2 3\n",
		"not a number": "cpu 1 2 3 x 5 6 7 8\n",
	} {
		if _, err := readCPUTimes(write(content)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	// On this machine, the real file reads.
	if _, err := os.Stat(procStat); err == nil {
		if _, err := readCPUTimes(procStat); err != nil && !strings.Contains(err.Error(), "permission") {
			t.Errorf("read %s: %v", procStat, err)
		}
	}
}
