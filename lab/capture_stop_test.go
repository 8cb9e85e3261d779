package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lab-lb/lab/internal/control"
)

// fakeTcpdump answers a capture's exec request as tcpdump in a node does:
// it says it listens, then writes a pcap stream, one record every few
// milliseconds, each split across two frames, until the request's body
// ends (the capture's stop), when it writes one last record, its
// statistics and exits 0; or, with -c N, until N records. deaf ignores
// the stop (it is then killed); a filter with "and and" is refused.
type fakeTcpdump struct{ deaf bool }

const fakeLinkType = 276

// fakeHeader and fakeRecord are the stream fakeTcpdump writes: record i
// holds 60 bytes of i, and the last one (after the stop) 60 bytes of 0xee.
func fakeHeader() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	return binary.LittleEndian.AppendUint32(b, fakeLinkType)
}

func fakeRecord(fill byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 1700000000)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 60)
	b = binary.LittleEndian.AppendUint32(b, 60)
	return append(b, bytes.Repeat([]byte{fill}, 60)...)
}

func (f fakeTcpdump) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has(control.ExecInterruptParam) {
		http.Error(w, "a capture must ask to be interrupted at the end of its input", http.StatusBadRequest)
		return
	}
	_ = http.NewResponseController(w).EnableFullDuplex()
	args := q["arg"]
	fw := control.NewFrameWriter(w)
	stdout, stderr := fw.Stream("stdout"), fw.Stream("stderr")
	exit := func(code int) { _ = fw.Write(control.Frame{Exit: &code}) }
	if strings.Contains(args[len(args)-1], "and and") {
		fmt.Fprintf(stderr, "tcpdump: can't parse filter expression: syntax error\n")
		exit(1)
		return
	}
	count := 0
	if i := slices.Index(args, "-c"); i >= 0 {
		count, _ = strconv.Atoi(args[i+1])
	}
	bodyEnded := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r.Body)
		close(bodyEnded)
	}()
	stopped := bodyEnded
	if f.deaf {
		stopped = nil
	}
	fmt.Fprintf(stderr, "tcpdump: listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 65535 bytes\n")
	// The header with half of the first record, then every record cut in two.
	pending := fakeHeader()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-r.Context().Done():
			return
		case <-stopped:
			_, _ = stdout.Write(append(pending, fakeRecord(0xee)...))
			fmt.Fprintf(stderr, "%d packets captured\n%d packets received by filter\n2 packets dropped by kernel\n", i+1, i+1)
			exit(0)
			return
		case <-tick.C:
			rec := fakeRecord(byte(i))
			_, _ = stdout.Write(append(pending, rec[:30]...))
			pending = slices.Clone(rec[30:])
			if count > 0 && i+1 == count {
				_, _ = stdout.Write(pending)
				exit(0)
				return
			}
		}
	}
}

