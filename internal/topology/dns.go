package topology

import (
	"fmt"
	"regexp"
	"strings"
)

// DNS names, as the zone of dns: and the names of the VIPs are written:
// labels of letters, digits and '-' (not first or last), at most 63
// characters each and 253 in all. They are stored lower case, fully
// qualified, with the trailing dot.

const (
	maxLabelLen   = 63
	maxDNSNameLen = 253 // without the trailing dot
)

var labelRE = regexp.MustCompile(`^[A-Za-z0-9-]+$`)

// fqdn checks a DNS name written with or without its trailing dot and
// returns it lower case with the dot; the string is a problem, or "".
func fqdn(s string) (string, string) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "", "want at least one label"
	}
	for l := range strings.SplitSeq(name, ".") {
		if problem := labelProblem(l); problem != "" {
			return "", problem
		}
	}
	if len(name) > maxDNSNameLen {
		return "", fmt.Sprintf("longer than %d characters", maxDNSNameLen)
	}
	return strings.ToLower(name) + ".", ""
}

// labelProblem says what is wrong with one label of a DNS name, or
// returns "".
func labelProblem(l string) string {
	switch {
	case l == "":
		return "empty label"
	case len(l) > maxLabelLen:
		return fmt.Sprintf("label %q is longer than %d characters", l, maxLabelLen)
	case !labelRE.MatchString(l):
		return fmt.Sprintf("label %q has a character other than a-z, 0-9 and '-'", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Sprintf("label %q starts or ends with '-'", l)
	}
	return ""
}
