//go:build tools

// This file pins the modules that lab's packages are being built on while
// they are wired in; `go mod tidy` keeps them because it reads every build
// tag.
package tools

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/haproxytech/client-native/v6/configuration"
	_ "github.com/haproxytech/client-native/v6/runtime"
	_ "github.com/moby/ipvs"
	_ "github.com/osrg/gobgp/v3/pkg/server"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)
