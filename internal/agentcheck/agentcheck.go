// Package agentcheck implements the agent side of HAProxy's agent-check
// protocol: HAProxy connects over TCP, the agent sends one ASCII line of
// words and closes.
//
// The line holds words separated by spaces, tabs or commas: a relative weight
// "N%", "maxconn:N", one administrative state ("ready", "drain", "maint"),
// one operational state ("up", "down", "stopped", "fail"), and optionally a
// "#" that starts a free-text description running to the end of the line
// (HAProxy 2.6 configuration manual, "agent-check"; src/tcpcheck.c). Words
// that are left out leave the matching server setting unchanged.
//
// On a lab node the operator writes such a line into the node's
// /etc/lb/agent-check file; [Server] answers every connection with the file's
// current content, "up" when the file does not exist, and no answer at all
// when the file cannot be read or parsed (HAProxy then keeps the server's
// state, since an unreachable agent is not an error).
package agentcheck

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
)

// Administrative states, which HAProxy applies to the server's admin state.
const (
	AdminReady = "ready"
	AdminDrain = "drain"
	AdminMaint = "maint"
)

// Operational states, which HAProxy applies to the server's health.
const (
	OpUp      = "up"
	OpDown    = "down"
	OpStopped = "stopped"
	OpFail    = "fail"
)

// MaxWeight is the largest relative weight accepted. HAProxy caps relative
// weights there (and the resulting weight at 256), so larger values cannot
// mean anything more.
const MaxWeight = 25600

// maxFileSize bounds what ReadFile reads from an operator's file.
const maxFileSize = 4096

// Status is one agent-check answer. A field left unset is not sent, so
// HAProxy keeps the current value. Note that the zero Status is not "all
// unset": Weight 0 means "0%", which drains the server; start from
// Status{Weight: -1, Maxconn: -1}.
type Status struct {
	// Weight is the weight in percent of the server's configured weight,
	// 0 to MaxWeight, or -1 when unset. Backends with a static balancing
	// algorithm accept only 0% and 100%.
	Weight int
	// Maxconn is the server's new maxconn (0 means no limit), or -1 when
	// unset.
	Maxconn int
	// Admin is AdminReady, AdminDrain, AdminMaint or "" when unset.
	Admin string
	// Op is OpUp, OpDown, OpStopped, OpFail or "" when unset.
	Op string
	// Comment is free text shown by HAProxy next to a state change; it
	// holds no line break and starts with no blank.
	Comment string
}

// unset is a Status with every field unset.
func unset() Status {
	return Status{Weight: -1, Maxconn: -1}
}

// Parse parses one agent-check line as HAProxy would, but strictly: words are
// case-insensitive and come in any order, blanks (spaces, tabs, CR, LF)
// around the line are ignored, and an unknown word, a malformed number, a
// second word of the same kind, a line break inside the line or a non-ASCII
// or control character is an error that names the offending word. An empty
// line is valid and changes nothing.
func Parse(s string) (Status, error) {
	st := unset()
	line := strings.Trim(s, " \t\r\n")
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		return Status{}, fmt.Errorf("line break after %q: the agent sends one line", line[:i])
	}
	for i := 0; i < len(line); {
		c := line[i]
		if isSeparator(c) {
			i++
			continue
		}
		if c == '#' {
			comment := strings.TrimLeft(line[i+1:], " \t")
			if err := checkText(comment); err != nil {
				return Status{}, fmt.Errorf("comment %q: %w", comment, err)
			}
			st.Comment = comment
			break
		}
		j := i
		for j < len(line) && !isSeparator(line[j]) {
			j++
		}
		if err := st.setWord(line[i:j]); err != nil {
			return Status{}, err
		}
		i = j
	}
	return st, nil
}

