package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// moduleIndex is what modules.dep and modules.builtin say about a module
// tree: the file of each loadable module relative to the tree, with its
// dependencies, and the names of the built-in modules.
type moduleIndex struct {
	files   map[string]string   // module name → path relative to the tree
	deps    map[string][]string // module name → names of its dependencies
	builtin map[string]bool     // module names built into the kernel
}

// moduleName turns a path from modules.dep ("kernel/lib/crc-ccitt.ko.xz")
// into the module's name ("crc_ccitt").
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// parseModulesDep reads modules.dep: one line per module, "FILE: DEP...".
func parseModulesDep(r io.Reader) (files map[string]string, deps map[string][]string, err error) {
	files = map[string]string{}
	deps = map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return nil, nil, fmt.Errorf("line %d: missing colon: %q", n, line)
		}
		name := moduleName(file)
		files[name] = file
		var names []string
		for _, d := range strings.Fields(rest) {
			names = append(names, moduleName(d))
		}
		deps[name] = names
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return files, deps, nil
}

// parseModulesBuiltin reads modules.builtin: one module path a line.
func parseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	builtin := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			builtin[moduleName(line)] = true
		}
	}
	return builtin, sc.Err()
}

// readModuleIndex reads modules.dep and, when present, modules.builtin
// from a module tree such as /usr/lib/uml/modules/6.1.176.
func readModuleIndex(dir string) (*moduleIndex, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files, deps, err := parseModulesDep(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", f.Name(), err)
	}
	idx := &moduleIndex{files: files, deps: deps, builtin: map[string]bool{}}
	b, err := os.Open(filepath.Join(dir, "modules.builtin"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		defer b.Close()
		if idx.builtin, err = parseModulesBuiltin(b); err != nil {
			return nil, fmt.Errorf("parse %s: %w", b.Name(), err)
		}
	}
	return idx, nil
}

// loadOrder returns the files to load, relative to the tree, so that every
// module comes after its dependencies (depth first), each file once.
// Built-in modules need no file and are left out.
func (idx *moduleIndex) loadOrder(names ...string) ([]string, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, from []string) error
	visit = func(name string, from []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(from, name), " → "))
		}
		file, ok := idx.files[name]
		if !ok {
			if idx.builtin[name] {
				state[name] = done
				return nil
			}
			if len(from) > 0 {
				return fmt.Errorf("module %s (needed by %s) not found", name, from[len(from)-1])
			}
			return fmt.Errorf("module %s not found", name)
		}
		state[name] = visiting
		for _, d := range idx.deps[name] {
			if err := visit(d, append(from, name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		if err := visit(strings.ReplaceAll(n, "-", "_"), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// finitModule loads a module file; EEXIST (already loaded) is success.
func finitModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(file, ".ko") {
		// .ko.xz, .ko.gz, .ko.zst: the kernel decompresses them itself.
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", file, err)
	}
	return nil
}
