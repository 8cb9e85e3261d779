package vm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

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
