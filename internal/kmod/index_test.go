package kmod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lab-lb/lab/internal/testenv"
)

// modulesDep is an excerpt of Debian's UML modules.dep (6.1.176), with a
// compressed module and a dash in a name added.
const modulesDep = `kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/net/ipv6/ipv6.ko kernel/lib/crc-ccitt.ko
kernel/net/netfilter/ipvs/ip_vs_mh.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/net/ipv6/ipv6.ko kernel/lib/crc-ccitt.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko
kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko: kernel/net/ipv6/ipv6.ko
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/ipv6/ipv6.ko: kernel/lib/crc-ccitt.ko
kernel/lib/crc-ccitt.ko:
kernel/net/ipv4/ipip.ko: kernel/net/ipv4/tunnel4.ko kernel/net/ipv4/ip_tunnel.ko
kernel/net/ipv4/tunnel4.ko:
kernel/net/ipv4/ip_tunnel.ko:
kernel/drivers/net/veth.ko.xz:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko kernel/net/ipv6/ipv6.ko kernel/lib/crc-ccitt.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/net/needs-missing.ko: kernel/drivers/net/missing.ko
kernel/test/cycle_a.ko: kernel/test/cycle_b.ko
kernel/test/cycle_b.ko: kernel/test/cycle_a.ko
`

const modulesBuiltin = `kernel/fs/hostfs/hostfs.ko
kernel/net/unix/unix.ko
`

// writeModuleTree writes a fake module tree and returns its directory.
func writeModuleTree(t *testing.T, dep, builtin string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if builtin != "" {
		if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtin), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestModuleName(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"kernel/net/netfilter/ipvs/ip_vs.ko", "ip_vs"},
		{"kernel/lib/crc-ccitt.ko", "crc_ccitt"},
		{"kernel/drivers/net/veth.ko.xz", "veth"},
		{"kernel/drivers/net/tun.ko.zst", "tun"},
		{"ipip", "ipip"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			if got := moduleName(tc.file); got != tc.want {
				t.Errorf("moduleName(%q) = %q, want %q", tc.file, got, tc.want)
			}
		})
	}
}

