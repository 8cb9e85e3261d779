package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"testing"
)

// TestVersion checks lab version -o json: the Go version that built the
// test binary, a module version, and the host's kernel features.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"version", "-o", "json"}, &out, &errOut); err != nil {
		t.Fatalf("lab version: %v", err)
	}
	var v struct {
		Module, Go string
		Host       struct {
			Kernel   string
			Features []struct{ Module, State string }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("lab version -o json: %v\n%s", err, out.String())
	}
	if v.Go != runtime.Version() || v.Module == "" || v.Host.Kernel == "" || len(v.Host.Features) == 0 {
		t.Errorf("lab version: %+v", v)
	}
}
