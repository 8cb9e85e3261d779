// Package vmtest runs kernel-dependent tests of a Go test binary inside a
// user-mode Linux VM when the host kernel lacks what they need (IPVS, IPIP).
//
// The host side, [Run], boots a fresh VM with the test binary itself as
// init, asks it to run one test pattern, copies the guest's console into
// the test log and fails the host test if the guest run fails. The guest
// side, [Main], called first thing in the package's TestMain, recognises
// that it is that init, prepares the guest (pseudo file systems, kernel
// modules), runs the requested tests, prints a final marker line with the
// exit code on the console and powers the VM off.
//
// A test that needs the real kernel calls Run when the host cannot run it
// and runs its body otherwise:
//
//	func TestMain(m *testing.M) {
//		vmtest.Main(m)
//		os.Exit(m.Run())
//	}
//
//	func TestKernel(t *testing.T) {
//		if !vm.InGuest() && !hostHasIPVS() {
//			vmtest.Run(t, "^TestKernel$")
//			return
//		}
//		// The real test.
//	}
//
// Inside the guest LAB_REQUIRE_E2E=1 is always set: a test that the VM was
// booted for fails there rather than skips.
package vmtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lab-lb/lab/internal/testenv"
)

const (
	// EnvSpec carries the host's request to the guest as a kernel
	// parameter: base64url (no padding) of a JSON [spec]. Its presence
	// makes Main take over in the guest.
	EnvSpec = "LAB_VMTEST"
	// markerPrefix starts the line the guest prints after its tests,
	// followed by the run's nonce and the exit code.
	markerPrefix = "LAB_VMTEST_EXIT"
	// envRequireE2E turns skips of tests needing root or kernel features
	// into failures; the guest always sets it.
	envRequireE2E = testenv.RequireVar
)

// spec is what the host asks of the guest.
type spec struct {
	Run     string        `json:"run"`     // -test.run pattern
	Dir     string        `json:"dir"`     // working directory of the host test
	Timeout time.Duration `json:"timeout"` // -test.timeout in the guest
	Nonce   string        `json:"nonce"`   // tells the real marker from test output
	// StockHost makes the guest a stock distribution host: see
	// [StockHost].
	StockHost bool `json:"stock_host,omitempty"`
	// Bench runs Run as a benchmark pattern, once (-test.benchtime=1x).
	Bench bool `json:"bench,omitempty"`
}

// Option changes how [Run] boots the guest.
type Option func(*options)

type options struct {
	stockHost bool
	bench     bool
	memory    string
	timeout   time.Duration
}

// StockHost makes the guest look to the lab like a fresh Debian or Ubuntu
// machine: the user-mode Linux module tree is its /lib/modules/RELEASE,
// no module is loaded, and the kernel loads none on its own (module
// autoloading is off, so a module the code under test forgets is an
// error, not a silent autoload). Natively, `lab up` must load what it
// needs itself. The host's /lib/modules must exist (Run creates it when
// it does not, and removes it afterwards): the guest mounts a tmpfs on it.
func StockHost() Option { return func(o *options) { o.stockHost = true } }

// Bench makes the name given to [Run] a benchmark pattern: the guest runs
// the matching benchmarks once each (-test.benchtime=1x) and no test.
func Bench() Option { return func(o *options) { o.bench = true } }

// Memory sets the guest's memory, such as "2G" (default 1G).
func Memory(m string) Option { return func(o *options) { o.memory = m } }

// Timeout bounds the whole guest run (default five minutes).
func Timeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// InStockHost reports whether this process runs the tests of a guest
// booted with [StockHost].
func InStockHost() bool {
	v, ok := os.LookupEnv(EnvSpec)
	if !ok {
		return false
	}
	s, err := decodeSpec(v)
	return err == nil && s.StockHost
}

// encode returns the spec as a kernel parameter value: base64url without
// padding has neither spaces, quotes nor '=', whatever the pattern or the
// directory hold.
func (s spec) encode() string {
	b, _ := json.Marshal(s) // cannot fail: strings and an integer
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeSpec parses the value of EnvSpec.
func decodeSpec(v string) (spec, error) {
	var s spec
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return s, fmt.Errorf("decode %s: %w", EnvSpec, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode %s: %w", EnvSpec, err)
	}
	if s.Run == "" || s.Nonce == "" {
		return s, fmt.Errorf("decode %s: missing pattern or nonce", EnvSpec)
	}
	return s, nil
}

// testArgs returns the flags the guest runs its tests with.
func (s spec) testArgs() []string {
	args := []string{"-test.run=" + s.Run, "-test.v=true", "-test.count=1"}
	if s.Bench {
		args = []string{"-test.run=^$", "-test.bench=" + s.Run, "-test.benchtime=1x", "-test.v=true", "-test.count=1"}
	}
	if s.Timeout > 0 {
		args = append(args, "-test.timeout="+s.Timeout.String())
	}
	return args
}

// newNonce returns a random token for one run.
func newNonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// marker returns the line the guest prints once its tests are done.
func marker(nonce string, code int) string {
	return fmt.Sprintf("%s %s %d", markerPrefix, nonce, code)
}

// parseMarker reports whether line carries the marker of the run nonce,
// and its exit code. Kernel messages may be glued in front of it on the
// console, so the marker may start anywhere in the line.
func parseMarker(line, nonce string) (code int, ok bool) {
	i := strings.Index(line, markerPrefix+" ")
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(line[i+len(markerPrefix):])
	if len(f) != 2 || f[0] != nonce {
		return 0, false
	}
	code, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, false
	}
	return code, true
}

// errNoTests says that the pattern matched no test in the guest.
var errNoTests = errors.New("no test matches the pattern")

// noTestsLine is what the testing package prints when -test.run matches
// nothing.
const noTestsLine = "testing: warning: no tests to run"
