package topology

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lab-lb/lab/internal/yamlerr"
)

// A node's sysctls are written inside its network namespace. A key that is
// not per network namespace is either missing there (the global net.* keys)
// or the host kernel's own (kernel.*, vm.*, fs.*, ...), which lab down would
// never put back. Only keys known to be per network namespace are allowed.

// namespacedTrees are the sysctl trees whose every key is per network
// namespace.
var namespacedTrees = []string{"net.ipv4", "net.ipv6", "net.netfilter", "net.unix", "net.mpls"}

// namespacedCore are the per-namespace keys of net.core, besides xfrm_*.
var namespacedCore = []string{"somaxconn", "txrehash", "optmem_max", "rps_default_mask", "tstamp_allow_data"}

// xfrmCore are the xfrm_* keys of net.core, for suggestions only: every
// net.core.xfrm_* key is allowed.
var xfrmCore = []string{"xfrm_aevent_etime", "xfrm_aevent_rseqth", "xfrm_larval_drop", "xfrm_acq_expires"}

// The hints of the messages, when no key is close enough to suggest.
const (
	allowedSysctls = "a node may set net.ipv4.*, net.ipv6.*, net.netfilter.*, net.unix.*, net.mpls.* and a few net.core.* keys"
	allowedCore    = "in net.core, a node may set somaxconn, txrehash, optmem_max, rps_default_mask, tstamp_allow_data and xfrm_*"
)

// namespacedSysctl reports whether key is known to be per network
// namespace and, when it is not, says why.
func namespacedSysctl(key string) (ok bool, why string) {
	if allowedSysctl(key) {
		return true, ""
	}
	hint := suggestSysctl(key)
	core := strings.HasPrefix(key, "net.core.")
	switch {
	case hint != "":
	case core:
		hint = " (" + allowedCore + ")"
	default:
		hint = " (" + allowedSysctls + ")"
	}
	switch {
	case core:
		return false, fmt.Sprintf("%s is global, not per network namespace%s", key, hint)
	case strings.HasPrefix(key, "net."):
		return false, fmt.Sprintf("sysctl %s is not known to be per network namespace%s", key, hint)
	}
	return false, fmt.Sprintf("sysctl %s is not per network namespace: it would change the host kernel, and lab down would not restore it%s", key, hint)
}

// allowedSysctl reports whether key is known to be per network namespace.
func allowedSysctl(key string) bool {
	if name, ok := strings.CutPrefix(key, "net.core."); ok {
		return slices.Contains(namespacedCore, name) || (strings.HasPrefix(name, "xfrm_") && name != "xfrm_")
	}
	for _, t := range namespacedTrees {
		if strings.HasPrefix(key, t+".") {
			return true
		}
	}
	return false
}

// suggestSysctl suggests an allowed key close to a refused one, such as
// net.core.somaxconn for net.core.somaxcon, net.ipv4.ip_forward for
// net.ip4.ip_forward or ipv4.ip_forward, or returns "".
func suggestSysctl(key string) string {
	if !strings.HasPrefix(key, "net.") && allowedSysctl("net."+key) {
		return fmt.Sprintf(" (did you mean %q?)", "net."+key)
	}
	if name, ok := strings.CutPrefix(key, "net.core."); ok {
		if k := closest(name, slices.Concat(namespacedCore, xfrmCore)); k != "" {
			return fmt.Sprintf(" (did you mean %q?)", "net.core."+k)
		}
		return ""
	}
	parts := strings.SplitN(key, ".", 3)
	if len(parts) < 3 {
		return ""
	}
	if t := closest(parts[0]+"."+parts[1], namespacedTrees); t != "" {
		return fmt.Sprintf(" (did you mean %q?)", t+"."+parts[2])
	}
	return ""
}

// closest returns the entry of known that yamlerr.Suggest would suggest for
// s, or "".
func closest(s string, known []string) string {
	hint := yamlerr.Suggest(s, known)
	for _, k := range known {
		if hint == fmt.Sprintf(" (did you mean %q?)", k) {
			return k
		}
	}
	return ""
}
