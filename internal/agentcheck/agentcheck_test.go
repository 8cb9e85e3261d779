package agentcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// status builds a Status from unset fields, so cases name only what they set.
func status(mod func(*Status)) Status {
	st := unset()
	if mod != nil {
		mod(&st)
	}
	return st
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Status
		wantErr string // a substring of the error, naming the offending word
	}{
		{name: "empty", in: "", want: status(nil)},
		{name: "blank lines only", in: " \t\r\n\n", want: status(nil)},
		{name: "up", in: "up", want: status(func(s *Status) { s.Op = OpUp })},
		{name: "down with newline", in: "down\n", want: status(func(s *Status) { s.Op = OpDown })},
		{name: "stopped with crlf", in: "stopped\r\n", want: status(func(s *Status) { s.Op = OpStopped })},
		{name: "fail", in: "fail", want: status(func(s *Status) { s.Op = OpFail })},
		{name: "ready", in: "ready", want: status(func(s *Status) { s.Admin = AdminReady })},
		{name: "drain", in: "drain", want: status(func(s *Status) { s.Admin = AdminDrain })},
		{name: "maint", in: "maint", want: status(func(s *Status) { s.Admin = AdminMaint })},
		{name: "case insensitive", in: "DRAIN Up MaxConn:7", want: status(func(s *Status) {
			s.Admin, s.Op, s.Maxconn = AdminDrain, OpUp, 7
		})},
		{name: "weight", in: "75%", want: status(func(s *Status) { s.Weight = 75 })},
		{name: "zero weight", in: "0%", want: status(func(s *Status) { s.Weight = 0 })},
		{name: "weight above 100", in: "150%", want: status(func(s *Status) { s.Weight = 150 })},
		{name: "largest weight", in: "25600%", want: status(func(s *Status) { s.Weight = MaxWeight })},
		{name: "leading zero weight", in: "050%", want: status(func(s *Status) { s.Weight = 50 })},
		{name: "maxconn", in: "maxconn:30", want: status(func(s *Status) { s.Maxconn = 30 })},
		{name: "maxconn zero", in: "maxconn:0", want: status(func(s *Status) { s.Maxconn = 0 })},
		{
			// The example of HAProxy's regression test, commas as separators.
			name: "manual example with commas",
			in:   "75%,maxconn:30,maint,down\n",
			want: status(func(s *Status) { s.Weight, s.Maxconn, s.Admin, s.Op = 75, 30, AdminMaint, OpDown }),
		},
		{
			name: "mixed separators and any order",
			in:   "\tup ,, 50%\tready",
			want: status(func(s *Status) { s.Op, s.Weight, s.Admin = OpUp, 50, AdminReady }),
		},
		{
			name: "comment after state",
			in:   "down #disk full, see ticket 42",
			want: status(func(s *Status) { s.Op, s.Comment = OpDown, "disk full, see ticket 42" }),
		},
		{
			name: "comment blanks trimmed",
			in:   "stopped #  \t upgrade  \n",
			want: status(func(s *Status) { s.Op, s.Comment = OpStopped, "upgrade" }),
		},
		{
			name: "comment ends the words",
			in:   "drain 50% # up maint",
			want: status(func(s *Status) { s.Admin, s.Weight, s.Comment = AdminDrain, 50, "up maint" }),
		},
		{name: "comment alone", in: "#nothing to say", want: status(func(s *Status) { s.Comment = "nothing to say" })},
		{name: "empty comment", in: "up #", want: status(func(s *Status) { s.Op = OpUp })},
		{name: "comment right after comma", in: "up,#x", want: status(func(s *Status) { s.Op, s.Comment = OpUp, "x" })},

		{name: "unknown word", in: "up sideways", wantErr: `"sideways": unknown word`},
		{name: "hash inside word", in: "down#broken", wantErr: `"down#broken"`},
		{name: "two operational states", in: "up down", wantErr: `"down": operational state already given as "up"`},
		{name: "two admin states", in: "drain maint", wantErr: `"maint": administrative state already given as "drain"`},
		{name: "two weights", in: "50% 60%", wantErr: `"60%": weight already given`},
		{name: "two maxconns", in: "maxconn:1 maxconn:2", wantErr: `"maxconn:2": maxconn already given`},
		{name: "absolute weight", in: "50", wantErr: `"50": a weight needs a % suffix`},
		{name: "weight too large", in: "25601%", wantErr: `"25601%": weight: 25601 is out of range`},
		{name: "weight overflow", in: "99999999999999999999999%", wantErr: `"99999999999999999999999%"`},
		{name: "negative weight", in: "-5%", wantErr: `"-5%": weight: "-5" is not a decimal number`},
		{name: "bare percent", in: "%", wantErr: `"%": weight: missing number`},
		{name: "weight trailing garbage", in: "5%x", wantErr: `"5%x"`},
		{name: "fractional weight", in: "2.5%", wantErr: `"2.5%"`},
		{name: "empty maxconn", in: "maxconn:", wantErr: `"maxconn:": maxconn: missing number`},
		{name: "negative maxconn", in: "maxconn:-1", wantErr: `"maxconn:-1"`},
		{name: "maxconn with space", in: "maxconn: 30", wantErr: `"maxconn:": maxconn: missing number`},
		{name: "maxconn too large", in: "maxconn:2147483648", wantErr: `"maxconn:2147483648"`},
		{name: "two lines", in: "drain\nup", wantErr: `line break after "drain"`},
		{name: "inner carriage return", in: "up\rdown", wantErr: "line break"},
		{name: "control character in word", in: "up\x00", wantErr: `"up\x00": byte 0x00`},
		{name: "non-ascii word", in: "dräin", wantErr: `"dräin": byte 0xc3`},
		{name: "non-ascii comment", in: "down #café", wantErr: `comment "café"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want an error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Parse(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   Status
		want string
	}{
		{name: "unset", in: status(nil), want: ""},
		{name: "up", in: status(func(s *Status) { s.Op = OpUp }), want: "up"},
		{
			name: "brief example",
			in:   status(func(s *Status) { s.Admin, s.Weight, s.Comment = AdminDrain, 50, "rolling upgrade" }),
			want: "drain 50% #rolling upgrade",
		},
		{
			name: "every field in canonical order",
			in: Status{
				Weight: 0, Maxconn: 30, Admin: AdminMaint, Op: OpDown, Comment: "x",
			},
			want: "maint 0% maxconn:30 down #x",
		},
		{
			name: "zero value drains",
			in:   Status{},
			want: "0% maxconn:0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.in.String(), tt.want); diff != "" {
				t.Errorf("String() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(t *testing.T, name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		path    string
		want    Status
		wantErr string
	}{
		{
			name: "missing file means up",
			path: filepath.Join(dir, "missing"),
			want: status(func(s *Status) { s.Op = OpUp }),
		},
		{
			name: "operator line",
			path: write(t, "drain", "drain\n"),
			want: status(func(s *Status) { s.Admin = AdminDrain }),
		},
		{
			name:    "invalid line names the file and the word",
			path:    write(t, "invalid", "dwon\n"),
			wantErr: `invalid: word "dwon": unknown word`,
		},
		{
			name:    "too long",
			path:    write(t, "long", strings.Repeat("up ", maxFileSize)),
			wantErr: "longer than 4096 bytes",
		},
		{
			name:    "directory",
			path:    dir,
			wantErr: "read agent-check file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFile(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadFile() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadFile(): %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ReadFile() (-got +want):\n%s", diff)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that every line it accepts
// has a canonical form that is one line and parses back to the same Status.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "up", "75%,maxconn:30,maint,down\n", "drain 50% #rolling upgrade",
		"DOWN\t#  x", "up,#", "25600%", "maxconn:2147483647", "up\rdown",
		"down#x", "%", "5%x", "ready stopped 0% maxconn:0 # a, b\tc",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		st, err := Parse(in)
		if err != nil {
			return
		}
		line := st.String()
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("Parse(%q).String() = %q holds a line break", in, line)
		}
		again, err := Parse(line)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", in, line, err)
		}
		if diff := cmp.Diff(again, st); diff != "" {
			t.Fatalf("round trip of %q through %q (-got +want):\n%s", in, line, diff)
		}
	})
}