func TestParseModulesDep(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		wantFiles map[string]string
		wantDeps  map[string][]string
		wantErr   string
	}{
		{
			name: "dependencies",
			in:   "kernel/net/ipv4/ipip.ko: kernel/net/ipv4/tunnel4.ko kernel/net/ipv4/ip_tunnel.ko\n\nkernel/lib/crc-ccitt.ko:\n",
			wantFiles: map[string]string{
				"ipip":      "kernel/net/ipv4/ipip.ko",
				"crc_ccitt": "kernel/lib/crc-ccitt.ko",
			},
			wantDeps: map[string][]string{
				"ipip":      {"tunnel4", "ip_tunnel"},
				"crc_ccitt": nil,
			},
		},
		{
			name:      "empty",
			in:        "",
			wantFiles: map[string]string{},
			wantDeps:  map[string][]string{},
		},
		{
			name:    "no colon",
			in:      "kernel/lib/crc-ccitt.ko\n",
			wantErr: `line 1: missing colon: "kernel/lib/crc-ccitt.ko"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, deps, err := parseModulesDep(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("parseModulesDep() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseModulesDep() error = %v", err)
			}
			if diff := cmp.Diff(files, tc.wantFiles); diff != "" {
				t.Errorf("files (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(deps, tc.wantDeps); diff != "" {
				t.Errorf("deps (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLoadOrder(t *testing.T) {
	dir := writeModuleTree(t, modulesDep, modulesBuiltin)
	idx, err := readModuleIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		modules []string
		want    []string
		wantErr string
	}{
		{
			name:    "dependencies first, depth first",
			modules: []string{"ip_vs"},
			want: []string{
				"kernel/lib/crc-ccitt.ko",
				"kernel/net/ipv6/ipv6.ko",
				"kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko",
				"kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko",
				"kernel/net/netfilter/nf_conntrack.ko",
				"kernel/net/netfilter/ipvs/ip_vs.ko",
			},
		},
		{
			name:    "each module once",
			modules: []string{"ip_vs_mh", "ip_vs", "bridge", "ipip", "ip_vs_mh"},
		},
		{
			name:    "compressed file and dash in name",
			modules: []string{"veth", "crc-ccitt"},
			want:    []string{"kernel/drivers/net/veth.ko.xz", "kernel/lib/crc-ccitt.ko"},
		},
		{
			name:    "built in",
			modules: []string{"hostfs", "ipip"},
			want:    []string{"kernel/net/ipv4/tunnel4.ko", "kernel/net/ipv4/ip_tunnel.ko", "kernel/net/ipv4/ipip.ko"},
		},
		{
			name:    "unknown",
			modules: []string{"ipip", "nft_chain_nat"},
			wantErr: "module nft_chain_nat not found",
		},
		{
			name:    "missing dependency",
			modules: []string{"needs-missing"},
			wantErr: "module missing (needed by needs_missing) not found",
		},
		{
			name:    "cycle",
			modules: []string{"cycle_a"},
			wantErr: "dependency cycle: cycle_a → cycle_b → cycle_a",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := idx.loadOrder(tc.modules...)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("loadOrder() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadOrder() error = %v", err)
			}
			checkOrder(t, idx, tc.modules, got)
			if tc.want != nil {
				if diff := cmp.Diff(got, tc.want); diff != "" {
					t.Errorf("loadOrder() (-got +want):\n%s", diff)
				}
			}
		})
	}
}

// checkOrder asserts the invariants of a load order: each file once, every
// requested module present unless built in, every dependency before its
// dependant.
func checkOrder(t *testing.T, idx *moduleIndex, requested, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, f := range order {
		name := moduleName(f)
		if _, dup := pos[name]; dup {
			t.Errorf("module %s loaded twice in %v", name, order)
		}
		pos[name] = i
	}
	for _, r := range requested {
		r = strings.ReplaceAll(r, "-", "_")
		if _, ok := pos[r]; !ok && !idx.builtin[r] {
			t.Errorf("module %s missing from %v", r, order)
		}
	}
	for name, i := range pos {
		for _, d := range idx.deps[name] {
			j, ok := pos[d]
			if !ok || j > i {
				t.Errorf("dependency %s of %s not loaded before it in %v", d, name, order)
			}
		}
	}
}

func TestLoad(t *testing.T) {
	dir := writeModuleTree(t, modulesDep, modulesBuiltin)
	for _, tc := range []struct {
		name       string
		modules    []string
		loaded     []string // in /sys/module before
		fail       string   // file whose loading fails
		want       []string // files loaded
		wantLoaded []string // what Load reports
		wantErr    string
	}{
		{
			name:       "ipip",
			modules:    []string{"ipip"},
			want:       []string{"kernel/net/ipv4/tunnel4.ko", "kernel/net/ipv4/ip_tunnel.ko", "kernel/net/ipv4/ipip.ko"},
			wantLoaded: []string{"tunnel4", "ip_tunnel", "ipip"},
		},
		{
			name:    "ip_vs",
			modules: []string{"ip_vs"},
			want: []string{
				"kernel/lib/crc-ccitt.ko",
				"kernel/net/ipv6/ipv6.ko",
				"kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko",
				"kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko",
				"kernel/net/netfilter/nf_conntrack.ko",
				"kernel/net/netfilter/ipvs/ip_vs.ko",
			},
			wantLoaded: []string{"crc_ccitt", "ipv6", "nf_defrag_ipv6", "nf_defrag_ipv4", "nf_conntrack", "ip_vs"},
		},
		{
			name:       "loaded dependencies are skipped",
			modules:    []string{"ip_vs_mh"},
			loaded:     []string{"crc_ccitt", "ipv6", "nf_defrag_ipv6", "nf_defrag_ipv4", "nf_conntrack"},
			want:       []string{"kernel/net/netfilter/ipvs/ip_vs.ko", "kernel/net/netfilter/ipvs/ip_vs_mh.ko"},
			wantLoaded: []string{"ip_vs", "ip_vs_mh"},
		},
		{
			name:    "loaded and built-in modules load nothing",
			modules: []string{"ipip", "unix"},
			loaded:  []string{"ipip"},
		},
		{
			name:       "failure stops",
			modules:    []string{"ipip"},
			fail:       "kernel/net/ipv4/ip_tunnel.ko",
			want:       []string{"kernel/net/ipv4/tunnel4.ko", "kernel/net/ipv4/ip_tunnel.ko"},
			wantLoaded: []string{"tunnel4"},
			wantErr:    "load module ip_tunnel: permission denied",
		},
		{
			name:    "a missing module loads nothing",
			modules: []string{"ipip", "nope", "gone"},
			wantErr: "kernel 6.1.176 lacks nope, gone: not built in, not loaded, and no module file under " + dir,
		},
		{
			name:    "a missing dependency loads nothing",
			modules: []string{"veth", "needs_missing"},
			wantErr: "resolve modules in " + dir + ": module missing (needed by needs_missing) not found",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			for _, m := range tc.loaded {
				mkdirs(t, filepath.Join(sys, m, "initstate"))
			}
			var got []string
			k := Kernel{Release: "6.1.176", SysModule: sys, Tree: dir, load: func(file string) error {
				rel, err := filepath.Rel(dir, file)
				if err != nil {
					return err
				}
				got = append(got, rel)
				if rel == tc.fail {
					return os.ErrPermission
				}
				// The kernel shows a loaded module in sysfs.
				mkdirs(t, filepath.Join(sys, moduleName(rel), "initstate"))
				return nil
			}}
			var mods []Module
			for _, m := range tc.modules {
				mods = append(mods, Module{Name: m})
			}
			loaded, err := k.Load(mods)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Load() error = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("loaded files (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(loaded, tc.wantLoaded); diff != "" {
				t.Errorf("Load() names (-got +want):\n%s", diff)
			}
		})
	}
}

// mkdirs creates the directory of path and path itself as an empty file.
func mkdirs(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNeedsExistInUML checks that Debian's user-mode Linux module tree,
// which the VM loads from and the stock-host guest offers as its
// /lib/modules, has every module a lab needs.
func TestNeedsExistInUML(t *testing.T) {
	dir := "/usr/lib/uml/modules"
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		testenv.SkipOrFail(t, "no user-mode Linux modules in %s: apt-get install user-mode-linux", dir)
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			idx, err := readModuleIndex(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			names := Names(Needs())
			order, err := idx.loadOrder(names...)
			if err != nil {
				t.Fatalf("loadOrder(Needs()) error = %v", err)
			}
			checkOrder(t, idx, names, order)
		})
	}
}

func FuzzLoadOrder(f *testing.F) {
	f.Add(modulesDep, "ip_vs")
	f.Add("a.ko: b.ko\nb.ko: a.ko\n", "a")
	f.Add("x.ko:\n", "x")
	f.Fuzz(func(t *testing.T, dep, name string) {
		files, deps, err := parseModulesDep(strings.NewReader(dep))
		if err != nil {
			return
		}
		idx := &moduleIndex{files: files, deps: deps, builtin: map[string]bool{}}
		order, err := idx.loadOrder(name)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, f := range order {
			if seen[f] {
				t.Errorf("file %s twice in %v", f, order)
			}
			seen[f] = true
		}
	})
}
