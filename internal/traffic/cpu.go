package traffic

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat is where the kernel counts the time its CPUs spent; in VM mode
// the load runs inside the VM, so this is the VM's CPU.
const procStat = "/proc/stat"

// cpuTimes are the cumulative jiffies of every CPU of the machine: in all,
// and idle (idle and iowait).
type cpuTimes struct {
	total, idle uint64
}

// readCPUTimes reads the aggregate "cpu" line of a /proc/stat file.
func readCPUTimes(path string) (cpuTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTimes{}, fmt.Errorf("read %s: %v", path, sc.Err())
	}
	fields := strings.Fields(sc.Text())
	// cpu user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already counted in user and nice.
	if len(fields) < 9 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("%s: first line %q is not the cpu total", path, sc.Text())
	}
	var t cpuTimes
	for i, s := range fields[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("%s: cpu field %d: %w", path, i+1, err)
		}
		t.total += v
		if i == 3 || i == 4 { // idle, iowait
			t.idle += v
		}
	}
	return t, nil
}

// busy is the share of CPU time spent busy from a to b, from 0 to 1; it
// is 0 when no time passed.
func busy(a, b cpuTimes) float64 {
	total := b.total - a.total
	if b.total <= a.total || b.idle < a.idle {
		return 0
	}
	idle := b.idle - a.idle
	return float64(total-min(idle, total)) / float64(total)
}
