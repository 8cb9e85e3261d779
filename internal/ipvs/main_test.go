package ipvs

import (
	"os"
	"testing"

	"github.com/lab-lb/lab/internal/vm/vmtest"
)

// TestMain lets TestKernel run inside a user-mode Linux VM when the host
// kernel has no IPVS: there, this binary is init and vmtest.Main runs the
// test and powers the VM off.
func TestMain(m *testing.M) {
	vmtest.Main(m)
	os.Exit(m.Run())
}
