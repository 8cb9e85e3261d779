package node

import (
	"fmt"
	"os"
	"strconv"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// shutdownSocketsIn shuts down every socket of this process that lives in
// network namespace ns, whoever made it: a pooled LB4's BGP listener and
// sessions are GoBGP's, not ours to track. Its peers see what a crash
// shows them (a FIN, or a reset for a connection not yet accepted), and
// the sockets' owners get errors on their next read or accept. It
// returns how many it shut down.
//
// Each descriptor is duplicated before it is looked at, so that a socket
// closed and its number reused meanwhile is never the one shut down.
func shutdownSocketsIn(ns netns.NsHandle) (int, error) {
	var want unix.Stat_t
	if err := unix.Fstat(int(ns), &want); err != nil {
		return 0, fmt.Errorf("stat network namespace: %w", err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			continue // closed meanwhile, or the directory's own
		}
		if socketIn(dup, want) {
			if unix.Shutdown(dup, unix.SHUT_RDWR) == nil {
				n++
			}
		}
		unix.Close(dup)
	}
	return n, nil
}

// socketIn says whether fd is a socket of the network namespace whose
// nsfs inode is want (SIOCGSKNS, Linux 4.9 and later).
func socketIn(fd int, want unix.Stat_t) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return false
	}
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return false
	}
	defer unix.Close(nsfd)
	var got unix.Stat_t
	return unix.Fstat(nsfd, &got) == nil && got.Dev == want.Dev && got.Ino == want.Ino
}
