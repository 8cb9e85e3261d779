package backend

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder is a slog.Handler that keeps "LEVEL message" lines for tests.
type recorder struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced at every new line
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Level.String()+" "+rec.Message)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	return nil
}

// wait waits until line has been logged n times, failing the test after a
// deadline.
func (r *recorder) wait(t *testing.T, line string, n int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		count := 0
		for _, l := range r.lines {
			if l == line {
				count++
			}
		}
		if count >= n {
			r.mu.Unlock()
			return
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for log line %q %d times", line, n)
		}
	}
}

// checkPattern reports the first byte of b, a body part starting at offset
// off, that differs from the generated pattern.
func checkPattern(b []byte, off int64) error {
	for i, c := range b {
		if want := PatternByte(off + int64(i)); c != want {
			return fmt.Errorf("byte %d is %#02x, want %#02x", off+int64(i), c, want)
		}
	}
	return nil
}

func TestHandler(t *testing.T) {
	h := (&Server{Name: "S3"}).Handler()
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantHeader http.Header // checked keys only
		wantBody   string      // when wantLen is 0
		wantLen    int64       // a generated body of this length
	}{
		{
			name: "root answers the name", method: "GET", path: "/", wantStatus: 200,
			wantHeader: http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {"3"}},
			wantBody:   "S3\n",
		},
		{
			name: "healthcheck", method: "GET", path: "/healthcheck", wantStatus: 200,
			wantHeader: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			wantBody:   "ok\n",
		},
		{
			name: "kibibytes", method: "GET", path: "/3K", wantStatus: 200,
			wantHeader: http.Header{"Content-Type": {"application/octet-stream"}, "Content-Length": {"3072"}},
			wantLen:    3 << 10,
		},
		{
			name: "several blocks and a partial one", method: "GET", path: "/1M", wantStatus: 200,
			wantHeader: http.Header{"Content-Length": {"1048576"}},
			wantLen:    1 << 20,
		},
		{
			name: "head of a large file sends no body", method: "HEAD", path: "/1G", wantStatus: 200,
			wantHeader: http.Header{"Content-Length": {"1073741824"}},
		},
		{name: "head of root", method: "HEAD", path: "/", wantStatus: 200, wantBody: "S3\n"},
		{name: "unknown path", method: "GET", path: "/index.html", wantStatus: 404, wantBody: "404 page not found\n"},
		{name: "lower-case unit", method: "GET", path: "/10m", wantStatus: 404, wantBody: "404 page not found\n"},
		{name: "zero size", method: "GET", path: "/0K", wantStatus: 404, wantBody: "404 page not found\n"},
		{name: "nested path", method: "GET", path: "/10M/x", wantStatus: 404, wantBody: "404 page not found\n"},
		{name: "healthcheck subpath", method: "GET", path: "/healthcheck/x", wantStatus: 404, wantBody: "404 page not found\n"},
		{
			name: "other method", method: "POST", path: "/", wantStatus: 405,
			wantHeader: http.Header{"Allow": {"GET, HEAD"}},
			wantBody:   "Method Not Allowed\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.RemoteAddr = "203.0.113.184:40000"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
			want := http.Header{"X-Lab-Server": {"S3"}, "X-Lab-Client": {"203.0.113.184:40000"}}
			for k, v := range tt.wantHeader {
				want[k] = v
			}
			got := http.Header{}
			for k := range want {
				if v, ok := res.Header[k]; ok {
					got[k] = v
				}
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("headers (-got +want):\n%s", diff)
			}
			body := rec.Body.Bytes()
			if tt.wantLen == 0 {
				if tt.method == "HEAD" {
					// The recorder keeps what a handler writes for HEAD;
					// only the generated bodies must not be written.
					if tt.path != "/" && len(body) != 0 {
						t.Errorf("HEAD wrote %d body bytes", len(body))
					}
					return
				}
				if diff := cmp.Diff(string(body), tt.wantBody); diff != "" {
					t.Errorf("body (-got +want):\n%s", diff)
				}
				return
			}
			if int64(len(body)) != tt.wantLen {
				t.Fatalf("body length %d, want %d", len(body), tt.wantLen)
			}
			if err := checkPattern(body, 0); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "1K", want: 1024},
		{in: "512K", want: 512 << 10},
		{in: "10M", want: 10 << 20},
		{in: "100M", want: 100 << 20},
		{in: "1G", want: 1 << 30},
		{in: "1024G", want: MaxSize},
		{in: "1025G", wantErr: true},
		{in: "1073741824K", want: MaxSize},
		{in: "1073741825K", wantErr: true},
		{in: "99999999999999999999999G", wantErr: true},
		{in: "", wantErr: true},
		{in: "K", wantErr: true},
		{in: "10", wantErr: true},
		{in: "10k", wantErr: true},
		{in: "10T", wantErr: true},
		{in: "10MB", wantErr: true},
		{in: "0M", wantErr: true},
		{in: "010M", wantErr: true},
		{in: "-1M", wantErr: true},
		{in: "+1M", wantErr: true},
		{in: "1.5M", wantErr: true},
		{in: " 1M", wantErr: true},
	}
	for _, tt := range tests {
		name := tt.in
		if name == "" {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseSize(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestPattern(t *testing.T) {
	block := newBlock()
	if len(block)%patternPeriod != 0 {
		t.Fatalf("block of %d bytes is not a whole number of %d-byte periods", len(block), patternPeriod)
	}
	line := string(block[:patternPeriod])
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
		t.Errorf("period %q is not one line", line)
	}
	for i, c := range line[:patternPeriod-1] {
		if c < '!' || c > '~' {
			t.Fatalf("byte %d of the period is %#02x, not printable", i, c)
		}
	}
}

// patternWriter checks a streamed body against the pattern as it arrives.
type patternWriter struct {
	n   int64
	err error
}

func (w *patternWriter) Write(b []byte) (int, error) {
	if w.err == nil {
		w.err = checkPattern(b, w.n)
	}
	w.n += int64(len(b))
	return len(b), nil
}

func TestLargeBodyStreamsInBoundedMemory(t *testing.T) {
	srv := httptest.NewServer((&Server{Name: "S1"}).Handler())
	t.Cleanup(srv.Close)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := srv.Client().Get(srv.URL + "/100M")
	if err != nil {
		t.Fatalf("GET /100M: %v", err)
	}
	defer res.Body.Close()
	if res.ContentLength != 100<<20 {
		t.Errorf("Content-Length %d, want %d", res.ContentLength, 100<<20)
	}
	var w patternWriter
	if _, err := io.Copy(&w, res.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	runtime.ReadMemStats(&after)
	if w.n != 100<<20 {
		t.Errorf("read %d bytes, want %d", w.n, 100<<20)
	}
	if w.err != nil {
		t.Errorf("content: %v", w.err)
	}
	// Server and client share this process: everything both allocated
	// while moving 100 MiB must stay far below the body's size.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d bytes while streaming 100 MiB", alloc)
	if alloc > 8<<20 {
		t.Errorf("allocated %d bytes while streaming 100 MiB, want at most 8 MiB", alloc)
	}
}

func TestDownloadStopsWhenClientLeaves(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer((&Server{Name: "S1", Log: slog.New(rec)}).Handler())
	t.Cleanup(srv.Close)

	res, err := srv.Client().Get(srv.URL + "/1G")
	if err != nil {
		t.Fatalf("GET /1G: %v", err)
	}
	if _, err := io.CopyN(io.Discard, res.Body, 1<<20); err != nil {
		t.Fatalf("read first MiB: %v", err)
	}
	// Closing an unfinished body closes the connection.
	res.Body.Close()
	rec.wait(t, "DEBUG download ended early", 1)
}
