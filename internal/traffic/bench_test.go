package traffic

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/backend"
)

// BenchmarkLoopback runs 200 workers against a backend on loopback for
// three seconds per iteration and reports connections and megabytes per
// second, paced as in the lab (default pauses) and unpaced (no pause, which
// shows the cost of the client itself).
func BenchmarkLoopback(b *testing.B) {
	const span = 3 * time.Second
	for _, bc := range []struct {
		name  string
		pause time.Duration
	}{
		{name: "paced", pause: 0},
		{name: "unpaced", pause: -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := serve(b, (&backend.Server{Name: "S1"}).Handler())
			var total, finished, broken, interrupted int
			var bytes int64
			var elapsed time.Duration
			var cpu time.Duration
			for b.Loop() {
				before := cpuTime()
				r, err := Start(context.Background(), Config{
					Targets: []netip.AddrPort{addr},
					Sources: sources(10, 100),
					Pause:   bc.pause,
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				// The run's length is the measurement, not a wait for a
				// condition.
				timer := time.NewTimer(span)
				<-timer.C
				rep := r.Stop()
				cpu += cpuTime() - before
				elapsed += rep.End.Sub(rep.Start)
				total += rep.Total
				finished += rep.Total - rep.Stopped
				broken += rep.Broken
				interrupted += rep.Interrupted
				for _, c := range rep.Conns {
					bytes += c.Bytes
				}
			}
			s := elapsed.Seconds()
			b.ReportMetric(float64(total)/s, "conns/s")
			b.ReportMetric(float64(bytes)/s/1e6, "MB/s")
			b.ReportMetric(float64(broken), "broken")
			b.ReportMetric(float64(interrupted), "interrupted")
			b.Logf("%s: %d connections (%d finished before the stop) in %s: %.0f conns/s, %.1f MB/s, "+
				"%d broken, %d interrupted, process CPU %.0f%% of one core (client and server)",
				bc.name, total, finished, elapsed.Round(time.Millisecond), float64(total)/s,
				float64(bytes)/s/1e6, broken, interrupted, 100*cpu.Seconds()/s)
		})
	}
}

// cpuTime returns the CPU time used by the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
