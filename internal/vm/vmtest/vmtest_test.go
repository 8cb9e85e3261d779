package vmtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMain(m *testing.M) {
	Main(m)
	os.Exit(m.Run())
}

func TestSpecEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec spec
	}{
		{"plain", spec{Run: "^TestKernel$", Dir: "/work/main/internal/ipvs", Timeout: 4 * time.Minute, Nonce: "0123456789abcdef"}},
		{"subtest with spaces and quotes", spec{Run: `^TestKernel$/^same flows "whatever"\b`, Dir: "/tmp/a dir,with=odd 'chars'", Nonce: "n"}},
		{"non-ascii, no timeout", spec{Run: "Test(É|ü)", Dir: "/", Nonce: "n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.spec.encode()
			// A kernel parameter value: no spaces, quotes, '=' or
			// control characters.
			for _, r := range v {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
					t.Fatalf("encoded spec %q holds %q", v, r)
				}
			}
			got, err := decodeSpec(v)
			if err != nil {
				t.Fatalf("decodeSpec(%q): %v", v, err)
			}
			if diff := cmp.Diff(got, tc.spec); diff != "" {
				t.Errorf("round trip (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDecodeSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"not base64", "a b", "decode LAB_VMTEST: illegal base64 data at input byte 1"},
		{"not json", spec{}.encode()[:4], "decode LAB_VMTEST: unexpected end of JSON input"},
		{"no pattern", spec{Nonce: "n"}.encode(), "decode LAB_VMTEST: missing pattern or nonce"},
		{"no nonce", spec{Run: "."}.encode(), "decode LAB_VMTEST: missing pattern or nonce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeSpec(tc.value)
			if err == nil || err.Error() != tc.want {
				t.Errorf("decodeSpec(%q) error = %v, want %q", tc.value, err, tc.want)
			}
		})
	}
}

func TestTestArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec spec
		want []string
	}{
		{"with timeout", spec{Run: "^TestKernel$", Timeout: 280 * time.Second}, []string{"-test.run=^TestKernel$", "-test.v=true", "-test.count=1", "-test.timeout=4m40s"}},
		{"without timeout", spec{Run: "A|B"}, []string{"-test.run=A|B", "-test.v=true", "-test.count=1"}},
		{"benchmark", spec{Run: "^BenchmarkUp$", Bench: true, Timeout: time.Minute}, []string{"-test.run=^$", "-test.bench=^BenchmarkUp$", "-test.benchtime=1x", "-test.v=true", "-test.count=1", "-test.timeout=1m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.spec.testArgs(), tc.want); diff != "" {
				t.Errorf("testArgs() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseMarker(t *testing.T) {
	const nonce = "c0ffee"
	for _, tc := range []struct {
		name, line string
		code       int
		ok         bool
	}{
		{"pass", marker(nonce, 0), 0, true},
		{"fail", marker(nonce, 1), 1, true},
		{"after kernel output", "[   12.3] reboot: Power down" + marker(nonce, 3), 3, true},
		{"trailing carriage return", marker(nonce, 0) + "\r", 0, true},
		{"other nonce", marker("bad", 0), 0, false},
		{"no code", markerPrefix + " " + nonce, 0, false},
		{"code not a number", markerPrefix + " " + nonce + " x", 0, false},
		{"extra field", marker(nonce, 0) + " 1", 0, false},
		{"prefix glued to more", markerPrefix + "X " + nonce + " 0", 0, false},
		{"test output", "--- PASS: TestKernel (1.20s)", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ok := parseMarker(tc.line, nonce)
			if code != tc.code || ok != tc.ok {
				t.Errorf("parseMarker(%q) = %d, %t, want %d, %t", tc.line, code, ok, tc.code, tc.ok)
			}
		})
	}
}

func TestFollow(t *testing.T) {
	const nonce = "c0ffee"
	for _, tc := range []struct {
		name string
		// chunks are appended to the console one per poll; the VM ends
		// after the last one unless it stays up.
		chunks   []string
		stayUp   bool
		wantCode int
		wantErr  string
		wantLog  []string
	}{
		{
			name:     "pass",
			chunks:   []string{"boot\n", "=== RUN   TestX\n--- PASS: TestX (0.00s)\nPASS\n", "\n" + marker(nonce, 0) + "\n", "reboot: Power down\n"},
			wantCode: 0,
			wantLog:  []string{"boot", "=== RUN   TestX", "--- PASS: TestX (0.00s)", "PASS", "", marker(nonce, 0)},
		},
		{
			name:     "fail, lines split across writes",
			chunks:   []string{"--- FA", "IL: TestX (0.00s)\r\n", "FAIL\n" + marker(nonce, 1)[:5], marker(nonce, 1)[5:] + "\n"},
			wantCode: 1,
			wantLog:  []string{"--- FAIL: TestX (0.00s)", "FAIL", marker(nonce, 1)},
		},
		{
			name:    "vm ends without the marker",
			chunks:  []string{"panic: boom\n", marker("other", 0) + "\n", "Kernel panic - not syncing: Attempted to kill init!"},
			wantErr: "vm ended before the tests finished: see the guest output above",
			wantLog: []string{"panic: boom", marker("other", 0), "Kernel panic - not syncing: Attempted to kill init!"},
		},
		{
			name:     "no tests matched",
			chunks:   []string{"testing: warning: no tests to run\nPASS\n", marker(nonce, 0) + "\n"},
			wantCode: 0,
			wantErr:  errNoTests.Error(),
			wantLog:  []string{"testing: warning: no tests to run", "PASS", marker(nonce, 0)},
		},
		{
			name:    "timeout",
			chunks:  []string{"=== RUN   TestHang\n"},
			stayUp:  true,
			wantErr: "guest tests not finished: context deadline exceeded",
			wantLog: []string{"=== RUN   TestHang"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			console := filepath.Join(t.TempDir(), "console.log")
			f, err := os.Create(console)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			chunks := tc.chunks
			isAlive := func() bool {
				if len(chunks) == 0 {
					return tc.stayUp
				}
				if _, err := f.WriteString(chunks[0]); err != nil {
					t.Error(err)
				}
				chunks = chunks[1:]
				return true
			}
			var log []string
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			code, err := follow(ctx, console, nonce, isAlive, func(line string) { log = append(log, line) })
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if code != tc.wantCode || gotErr != tc.wantErr {
				t.Errorf("follow() = %d, %q, want %d, %q", code, gotErr, tc.wantCode, tc.wantErr)
			}
			if diff := cmp.Diff(log, tc.wantLog); diff != "" {
				t.Errorf("logged lines (-got +want):\n%s", diff)
			}
		})
	}
	t.Run("missing console", func(t *testing.T) {
		_, err := follow(context.Background(), filepath.Join(t.TempDir(), "none"), nonce, func() bool { return true }, func(string) {})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("follow() error = %v, want one matching os.ErrNotExist", err)
		}
	})
}

func TestFreeSubnet(t *testing.T) {
	host, guest, err := freeSubnet()
	if err != nil {
		t.Fatal(err)
	}
	if host.Bits() != 30 || host.Masked() != guest.Masked() || host.Addr() == guest.Addr() || !strings.HasPrefix(host.String(), "169.254.216.") {
		t.Errorf("freeSubnet() = %s, %s: want two addresses of one /30 in 169.254.216.0/24", host, guest)
	}
}