// setWord applies one word of an agent-check line to st.
func (st *Status) setWord(word string) error {
	if err := checkText(word); err != nil {
		return fmt.Errorf("word %q: %w", word, err)
	}
	lower := strings.ToLower(word)
	switch {
	case lower == OpUp || lower == OpDown || lower == OpStopped || lower == OpFail:
		if st.Op != "" {
			return fmt.Errorf("word %q: operational state already given as %q", word, st.Op)
		}
		st.Op = lower
	case lower == AdminReady || lower == AdminDrain || lower == AdminMaint:
		if st.Admin != "" {
			return fmt.Errorf("word %q: administrative state already given as %q", word, st.Admin)
		}
		st.Admin = lower
	case strings.HasPrefix(lower, "maxconn:"):
		if st.Maxconn >= 0 {
			return fmt.Errorf("word %q: maxconn already given as %d", word, st.Maxconn)
		}
		n, err := parseNumber(lower[len("maxconn:"):], math.MaxInt32)
		if err != nil {
			return fmt.Errorf("word %q: maxconn: %w", word, err)
		}
		st.Maxconn = n
	case isDigit(lower[0]) || strings.HasSuffix(lower, "%"):
		digits, ok := strings.CutSuffix(lower, "%")
		if !ok {
			return fmt.Errorf("word %q: a weight needs a %% suffix (absolute weights are not part of the protocol)", word)
		}
		if st.Weight >= 0 {
			return fmt.Errorf("word %q: weight already given as %d%%", word, st.Weight)
		}
		n, err := parseNumber(digits, MaxWeight)
		if err != nil {
			return fmt.Errorf("word %q: weight: %w", word, err)
		}
		st.Weight = n
	case strings.Contains(word, "#"):
		return fmt.Errorf("word %q: unknown word (a comment needs a blank before its #)", word)
	default:
		return fmt.Errorf("word %q: unknown word", word)
	}
	return nil
}

// parseNumber parses a non-empty decimal number from 0 to limit.
func parseNumber(s string, limit int) (int, error) {
	if s == "" {
		return 0, errors.New("missing number")
	}
	for i := range len(s) {
		if !isDigit(s[i]) {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > limit {
		return 0, fmt.Errorf("%s is out of range 0-%d", s, limit)
	}
	return n, nil
}

// checkText accepts printable ASCII and tabs.
func checkText(s string) error {
	for i := range len(s) {
		if c := s[i]; (c < ' ' && c != '\t') || c > '~' {
			return fmt.Errorf("byte %#02x is not printable ASCII", c)
		}
	}
	return nil
}

func isSeparator(c byte) bool { return c == ' ' || c == '\t' || c == ',' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// String returns the canonical line for s, without its line terminator:
// administrative state, weight, maxconn, operational state, then the
// comment, for example "drain 50% #rolling upgrade". It is empty when every
// field is unset. Fields outside their documented values are written as
// they are, and the result may then not parse.
func (s Status) String() string {
	var words []string
	if s.Admin != "" {
		words = append(words, s.Admin)
	}
	if s.Weight >= 0 {
		words = append(words, strconv.Itoa(s.Weight)+"%")
	}
	if s.Maxconn >= 0 {
		words = append(words, "maxconn:"+strconv.Itoa(s.Maxconn))
	}
	if s.Op != "" {
		words = append(words, s.Op)
	}
	if s.Comment != "" {
		words = append(words, "#"+s.Comment)
	}
	return strings.Join(words, " ")
}

// ReadFile reads and parses an agent-check file. A file that does not exist
// means "up".
func ReadFile(path string) (Status, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		st := unset()
		st.Op = OpUp
		return st, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("open agent-check file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Status{}, fmt.Errorf("read agent-check file %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return Status{}, fmt.Errorf("read agent-check file %s: longer than %d bytes", path, maxFileSize)
	}
	st, err := Parse(string(b))
	if err != nil {
		return Status{}, fmt.Errorf("parse agent-check file %s: %w", path, err)
	}
	return st, nil
}
