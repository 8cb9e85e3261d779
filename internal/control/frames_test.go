package control

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecRoundTrip serves a framed command over a real unix socket and
// reads it back with the client: both streams arrive in order, the exit
// status passes through, and the request body reaches the handler.
func TestExecRoundTrip(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in bytes.Buffer
		_, _ = in.ReadFrom(r.Body)
		fw := NewFrameWriter(w)
		_, _ = fw.Stream("stdout").Write([]byte(strings.Join(r.URL.Query()["arg"], " ") + "\n"))
		_, _ = fw.Stream("stderr").Write([]byte("read " + in.String()))
		code := 7
		_ = fw.Write(Frame{Exit: &code})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c, err := NewClient(Endpoint("unix://"+sock), "")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code, err := c.Exec(context.Background(), "/exec", []string{"echo", "a b"}, strings.NewReader("input"), &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 || out.String() != "echo a b\n" || errb.String() != "read input" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 7, %q, %q", code, out.String(), errb.String(), "echo a b\n", "read input")
	}
}

// TestReadFramesErrors checks that a stream cut before its exit status, or
// ending with an error frame, is an error.
func TestReadFramesErrors(t *testing.T) {
	for name, in := range map[string]string{
		"cut":   `{"s":"stdout","d":"aGk="}` + "\n",
		"error": `{"e":"run x on n1: not found"}` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := ReadFrames(strings.NewReader(in), &out, &out); err == nil {
				t.Error("no error")
			}
		})
	}
}
