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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Time limits of the process lifecycle.
const (
	startTimeout  = 3 * time.Minute // dozens of HAProxies start at once in a one-CPU VM
	reloadTimeout = 30 * time.Second
	stopTimeout   = 10 * time.Second
	pollInterval  = 20 * time.Millisecond
)

// ErrExited is returned when HAProxy exits while it is expected to run.
var ErrExited = errors.New("haproxy exited")

// Process is one HAProxy, started by Start: one process serving at a time
// ("haproxy -db -f CFG", no master), and, after a Reload, the processes it
// replaced while they finish their connections. The configuration file,
// stats socket and pid file live in the directory of the configuration
// file (Config.Dir).
//
// No master-worker mode: HAProxy 2.6's master parses the configuration,
// forks its worker, then executes itself again to wait: in a one-CPU VM
// that was 0.83 s of CPU per HAProxy at start, the single process 0.55 s.
// A reload is the seamless one the master would make: the new process
// takes the listening sockets from the old one over the stats socket (-x,
// "expose-fd listeners") and tells it to finish its connections (-sf).
type Process struct {
	cfgPath     string
	statsSocket string
	log         *slog.Logger
	out         *lineLogger
	spawn       func(*exec.Cmd) error

	// mu guards the processes: current serves, the others finish their
	// connections after a reload.
	mu      sync.Mutex
	current *instance
	old     []*instance

	stopOnce sync.Once
	stopErr  error
}

// instance is one HAProxy process.
type instance struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when it has exited
	waitErr error         // its exit status, valid after done
}

func (i *instance) exited() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// Start runs "haproxy -db -f CFG" and waits until it serves: once its
// stats socket appears in the directory (an inotify event, no polling
// while HAProxy loads) and answers "show info" with the pid of the process
// started. Every listener is bound before the stats socket is, and HAProxy
// answers only once it runs its loop, so a first answer means it serves.
// ctx bounds the start only: once Start returns, HAProxy runs until Stop.
// HAProxy runs in its own process group; its output goes to log.
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
		cfgPath:     cfgPath,
		statsSocket: filepath.Join(dir, statsSocketName),
		log:         log,
		out:         &lineLogger{log: log},
		spawn:       spawn,
	}
	// No "haproxy -c" first: HAProxy refuses a bad configuration at start
	// too, and in a one-CPU VM every extra HAProxy run costs seconds.
	// A live stats socket means another HAProxy owns this directory:
	// waiting for it to answer would wrongly succeed.
	if c, err := net.Dial("unix", p.statsSocket); err == nil {
		c.Close()
		return nil, fmt.Errorf("start haproxy in %s: stats socket %s already answers", dir, p.statsSocket)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	inst, err := p.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	p.current = inst
	return p, nil
}

// run starts one HAProxy process with extra arguments and waits until it
// answers on the stats socket; on failure, none is left running.
func (p *Process) run(ctx context.Context, extra ...string) (*instance, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	// Watch before starting, so that the socket's appearance cannot be
	// missed. HAProxy binds it under a temporary name and renames it:
	// inotify reports the rename as a creation.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", filepath.Dir(p.statsSocket), err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(p.statsSocket)); err != nil {
		return nil, fmt.Errorf("watch %s: %w", filepath.Dir(p.statsSocket), err)
	}

	cmd := exec.Command(bin, append([]string{"-db", "-f", p.cfgPath}, extra...)...)
	cmd.Dir = filepath.Dir(p.cfgPath)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.spawn(cmd); err != nil {
		return nil, err
	}
	inst := &instance{cmd: cmd, done: make(chan struct{})}
	p.log.Info("haproxy started", "pid", cmd.Process.Pid, "config", p.cfgPath)
	go func() {
		inst.waitErr = cmd.Wait()
		p.out.flush()
		close(inst.done)
	}()
	// A reload takes the stats socket over with the other listeners (-x):
	// no new socket appears, so it polls from the start.
	if err := p.waitServing(ctx, w, inst, len(extra) > 0); err != nil {
		p.kill(inst)
		return nil, fmt.Errorf("wait for haproxy to serve: %w", err)
	}
	return inst, nil
}

