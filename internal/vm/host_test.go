package vm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeHost is a fake /sys/module and /lib/modules for one kernel release.
type fakeHost struct {
	loaded  []string // directories under /sys/module
	dep     string   // modules.dep, none if empty
	builtin string   // modules.builtin, none if empty
}

func (f fakeHost) probe(t *testing.T) hostProbe {
	t.Helper()
	root := t.TempDir()
	p := hostProbe{
		release:    "6.18.44-test",
		sysModule:  filepath.Join(root, "sys", "module"),
		modulesDir: filepath.Join(root, "lib", "modules"),
	}
	for _, m := range f.loaded {
		if err := os.MkdirAll(filepath.Join(p.sysModule, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tree := filepath.Join(p.modulesDir, p.release)
	for name, content := range map[string]string{"modules.dep": f.dep, "modules.builtin": f.builtin} {
		if content == "" {
			continue
		}
		if err := os.MkdirAll(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestCheckHost(t *testing.T) {
	const ipvsDep = `kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko
kernel/net/netfilter/ipvs/ip_vs_mh.ko: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko
kernel/net/netfilter/ipvs/ip_vs_sh.ko.zst: kernel/net/netfilter/ipvs/ip_vs.ko kernel/net/netfilter/nf_conntrack.ko
kernel/net/netfilter/nf_conntrack.ko:
`
	for _, tc := range []struct {
		name       string
		host       fakeHost
		wantNative bool
		wantReason string
	}{
		{
			name:       "nothing, no modules",
			host:       fakeHost{loaded: []string{"bridge", "nf_conntrack"}},
			wantReason: "host kernel 6.18.44-test lacks ip_vs, ip_vs_mh, ip_vs_sh, ipip (not built in, no modules)",
		},
		{
			name:       "all loaded, no modules",
			host:       fakeHost{loaded: []string{"ip_vs", "ip_vs_mh", "ip_vs_sh", "ipip"}},
			wantNative: true,
		},
		{
			name:       "loadable",
			host:       fakeHost{dep: ipvsDep + "kernel/net/ipv4/ipip.ko:\n"},
			wantNative: true,
		},
		{
			name: "built in and loadable",
			host: fakeHost{
				dep:     ipvsDep,
				builtin: "kernel/net/ipv4/ipip.ko\n",
			},
			wantNative: true,
		},
		{
			name: "built in, no modules.dep",
			host: fakeHost{
				loaded:  []string{"ip_vs"},
				builtin: "kernel/net/netfilter/ipvs/ip_vs_mh.ko\nkernel/net/netfilter/ipvs/ip_vs_sh.ko\nkernel/net/ipv4/ipip.ko\n",
			},
			wantNative: true,
		},
		{
			name:       "ipip missing",
			host:       fakeHost{dep: ipvsDep, loaded: []string{"ip_vs"}},
			wantReason: "host kernel 6.18.44-test lacks ipip (not built in, no module)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			native, reason := tc.host.probe(t).check()
			if native != tc.wantNative || reason != tc.wantReason {
				t.Errorf("check() = %v, %q, want %v, %q", native, reason, tc.wantNative, tc.wantReason)
			}
		})
	}
}

func TestFindKernel(t *testing.T) {
	dir := t.TempDir()
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	onPath := mk("bin/linux.uml", 0o755)
	notExec := mk("noexec/linux.uml", 0o644)
	fallback := mk("usr/bin/linux.uml", 0o755)
	for _, tc := range []struct {
		name     string
		path     string
		fallback string
		want     string
		wantErr  error
	}{
		{"on PATH", filepath.Dir(notExec) + ":relative:" + filepath.Dir(onPath), fallback, onPath, nil},
		{"fallback", filepath.Dir(notExec), fallback, fallback, nil},
		{"none", "", filepath.Join(dir, "missing"), "", ErrNoKernel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findKernel(tc.path, tc.fallback)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("findKernel() = %q, %v, want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if ErrNoKernel.Error() != "user-mode Linux kernel not found: apt-get install user-mode-linux" {
		t.Errorf("ErrNoKernel = %q, must name the Debian package", ErrNoKernel)
	}
}
