package kmod

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeKernel is a fake /sys/module, module tree and /proc/config.gz.
type fakeKernel struct {
	loaded  []string // loaded modules: /sys/module/NAME/initstate
	sysfs   []string // built-ins sysfs shows: /sys/module/NAME, no initstate
	dep     string   // modules.dep, none if empty
	builtin string   // modules.builtin, none if empty
	config  string   // /proc/config.gz, none if empty
}

func (f fakeKernel) kernel(t *testing.T) Kernel {
	t.Helper()
	root := t.TempDir()
	k := Kernel{
		Release:   "6.18.44-test",
		SysModule: filepath.Join(root, "sys", "module"),
		Tree:      filepath.Join(root, "lib", "modules", "6.18.44-test"),
		Config:    filepath.Join(root, "proc", "config.gz"),
	}
	for _, m := range f.loaded {
		mkdirs(t, filepath.Join(k.SysModule, m, "initstate"))
	}
	for _, m := range f.sysfs {
		mkdirs(t, filepath.Join(k.SysModule, m, "version"))
	}
	for name, content := range map[string]string{"modules.dep": f.dep, "modules.builtin": f.builtin} {
		if content != "" {
			mkdirs(t, filepath.Join(k.Tree, name))
			if err := os.WriteFile(filepath.Join(k.Tree, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if f.config != "" {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(f.config))
		zw.Close()
		mkdirs(t, k.Config)
		if err := os.WriteFile(k.Config, b.Bytes(), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func TestProbe(t *testing.T) {
	mods := []Module{
		{Name: "ip_vs", Config: "CONFIG_IP_VS"},
		{Name: "ip_vs_mh", Config: "CONFIG_IP_VS_MH"},
		{Name: "ipip", Config: "CONFIG_NET_IPIP"},
		{Name: "veth", Config: "CONFIG_VETH"},
		{Name: "bridge", Config: "CONFIG_BRIDGE"},
	}
	for _, tc := range []struct {
		name string
		k    fakeKernel
		want []State // per module of mods
	}{
		{
			name: "no modules, no configuration (this CI kernel without config.gz)",
			k:    fakeKernel{sysfs: []string{"bridge"}},
			want: []State{Missing, Missing, Missing, Missing, BuiltIn},
		},
		{
			name: "no modules, configuration says what is built in",
			k:    fakeKernel{sysfs: []string{"bridge"}, config: "# CONFIG_IP_VS is not set\nCONFIG_VETH=y\nCONFIG_BRIDGE=y\nCONFIG_NET_IPIP=m\n"},
			// ipip is configured as a module, but no tree holds it.
			want: []State{Missing, Missing, Missing, BuiltIn, BuiltIn},
		},
		{
			name: "stock distribution kernel, nothing loaded",
			k: fakeKernel{dep: modulesDep + "kernel/net/netfilter/ipvs/ip_vs_mh.ko.zst: kernel/net/netfilter/ipvs/ip_vs.ko\n",
				builtin: "kernel/net/unix/unix.ko\n"},
			want: []State{Loadable, Loadable, Loadable, Loadable, Loadable},
		},
		{
			name: "stock kernel, some loaded, some built in",
			k: fakeKernel{dep: modulesDep, builtin: "kernel/drivers/net/veth.ko\n",
				loaded: []string{"ip_vs", "bridge"}},
			want: []State{Loaded, Loadable, Loadable, BuiltIn, Loaded},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []State
			for _, f := range tc.k.kernel(t).Probe(mods) {
				got = append(got, f.State)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("Probe() states (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	got, err := parseConfig(bytes.NewReader([]byte("#\n# CONFIG_DUMMY is not set\nCONFIG_IP_VS=m\nCONFIG_VETH=y\nCONFIG_HZ=250\nCONFIG_X=\"y\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, map[string]byte{"CONFIG_IP_VS": 'm', "CONFIG_VETH": 'y'}); diff != "" {
		t.Errorf("parseConfig() (-got +want):\n%s", diff)
	}
}

func TestNeeds(t *testing.T) {
	for _, tc := range []struct {
		schedulers []string
		want       []string
	}{
		{nil, []string{"ip_vs", "ip_vs_mh", "ip_vs_sh", "ip_vs_wlc", "ip_vs_rr", "ipip", "ipv6", "ip6_tunnel", "veth", "bridge", "sch_netem"}},
		{[]string{"sh", "mh", "sh"}, []string{"ip_vs", "ip_vs_sh", "ip_vs_mh", "ipip", "ipv6", "ip6_tunnel", "veth", "bridge", "sch_netem"}},
	} {
		if diff := cmp.Diff(Names(Needs(tc.schedulers...)), tc.want); diff != "" {
			t.Errorf("Needs(%q) (-got +want):\n%s", tc.schedulers, diff)
		}
	}
	if got := Scheduler("wlc").Config; got != "CONFIG_IP_VS_WLC" {
		t.Errorf("Scheduler(wlc).Config = %q", got)
	}
}
