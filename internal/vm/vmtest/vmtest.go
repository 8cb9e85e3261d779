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
	"github.com/lab-lb/lab/internal/testenv"
	"strconv"
	"strings"
	"time"
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
