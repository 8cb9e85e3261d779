package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// hostProbe says where to look at the running kernel; tests point it at a
// fake tree.
type hostProbe struct {
	release    string // kernel release, as uname -r
	sysModule  string // /sys/module
	modulesDir string // /lib/modules, holding one tree per release
}

// CheckHost reports whether the running kernel can host the lab natively:
// it needs ip_vs, ip_vs_mh, ip_vs_sh and ipip, each loaded, built in or
// loadable. Otherwise reason names what is missing.
func CheckHost() (native bool, reason string) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return false, fmt.Sprintf("cannot read the kernel release: %v", err)
	}
	return hostProbe{
		release:    unix.ByteSliceToString(uts.Release[:]),
		sysModule:  "/sys/module",
		modulesDir: "/lib/modules",
	}.check()
}

func (p hostProbe) check() (bool, string) {
	tree := filepath.Join(p.modulesDir, p.release)
	idx, err := readModuleIndex(tree)
	var noModules bool
	if err != nil {
		// No modules.dep: only loaded or built-in modules count. A
		// kernel without modules may still list its built-ins.
		noModules = true
		idx = &moduleIndex{builtin: map[string]bool{}}
		if f, err := os.Open(filepath.Join(tree, "modules.builtin")); err == nil {
			if b, err := parseModulesBuiltin(f); err == nil {
				idx.builtin = b
			}
			f.Close()
		}
	}
	var missing []string
	for _, m := range []string{"ip_vs", "ip_vs_mh", "ip_vs_sh", "ipip"} {
		if _, err := os.Stat(filepath.Join(p.sysModule, m)); err == nil {
			continue
		}
		if idx.builtin[m] {
			continue
		}
		if _, ok := idx.files[m]; ok {
			continue
		}
		missing = append(missing, m)
	}
	if len(missing) == 0 {
		return true, ""
	}
	why := "not built in, no module"
	if noModules {
		why = "not built in, no modules"
	}
	return false, fmt.Sprintf("host kernel %s lacks %s (%s)", p.release, strings.Join(missing, ", "), why)
}

// ErrNoKernel says that no user-mode Linux kernel is installed.
var ErrNoKernel = errors.New("user-mode Linux kernel not found: apt-get install user-mode-linux")

// FindKernel returns the path of the user-mode Linux kernel: linux.uml on
// PATH, else /usr/bin/linux.uml.
func FindKernel() (string, error) {
	return findKernel(os.Getenv("PATH"), "/usr/bin/linux.uml")
}

func findKernel(pathList, fallback string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, "linux.uml"); isExecutable(p) {
			return p, nil
		}
	}
	if isExecutable(fallback) {
		return fallback, nil
	}
	return "", ErrNoKernel
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
