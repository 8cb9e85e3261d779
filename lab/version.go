package lab

import (
	"runtime"
	"runtime/debug"
)

// Version is what `lab version` prints: which lab this is, built how, and
// what this host's kernel offers it.
type Version struct {
	// Module is the module version: v1.2.3 from `go install ...@v1.2.3`,
	// "(devel)" for a build from a clone.
	Module string `json:"module"`
	// Commit is the VCS revision the binary was built from, with
	// Modified set when the tree had changes; empty when unknown (go
	// install of a module version records none).
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Go is the Go version that built the binary.
	Go string `json:"go"`
	// Host is what this machine offers a lab (as `lab doctor` says).
	Host Host `json:"host"`
}

// CurrentVersion reads the binary's build information and checks the
// host.
func CurrentVersion() Version {
	v := Version{Module: "unknown", Go: runtime.Version(), Host: CheckHost()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Module = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}