// waitServing waits until inst answers on the stats socket. The socket is
// renamed into place before HAProxy listens on it: after each event, retry
// a refused connection until the process answers. With poll, it does not
// wait for an event to start trying.
func (p *Process) waitServing(ctx context.Context, w *fsnotify.Watcher, inst *instance, poll bool) error {
	pid := inst.cmd.Process.Pid
	var retry <-chan time.Time
	if poll {
		retry = time.After(0)
	}
	for {
		select {
		case <-inst.done:
			return fmt.Errorf("%w: %v", ErrExited, inst.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case err := <-w.Errors:
			return fmt.Errorf("watch %s: %w", filepath.Dir(p.statsSocket), err)
		case ev := <-w.Events:
			if ev.Name != p.statsSocket || !ev.Has(fsnotify.Create) {
				continue
			}
		case <-retry:
		}
		if got, err := showInfoPID(p.statsSocket); err == nil && got == pid {
			return nil
		}
		retry = time.After(pollInterval)
	}
}

// showInfoPID asks the stats socket "show info" and returns the Pid line.
func showInfoPID(socket string) (int, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := c.Write([]byte("show info\n")); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errNoAnswer
}

// PID is the process id of the HAProxy that serves.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current.cmd.Process.Pid
}

// StatsSocket is the path of the stats socket (runtime API).
func (p *Process) StatsSocket() string { return p.statsSocket }

// Reload checks the configuration file, then starts a new HAProxy that
// takes the listening sockets of the one serving ("-x" over the stats
// socket) and, once it serves, tells it to stop accepting and finish its
// connections ("-sf"): a reload drops no connection. Reload returns once
// the new process answers on the stats socket; a configuration HAProxy
// refuses leaves the old one serving.
func (p *Process) Reload() error {
	if err := Check(p.cfgPath); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.current
	if old.exited() {
		return fmt.Errorf("reload haproxy: %w: %v", ErrExited, old.waitErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	inst, err := p.run(ctx, "-x", p.statsSocket, "-sf", strconv.Itoa(old.cmd.Process.Pid))
	if err != nil {
		return fmt.Errorf("reload haproxy: %w", err)
	}
	p.current = inst
	p.old = append(slices.DeleteFunc(p.old, (*instance).exited), old)
	p.log.Info("haproxy reloaded", "pid", inst.cmd.Process.Pid, "replaced", old.cmd.Process.Pid)
	return nil
}

// Stop stops HAProxy: SIGTERM to every process (the one serving and those
// finishing connections after a reload), which stop at once; a process
// group still alive after a while gets SIGKILL. Stop returns once no
// process is left. It is safe to call more than once.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, inst := range append([]*instance{p.current}, p.old...) {
		errs = append(errs, p.stopOne(inst))
	}
	return errors.Join(errs...)
}

func (p *Process) stopOne(inst *instance) error {
	pid := inst.cmd.Process.Pid
	if inst.exited() {
		if inst == p.current {
			p.log.Warn("haproxy had exited", "pid", pid, "status", inst.waitErr)
		}
		return nil
	}
	if err := inst.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop haproxy %d: %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	select {
	case <-inst.done:
		p.log.Info("haproxy stopped", "pid", pid, "status", inst.waitErr)
		return nil
	case <-ctx.Done():
	}
	p.log.Warn("haproxy did not stop, killing its process group", "pgid", pid)
	return p.kill(inst)
}

// kill ends inst's process group at once and waits for the process.
func (p *Process) kill(inst *instance) error {
	pgid := inst.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill haproxy process group %d: %w", pgid, err)
	}
	select {
	case <-inst.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop haproxy: process %d still alive", pgid)
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
