package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stat      string
		wantState byte
		wantSID   int
		wantErr   bool
	}{
		{"uml", "8697 (linux.uml) S 1 8697 8697 0 -1 4194560 1503 0 0 0", 'S', 8697, false},
		{"zombie", "8718 (linux.uml) Z 1 8697 8697 0 -1", 'Z', 8697, false},
		{"parentheses and spaces in name", "42 (a) b) (c d) t 8697 8697 8697 0", 't', 8697, false},
		{"no name", "42 S 1 2 3", 0, 0, true},
		{"short", "42 (x) S 1 2", 0, 0, true},
		{"bad session", "42 (x) S 1 2 x 0", 0, 0, true},
		{"bad state", "42 (x) 7 1 2 3 0", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, sid, err := parseStat([]byte(tc.stat))
			if (err != nil) != tc.wantErr || state != tc.wantState || sid != tc.wantSID {
				t.Errorf("parseStat() = %q, %d, %v, want %q, %d, error %v", state, sid, err, tc.wantState, tc.wantSID, tc.wantErr)
			}
		})
	}
}

// fakeProc writes a fake /proc: pid → stat line and command line.
func fakeProc(t *testing.T, procs map[string][2]string) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, pid)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(p[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cmdline"), []byte(p[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, other := range []string{"self", "sys", "0"} {
		if err := os.MkdirAll(filepath.Join(dir, other), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSessionMembers(t *testing.T) {
	uml := "linux.uml\x00mem=2G\x00rootfstype=hostfs\x00uml_dir=/tmp/lab-uml\x00umid=lab0\x00"
	proc := fakeProc(t, map[string][2]string{
		"100": {"100 (linux.uml) Z 1 100 100 0", ""},
		"101": {"101 (linux.uml) S 1 100 100 0", uml},
		"102": {"102 (linux.uml) t 100 100 100 0", uml},
		"200": {"200 (bash) S 1 200 200 0", "bash\x00"},
		"201": {"201 (sleep) S 200 200 200 0", "sleep\x00100\x00"},
	})
	for _, tc := range []struct {
		name     string
		sid      int
		want     []int
		wantArgs []string
	}{
		{"vm without its leader", 100, []int{101, 102}, strings.Split(strings.TrimSuffix(uml, "\x00"), "\x00")},
		{"not a vm", 200, []int{200, 201}, nil},
		{"no session", 300, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sessionMembers(proc, tc.sid)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("sessionMembers() (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(umlArgs(proc, got), tc.wantArgs); diff != "" {
				t.Errorf("umlArgs() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestRemoveUMID(t *testing.T) {
	for _, tc := range []struct {
		name     string
		umid     string
		args     func(dir string) []string
		wantGone bool
	}{
		{
			name:     "removed",
			umid:     "lab0",
			args:     func(dir string) []string { return []string{"linux.uml", "uml_dir=" + dir, "umid=lab0"} },
			wantGone: true,
		},
		{
			name: "no umid argument",
			umid: "lab0",
			args: func(dir string) []string { return []string{"linux.uml", "uml_dir=" + dir} },
		},
		{
			name: "umid escaping the directory",
			umid: "lab0",
			args: func(dir string) []string { return []string{"linux.uml", "uml_dir=" + dir + "/lab0/x", "umid=.."} },
		},
		{
			name: "relative directory",
			umid: "lab0",
			args: func(string) []string { return []string{"linux.uml", "uml_dir=lab-uml", "umid=lab0"} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := filepath.Join(dir, tc.umid)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			pidFile := filepath.Join(d, "pid")
			if err := os.WriteFile(pidFile, []byte("100\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := removeUMID(tc.args(dir)); err != nil {
				t.Fatalf("removeUMID() error = %v", err)
			}
			_, err := os.Stat(d)
			if gone := os.IsNotExist(err); gone != tc.wantGone {
				t.Errorf("directory gone = %v, want %v", gone, tc.wantGone)
			}
			if _, err := os.Stat(pidFile); !tc.wantGone && err != nil {
				t.Errorf("pid file touched: %v", err)
			}
			if _, err := os.Stat(dir); err != nil {
				t.Errorf("uml_dir itself: %v", err)
			}
		})
	}
	t.Run("already gone", func(t *testing.T) {
		if err := removeUMID([]string{"uml_dir=" + t.TempDir(), "umid=lab0"}); err != nil {
			t.Errorf("removeUMID() error = %v", err)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("8697 (linux.uml) S 1 8697 8697 0 -1 4194560"))
	f.Add([]byte("1 ((sd-pam)) S 0 1 1 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		state, _, err := parseStat(b)
		if err == nil && !(state >= 'A' && state <= 'Z' || state >= 'a' && state <= 'z') {
			t.Errorf("parseStat(%q): state %q is not a letter", b, state)
		}
	})
}
