package cli

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/cpustat"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

func TestPrintCPU(t *testing.T) {
	rep := &lab.CPUReport{Interval: 10 * time.Second, CPUs: 1, Busy: 0.73, Kinds: []lab.CPUKind{
		{Kind: "server agent", Processes: 10, CPU: 0.19},
		{Kind: "lb4 agent", Processes: 7, CPU: 0.15},
		{Kind: "lb7 haproxy", Processes: 26, CPU: 0.12},
		{Kind: cpustat.OtherKind, CPU: 0.27},
	}}
	var b bytes.Buffer
	PrintCPU(&b, rep)
	testenv.Golden(t, filepath.Join("testdata", "cpu.txt"), b.Bytes())
}
