package vm

import "testing"

func TestMounted(t *testing.T) {
	const mounts = `root / hostfs rw,relatime,/ 0 0
devtmpfs /dev devtmpfs rw,relatime,mode=755 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,relatime,mode=755 0 0
`
	for _, tc := range []struct {
		target, fstype string
		want           bool
	}{
		{"/dev", "devtmpfs", true},
		{"/run", "tmpfs", true},
		{"/dev/shm", "tmpfs", false},
		{"/dev", "tmpfs", false},
		{"/sys", "sysfs", false},
	} {
		t.Run(tc.target+" "+tc.fstype, func(t *testing.T) {
			if got := mounted([]byte(mounts), tc.target, tc.fstype); got != tc.want {
				t.Errorf("mounted(%s, %s) = %v, want %v", tc.target, tc.fstype, got, tc.want)
			}
		})
	}
}

func TestInGuestOnHost(t *testing.T) {
	t.Setenv(EnvAddr, "169.254.77.2/30")
	if InGuest() {
		t.Error("InGuest() = true in a test process, which is not PID 1")
	}
}
