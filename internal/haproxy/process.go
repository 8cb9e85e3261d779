package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Time limits of the process lifecycle.
const (
	startTimeout  = 3 * time.Minute // dozens of HAProxies start at once in a one-CPU VM
	reloadTimeout = 10 * time.Second
	stopTimeout   = 10 * time.Second
	pollInterval  = 20 * time.Millisecond
)

// ErrExited is returned when HAProxy exits while it is expected to run.
var ErrExited = errors.New("haproxy exited")

// Process is one HAProxy in master-worker mode, started by Start. The
// configuration file, stats socket, master socket and pid file all live in
// the directory of the configuration file (Config.Dir).
type Process struct {
	cfgPath      string
	statsSocket  string
	masterSocket string
	cmd          *exec.Cmd
	log          *slog.Logger

	done    chan struct{} // closed when the master has exited
	waitErr error         // exit status of the master, valid after done

	// ready receives a value each time the master says READY=1 on its
	// notification socket: once its workers serve, at start and after
	// each reload.
	ready  chan struct{}
	notify *net.UnixConn

	stopOnce sync.Once
	stopErr  error
}

// Start runs "haproxy -Ws -db -f CFG -S DIR/master.sock" and waits until
// the master says its worker serves, as it tells systemd: READY=1 on the
// datagram socket named by NOTIFY_SOCKET (DIR/notify.sock), sent once the
// worker has loaded the configuration; then one "show info" on the stats
// socket DIR/haproxy.sock confirms it. No polling: in a one-CPU VM where
// a dozen HAProxies start at once, a stats-socket poll every 20 ms by each
// of their agents was a quarter of the bring-up's CPU. The pid file is the one of the configuration's global section:
// HAProxy 2.6 raises an alert when "-p" repeats it. ctx bounds the start only: once Start returns, HAProxy runs
// until Stop. HAProxy runs in its own process group, its output goes to
// log.
//
// spawn starts the command (nil: exec.Cmd.Start): a caller may start
// HAProxy in another network namespace.
func Start(ctx context.Context, cfgPath string, log *slog.Logger, spawn func(*exec.Cmd) error) (*Process, error) {
	if spawn == nil {
		spawn = (*exec.Cmd).Start
	}
	cfgPath, err := filepath.Abs(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", cfgPath, err)
	}
	dir := filepath.Dir(cfgPath)
	p := &Process{
		cfgPath:      cfgPath,
		statsSocket:  filepath.Join(dir, statsSocketName),
		masterSocket: filepath.Join(dir, masterSocketName),
		log:          log,
		done:         make(chan struct{}),
		ready:        make(chan struct{}, 1),
	}
	// No "haproxy -c" first: HAProxy refuses a bad configuration at start
	// too, and in a one-CPU VM every extra HAProxy run costs seconds.
	// A live stats socket means another HAProxy owns this directory:
	// waiting for it to answer would wrongly succeed.
	if c, err := net.Dial("unix", p.statsSocket); err == nil {
		c.Close()
		return nil, fmt.Errorf("start haproxy in %s: stats socket %s already answers", dir, p.statsSocket)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	notifyPath := filepath.Join(dir, notifySocketName)
	_ = os.Remove(notifyPath)
	p.notify, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("start haproxy: notification socket: %w", err)
	}
	go p.readNotifications()
	out := &lineLogger{log: log}
	p.cmd = exec.Command(bin, "-Ws", "-db",
		"-f", cfgPath,
		"-S", p.masterSocket)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := spawn(p.cmd); err != nil {
		p.notify.Close()
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	log.Info("haproxy started", "pid", p.cmd.Process.Pid, "config", cfgPath)
	go func() {
		p.waitErr = p.cmd.Wait()
		out.flush()
		p.notify.Close()
		close(p.done)
	}()

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	err = p.waitReady(ctx)
	if err == nil {
		var r *Runtime
		if r, err = NewRuntime(p.statsSocket); err == nil {
			_, err = r.PID()
		}
	}
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("wait for haproxy to serve: %w", err)
	}
	return p, nil
}

// notifySocketName is the datagram socket on which the master reports its
// state (sd_notify's protocol).
const notifySocketName = "notify.sock"

