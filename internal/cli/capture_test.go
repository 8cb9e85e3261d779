package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lab-lb/lab/lab"
)

// TestCaptureCommand checks what `lab capture` refuses before it reaches a
// lab, and that it writes nothing, not even an empty file, when no lab
// is up.
func TestCaptureCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.pcap")
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"capture"}, "requires at least 1 arg"},
		{[]string{"--name", "no-such-lab-here", "capture", "lb7-1", "-c", "-1"}, "-c -1 --duration 0s: want 0 (no limit) or more"},
		{[]string{"--name", "no-such-lab-here", "capture", "lb7-1", "--duration", "-1s"}, "want 0 (no limit) or more"},
		{[]string{"--name", "no-such-lab-here", "capture", "lb7-1", "infra", "tcp", "port", "80", "-w", file}, "no-such-lab-here"},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("lab %s: error %v, want %q", strings.Join(tc.args, " "), err, tc.wantErr)
		}
		if out.Len() != 0 {
			t.Errorf("lab %s wrote %q to standard output", strings.Join(tc.args, " "), out.String())
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("-w %s with no lab up: the file exists (%v)", file, err)
	}
}

func TestCaptureSummary(t *testing.T) {
	for _, tc := range []struct {
		res  lab.CaptureResult
		want string
	}{
		{lab.CaptureResult{Node: "lb7-1", Interface: "any", Packets: 1, Bytes: 74, Stopped: lab.CaptureInterrupted},
			"1 packet (74 bytes) captured on lb7-1 any"},
		{lab.CaptureResult{Node: "r1", Interface: "edge", Packets: 20, Bytes: 2000, Dropped: 3, Stopped: lab.CaptureDuration},
			"20 packets (2000 bytes) captured on r1 edge, 3 dropped by the kernel (tcpdump did not keep up): duration reached"},
		{lab.CaptureResult{Node: "r1", Interface: "any", Stopped: lab.CaptureLabDown},
			"0 packets (0 bytes) captured on r1 any: the lab went down"},
	} {
		if got := captureSummary(&tc.res); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.res, got, tc.want)
		}
	}
}
