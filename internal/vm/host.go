package vm

import (
	"errors"
	"os"
	"path/filepath"
)

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