// readNotifications passes each READY=1 of the master to p.ready until the
// socket is closed.
func (p *Process) readNotifications() {
	buf := make([]byte, 4096)
	for {
		n, err := p.notify.Read(buf)
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				select {
				case p.ready <- struct{}{}:
				default: // one pending is enough
				}
			}
		}
	}
}

// waitReady waits for the master's next READY=1.
func (p *Process) waitReady(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%w: %v", ErrExited, p.waitErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PID is the process id of the master.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// StatsSocket is the path of the stats socket (runtime API).
func (p *Process) StatsSocket() string { return p.statsSocket }

// MasterSocket is the path of the master CLI socket.
func (p *Process) MasterSocket() string { return p.masterSocket }

// Done is closed when the master has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Reload checks the configuration file, then asks the master to reload it
// (SIGUSR2): the master starts new workers and the old ones finish their
// connections, so a reload drops no connection. Reload returns once the
// master has completed the reload.
func (p *Process) Reload() error {
	if err := Check(p.cfgPath); err != nil {
		return err
	}
	before, err := p.masterReloads()
	if err != nil {
		return fmt.Errorf("reload haproxy: %w", err)
	}
	select { // a READY=1 from before the reload says nothing of it
	case <-p.ready:
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("reload haproxy: signal master: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	if err := p.waitReady(ctx); err != nil {
		return fmt.Errorf("reload haproxy: wait for the master: %w", err)
	}
	after, err := p.masterReloads()
	if err != nil {
		return fmt.Errorf("reload haproxy: %w", err)
	}
	if after <= before {
		return fmt.Errorf("reload haproxy: master reports %d reloads, %d before", after, before)
	}
	p.log.Info("haproxy reloaded", "pid", p.PID(), "reloads", after)
	return nil
}

// masterReloads returns the reload counter of the master, from "show proc"
// on the master socket.
func (p *Process) masterReloads() (int, error) {
	c, err := net.DialTimeout("unix", p.masterSocket, time.Second)
	if err != nil {
		return 0, fmt.Errorf("connect to master socket: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return 0, fmt.Errorf("set master socket deadline: %w", err)
	}
	if _, err := c.Write([]byte("show proc;quit\n")); err != nil {
		return 0, fmt.Errorf("write to master socket: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(c); err != nil {
		return 0, fmt.Errorf("read master socket: %w", err)
	}
	return parseMasterReloads(buf.String())
}

// parseMasterReloads reads the reloads column of the master line of "show
// proc":
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	4242            master          0               0d00h00m01s     2.6.12-1+deb12u4
func parseMasterReloads(out string) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[1] == "master" {
			n, err := strconv.Atoi(f[2])
			if err != nil {
				return 0, fmt.Errorf("parse master reloads %q: %w", f[2], err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no master line in show proc output %q", out)
}

// Stop stops HAProxy: SIGTERM to the master, which stops its workers
// at once; if the process group is still alive after a while, SIGKILL to
// the whole group. Stop returns once no process of the group is left. It
// is safe to call more than once.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
		p.log.Warn("haproxy had exited", "pid", pgid, "status", p.waitErr)
	default:
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop haproxy: signal master: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	groupGone := func() bool {
		select {
		case <-p.done:
		default:
			return false
		}
		// The workers share the master's process group.
		return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
	}
	if waitFor(ctx, groupGone) {
		p.log.Info("haproxy stopped", "pid", pgid, "status", p.waitErr)
		return nil
	}
	p.log.Warn("haproxy did not stop, killing its process group", "pgid", pgid)
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop haproxy: kill process group %d: %w", pgid, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if !waitFor(ctx, groupGone) {
		return fmt.Errorf("stop haproxy: process group %d still alive", pgid)
	}
	return nil
}

// waitFor polls cond until it is true or ctx ends, and reports whether it
// became true.
func waitFor(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}

// lineLogger logs HAProxy's output one line at a time. exec.Cmd calls
// Write from one goroutine at a time since Stdout and Stderr are the same
// writer.
type lineLogger struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(b), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

func (l *lineLogger) emit(line string) {
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[ALERT]"), strings.HasPrefix(line, "[EMERG]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARNING]"):
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "haproxy output", "line", line)
}
