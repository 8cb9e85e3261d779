package vm

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Config describes one VM: a user-mode Linux kernel booting the host's root
// filesystem with a program of ours as init.
type Config struct {
	Kernel     string            // path of linux.uml, from FindKernel
	Memory     string            // guest memory, e.g. "2G" (default "2G")
	Init       string            // absolute path of the program run as init
	Env        map[string]string // KEY=VALUE kernel parameters, init's environment
	TAP        string            // host TAP name (at most 15 characters)
	HostAddr   netip.Prefix      // address on the host end, e.g. 169.254.77.1/30
	GuestAddr  netip.Prefix      // address init gives the guest end
	ConsoleLog string            // file receiving the VM console
}

const (
	// EnvAddr carries Config.GuestAddr to the guest.
	EnvAddr = "LAB_VM_ADDR"
	// defaultMemory is the guest memory when Config.Memory is empty.
	defaultMemory = "2G"
	// maxEnv bounds Config.Env: the kernel panics beyond 32 environment
	// variables for init, and it adds HOME, TERM, mem= and LAB_VM_ADDR.
	maxEnv = 24
	// maxCmdline is UML's COMMAND_LINE_SIZE.
	maxCmdline = 4096
)

// validEnvKey reports whether k is upper-case letters, digits and
// underscores, not starting with a digit: such keys cannot clash with the
// kernel's own (lower-case) parameters.
func validEnvKey(k string) bool {
	for i, r := range k {
		if !(r >= 'A' && r <= 'Z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return k != ""
}

// validMemory reports whether m is a size UML understands: digits with an
// optional K, M or G suffix.
func validMemory(m string) bool {
	digits := strings.TrimRight(m, "KMG")
	if len(m)-len(digits) > 1 || digits == "" || digits[0] == '0' {
		return false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// validTAP reports whether name fits an interface name (at most 15 bytes)
// and the vec0 option it is written into.
func validTAP(name string) bool {
	if name == "" || len(name) > 15 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// safeParam reports whether s can be a kernel parameter value: printable
// ASCII without spaces or quotes.
func safeParam(s string) bool {
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || r == '"' || r == '\'' || r == '\\' {
			return false
		}
	}
	return true
}

// validate reports every problem of the configuration at once.
func (c Config) validate(umlDir string) error {
	var errs []error
	if c.Kernel == "" {
		errs = append(errs, errors.New("kernel: empty"))
	}
	if c.Memory != "" && !validMemory(c.Memory) {
		errs = append(errs, fmt.Errorf("memory %q: want a size such as 2G or 512M", c.Memory))
	}
	if !filepath.IsAbs(c.Init) || !safeParam(c.Init) || strings.Contains(c.Init, ",") {
		errs = append(errs, fmt.Errorf("init %q: want an absolute path without spaces, quotes or commas", c.Init))
	}
	if len(c.Env) > maxEnv {
		errs = append(errs, fmt.Errorf("env: %d variables, at most %d", len(c.Env), maxEnv))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		switch {
		case !validEnvKey(k):
			errs = append(errs, fmt.Errorf("env %q: want upper-case letters, digits and underscores", k))
		case k == EnvAddr:
			errs = append(errs, fmt.Errorf("env %s: reserved, set from the guest address", k))
		case !safeParam(c.Env[k]):
			errs = append(errs, fmt.Errorf("env %s=%q: value has spaces, quotes or control characters", k, c.Env[k]))
		}
	}
	if !validTAP(c.TAP) {
		errs = append(errs, fmt.Errorf("tap %q: want 1 to 15 letters, digits, '_', '.' or '-'", c.TAP))
	}
	switch {
	case !c.HostAddr.IsValid():
		errs = append(errs, errors.New("host address: missing"))
	case !c.GuestAddr.IsValid():
		errs = append(errs, errors.New("guest address: missing"))
	case c.HostAddr.Masked() != c.GuestAddr.Masked():
		errs = append(errs, fmt.Errorf("host address %s and guest address %s: not in one subnet", c.HostAddr, c.GuestAddr))
	case c.HostAddr.Addr() == c.GuestAddr.Addr():
		errs = append(errs, fmt.Errorf("host and guest addresses: both %s", c.HostAddr.Addr()))
	}
	if c.ConsoleLog == "" {
		errs = append(errs, errors.New("console log: empty"))
	}
	if !filepath.IsAbs(umlDir) || !safeParam(umlDir) || strings.Contains(umlDir, ",") {
		errs = append(errs, fmt.Errorf("uml directory %q: want an absolute path without spaces, quotes or commas (set TMPDIR)", umlDir))
	}
	if len(errs) == 0 {
		if n := len(strings.Join(c.kernelArgs(umlDir), " ")); n >= maxCmdline {
			errs = append(errs, fmt.Errorf("kernel command line: %d bytes, at most %d", n, maxCmdline-1))
		}
	}
	return errors.Join(errs...)
}

// umlDirIn returns the directory under which UML keeps its per-VM "umid"
// directory (pid file, management console socket).
func umlDirIn(tmp string) string { return filepath.Join(tmp, "lab-uml") }

// kernelArgs returns linux.uml's arguments (without argv[0]).
//
// con=null ssl=null keep UML from opening terminal emulators or host ptys
// for its other consoles and serial lines; con0=null,fd:1 gives the main
// console no input (stdin is /dev/null) and sends its output to stdout.
// umid names the VM after its TAP so that the directory UML keeps under
// uml_dir is found again by Kill. pty.legacy_count=0 skips registering
// 256 BSD pseudo-terminal pairs nothing in the lab uses: 1.0 of the 2.5 s
// a boot takes (measured with initcall_debug: pty_init 0.67 s).
func (c Config) kernelArgs(umlDir string) []string {
	mem := c.Memory
	if mem == "" {
		mem = defaultMemory
	}
	args := []string{
		"mem=" + mem,
		"root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
		"init=" + c.Init,
		"quiet",
		"con=null", "ssl=null", "con0=null,fd:1",
		"pty.legacy_count=0",
		"uml_dir=" + umlDir, "umid=" + c.TAP,
		"vec0:transport=tap,ifname=" + c.TAP,
		EnvAddr + "=" + c.GuestAddr.String(),
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		args = append(args, k+"="+c.Env[k])
	}
	return args
}