// fakeLab is a lab of the minimal topology whose supervisor answers its
// status and runs a fakeTcpdump on lb7-1, and whose process is a sleep:
// killing it is the lab going down.
func fakeLab(t *testing.T, f fakeTcpdump) (*Lab, *exec.Cmd) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("POST /v1/nodes/lb7-1/exec", f)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"name": "capt", "phase": "ready"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := control.NewClient(control.Endpoint("tcp://"+srv.Listener.Addr().String()), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	proc := exec.Command("sleep", "60")
	if err := proc.Start(); err != nil {
		t.Skipf("no sleep to stand for the lab's process: %v", err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", proc.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	start, _ := strconv.ParseUint(strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[19], 10, 64)
	in := Info{Name: "capt", Topology: "../topologies/minimal.yaml", PID: proc.Process.Pid, Start: start}
	if !in.Alive() {
		t.Fatalf("the lab's stand-in process does not look alive")
	}
	return &Lab{Info: in, dir: t.TempDir(), client: c}, proc
}

// TestCaptureStops checks how a capture ends, against a fake tcpdump: a
// stop (^C or the duration) interrupts tcpdump and still writes what it
// sent afterwards; -c and the lab going down end it; one that ignores the
// stop is cut after the grace period; a filter tcpdump refuses is an
// error. The file always holds whole records.
func TestCaptureStops(t *testing.T) {
	defer func(g time.Duration) { stopGrace = g }(stopGrace)
	stopGrace = 300 * time.Millisecond
	for _, tc := range []struct {
		name        string
		deaf        bool
		opts        CaptureOptions
		stopAfter   time.Duration // cancel the context; 0: never
		labDown     bool          // the lab's process dies once tcpdump listens
		wantStopped string
		wantErr     string
		wantLast    bool // the record written after the stop arrived
	}{
		{name: "interrupted", stopAfter: 100 * time.Millisecond, wantStopped: CaptureInterrupted, wantLast: true},
		{name: "duration", opts: CaptureOptions{Duration: 100 * time.Millisecond}, wantStopped: CaptureDuration, wantLast: true},
		{name: "count", opts: CaptureOptions{Count: 5}, wantStopped: CaptureCount},
		{name: "lab down", labDown: true, wantStopped: CaptureLabDown},
		{name: "deaf", deaf: true, stopAfter: 100 * time.Millisecond, wantStopped: CaptureInterrupted},
		{name: "bad filter", opts: CaptureOptions{Filter: []string{"tcp", "and", "and"}}, wantErr: `capture on lb7-1 any: tcpdump exit status 1: can't parse filter expression: syntax error (filter "tcp and and"; lb7-1's interfaces: infra, servers, lb4-1, lb4-2, 6lb4-1, 6lb4-2, lo; or any)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, proc := fakeLab(t, fakeTcpdump{deaf: tc.deaf})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			heard := false
			tc.opts.Listening = func(line string) {
				heard = true
				if tc.labDown {
					_ = proc.Process.Kill()
					_ = proc.Wait()
				}
			}
			if tc.stopAfter > 0 {
				time.AfterFunc(tc.stopAfter, cancel)
			}
			var out bytes.Buffer
			start := time.Now()
			res, err := l.Capture(ctx, "lb7-1", tc.opts, &out)
			took := time.Since(start)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || res.Stopped != tc.wantStopped || !heard {
				t.Fatalf("%+v %v (listening heard: %v), want stopped %q", res, err, heard, tc.wantStopped)
			}
			if took > 5*time.Second {
				t.Errorf("the capture took %s", took)
			}
			// Whole records only: the header, records 0, 1... and maybe the
			// last (a lab that goes down ends tcpdump's input too: it may
			// have had time to write it).
			last := tc.wantLast || tc.labDown && bytes.HasSuffix(out.Bytes(), fakeRecord(0xee))
			want := fakeHeader()
			for i := range res.Packets {
				fill := byte(i)
				if last && i == res.Packets-1 {
					fill = 0xee
				}
				want = append(want, fakeRecord(fill)...)
			}
			if !bytes.Equal(out.Bytes(), want) {
				at := 0
				for at < min(out.Len(), len(want)) && out.Bytes()[at] == want[at] {
					at++
				}
				t.Errorf("wrote %d bytes, not the header and %d whole records: differs at byte %d (%x...)", out.Len(), res.Packets, at, out.Bytes()[at:min(at+8, out.Len())])
			}
			if res.LinkType != fakeLinkType || res.Bytes != int64(60*res.Packets) || res.Packets == 0 {
				t.Errorf("result %+v", res)
			}
			if tc.wantLast && res.Dropped != 2 {
				t.Errorf("dropped %d, want tcpdump's 2", res.Dropped)
			}
			if tc.opts.Count > 0 && res.Packets != tc.opts.Count {
				t.Errorf("%d packets with -c %d", res.Packets, tc.opts.Count)
			}
		})
	}
}
