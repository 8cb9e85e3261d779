// Package configs holds the files that lab ships with its binary.
package configs

import _ "embed"

// Defaults is configs/defaults.yaml: the settings every topology starts
// from, before its own defaults, roles and node entries. It is shared: do
// not modify it.
//
//go:embed defaults.yaml
var Defaults []byte
