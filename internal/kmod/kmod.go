// Package kmod tells which kernel modules the lab needs, what the running
// kernel offers of each (built in, loaded, loadable or missing) and loads
// the loadable ones with finit_module(2) from the module tree's
// modules.dep: no kmod, no modprobe.
//
// The same code serves the host (native mode, `lab doctor`) and the
// user-mode Linux guest, whose modules sit under /usr/lib/uml/modules.
package kmod

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// State is what a kernel offers of one module.
type State string

// The states of a module, from best to worst.
const (
	BuiltIn  State = "built-in" // compiled into the kernel
	Loaded   State = "loaded"   // a module, loaded
	Loadable State = "loadable" // a module file in the kernel's module tree
	Missing  State = "missing"  // none of the above
)

// Available reports whether the lab can use a module in this state.
func (s State) Available() bool { return s != Missing }

// Module is a kernel module the lab may need.
type Module struct {
	Name   string // as in /sys/module: ip_vs, sch_netem
	Config string // its Kconfig symbol, to read /proc/config.gz: CONFIG_IP_VS
	For    string // what the lab uses it for, for people
}

// Feature is what the kernel offers of one module.
type Feature struct {
	Module string `json:"module"`
	For    string `json:"for"`
	State  State  `json:"state"`
}

// Kernel says where to look at one kernel and how to load its modules.
type Kernel struct {
	Release   string // as uname -r
	SysModule string // /sys/module: one directory per loaded or built-in module
	Tree      string // the module tree, /lib/modules/RELEASE: modules.dep, modules.builtin
	Config    string // /proc/config.gz, when the kernel exposes its configuration

	load func(file string) error // finit_module; tests replace it
}

// Running returns the running kernel, with its module tree in
// /lib/modules, as on any distribution.
func Running() (Kernel, error) {
	release, err := Release()
	if err != nil {
		return Kernel{}, err
	}
	return Kernel{
		Release:   release,
		SysModule: "/sys/module",
		Tree:      filepath.Join("/lib/modules", release),
		Config:    "/proc/config.gz",
	}, nil
}

// Release returns the running kernel's release, as uname -r.
func Release() (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", fmt.Errorf("read the kernel release: %w", err)
	}
	return unix.ByteSliceToString(uts.Release[:]), nil
}

// WithTree returns k with its modules taken from another tree: the UML
// guest's are under /usr/lib/uml/modules/RELEASE.
func (k Kernel) WithTree(dir string) Kernel {
	k.Tree = dir
	return k
}

// facts is what was read of a kernel once, for many modules.
type facts struct {
	idx    *moduleIndex    // nil: no readable modules.dep
	config map[string]byte // CONFIG_X → 'y' or 'm'; nil: no configuration
}

func (k Kernel) read() facts {
	var f facts
	if idx, err := readModuleIndex(k.Tree); err == nil {
		f.idx = idx
	} else if b, err := os.Open(filepath.Join(k.Tree, "modules.builtin")); err == nil {
		// A kernel without loadable modules may still list its built-ins.
		if builtin, err := parseModulesBuiltin(b); err == nil {
			f.idx = &moduleIndex{files: map[string]string{}, deps: map[string][]string{}, builtin: builtin}
		}
		b.Close()
	}
	if k.Config != "" {
		f.config, _ = readConfig(k.Config)
	}
	return f
}

// state classifies one module. A module directory with an initstate file
// is a loaded module; without it, a built-in one (sysfs shows built-ins
// that have parameters or a version).
func (k Kernel) state(f facts, m Module) State {
	dir := filepath.Join(k.SysModule, m.Name)
	if _, err := os.Stat(filepath.Join(dir, "initstate")); err == nil {
		return Loaded
	}
	if _, err := os.Stat(dir); err == nil {
		return BuiltIn
	}
	if f.idx != nil && f.idx.builtin[m.Name] {
		return BuiltIn
	}
	if m.Config != "" && f.config[m.Config] == 'y' {
		return BuiltIn
	}
	if f.idx != nil {
		if _, ok := f.idx.files[m.Name]; ok {
			return Loadable
		}
	}
	return Missing
}

// Probe says what the kernel offers of each module, in the order given.
func (k Kernel) Probe(mods []Module) []Feature {
	f := k.read()
	out := make([]Feature, len(mods))
	for i, m := range mods {
		out[i] = Feature{Module: m.Name, For: m.For, State: k.state(f, m)}
	}
	return out
}

// MissingError names the modules a kernel can neither use nor load.
type MissingError struct {
	Release string
	Modules []string
	Tree    string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("kernel %s lacks %s: not built in, not loaded, and no module file under %s",
		e.Release, strings.Join(e.Modules, ", "), e.Tree)
}

// Load loads the given modules that are neither built in nor loaded, with
// the modules they depend on, and returns the names of those it loaded, in
// load order. A module the kernel lacks altogether fails the whole call
// before anything is loaded, with a *MissingError.
func (k Kernel) Load(mods []Module) ([]string, error) {
	f := k.read()
	var want, missing []string
	for _, m := range mods {
		switch k.state(f, m) {
		case Loadable:
			want = append(want, m.Name)
		case Missing:
			missing = append(missing, m.Name)
		}
	}
	if len(missing) > 0 {
		return nil, &MissingError{Release: k.Release, Modules: missing, Tree: k.Tree}
	}
	if len(want) == 0 {
		return nil, nil
	}
	order, err := f.idx.loadOrder(want...)
	if err != nil {
		return nil, fmt.Errorf("resolve modules in %s: %w", k.Tree, err)
	}
	load := k.load
	if load == nil {
		load = finitModule
	}
	var loaded []string
	for _, file := range order {
		name := moduleName(file)
		if _, err := os.Stat(filepath.Join(k.SysModule, name)); err == nil {
			continue // a dependency already there
		}
		if err := load(filepath.Join(k.Tree, file)); err != nil {
			return loaded, fmt.Errorf("load module %s: %w", name, err)
		}
		loaded = append(loaded, name)
	}
	return loaded, nil
}

// readConfig reads the y and m symbols of a kernel configuration, gzipped
// as /proc/config.gz is.
func readConfig(path string) (map[string]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return parseConfig(zr)
}

// parseConfig reads "CONFIG_X=y" and "CONFIG_X=m" lines.
func parseConfig(r io.Reader) (map[string]byte, error) {
	out := map[string]byte{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		sym, val, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.HasPrefix(sym, "CONFIG_") && (val == "y" || val == "m") {
			out[sym] = val[0]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return out, nil
}
