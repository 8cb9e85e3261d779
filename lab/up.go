package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/haproxy"
	"github.com/lab-lb/lab/internal/journal"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/supervisor"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/vm"
)

// VMMode says whether a lab runs in a user-mode Linux VM.
type VMMode string

// The choices of VMMode.
const (
	VMAuto   VMMode = "auto"   // in a VM when the host kernel lacks IPVS or IPIP
	VMAlways VMMode = "always" // always in a VM
	VMNever  VMMode = "never"  // always natively
)

// Options tune Up.
type Options struct {
	// Name of the lab; default: the topology's name.
	Name string
	// VM chooses the run mode; default VMAuto.
	VM VMMode
	// Progress, if set, receives each step of the build as it happens.
	Progress func(Progress)
	// Log receives the library's own logs; default: discarded.
	Log *slog.Logger
	// Timeout bounds the whole bring-up; default 5 minutes.
	Timeout time.Duration
}

// Progress is one step of a bring-up.
type Progress struct {
	// Elapsed is the time since Up began; Step what was done ("kernel
	// modules", "namespaces"...), and Attrs its figures (loaded=...).
	Elapsed time.Duration
	Step    string
	Attrs   map[string]any
}

const (
	infoName        = "lab.json"
	hostJournalName = "host-journal"
	logName         = "supervisor.log" // native: the supervisor's log; vm: the VM console
	tokenName       = "token"
	guestPort       = 7070
)

// Up validates the topology at path, builds the lab and returns once every
// node runs. On failure nothing of the lab is left behind.
func Up(ctx context.Context, path string, opts Options) (*Lab, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	t, err := topology.Load(path)
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = t.Name
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab needs root (network namespaces, mounts and netlink): run it with sudo")
	}
	schedulers := schedulersOf(t)
	mode, reason, err := ChooseMode(opts.VM, schedulers...)
	if err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		opts.Progress(Progress{Step: "mode " + string(mode), Attrs: map[string]any{"why": reason}})
	}
	if mode == ModeNative {
		// Before anything of the lab exists: a module the kernel lacks
		// leaves nothing to undo. Loaded modules stay loaded, as after
		// any modprobe.
		loaded, err := loadModules(schedulers)
		if err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(Progress{Step: "kernel modules", Attrs: map[string]any{"loaded": moduleList(loaded)}})
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the lab binary: %w", err)
	}
	dir := labDir(name)
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			if in, ierr := readInfo(name); ierr == nil && in.Alive() {
				return nil, fmt.Errorf("lab %s is already up (take it down with `lab down %s`)", name, name)
			}
			return nil, fmt.Errorf("lab %s left state behind in %s: clean it with `lab down %s`", name, dir, name)
		}
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	in := &Info{Name: name, Mode: mode, Reason: reason, Topology: abs, Created: time.Now()}
	var l *Lab
	err = generateConfigs(t, name, dir)
	if err == nil {
		l, err = start(ctx, in, dir, exe, opts)
	}
	if err != nil {
		opts.Log.Warn("bring-up failed, cleaning up", "lab", name, "err", err)
		if derr := cleanup(context.Background(), name, opts.Log); derr != nil {
			err = fmt.Errorf("%w (and cleaning up: %v)", err, derr)
		}
		return nil, err
	}
	return l, nil
}

// moduleList says which modules were loaded, for people.
func moduleList(names []string) string {
	if len(names) == 0 {
		return "none (all there already)"
	}
	return strings.Join(names, ",")
}

func start(ctx context.Context, in *Info, dir, exe string, opts Options) (*Lab, error) {
	hj, err := journal.Open(filepath.Join(dir, hostJournalName), opts.Log)
	if err != nil {
		return nil, err
	}
	defer hj.Close()
	logPath := filepath.Join(dir, logName)
	if in.Mode == ModeVM {
		err = startVM(ctx, in, dir, exe, hj, opts)
	} else {
		err = startNative(in, dir, exe, hj)
	}
	if err != nil {
		return nil, err
	}
	if err := writeInfo(dir, in); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := waitReady(ctx, logPath, in, opts.Progress); err != nil {
		return nil, err
	}
	c, err := control.NewClient(control.Endpoint(in.Endpoint), in.Token)
	if err != nil {
		return nil, err
	}
	if err := c.WaitReachable(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	return &Lab{Info: *in, dir: dir, client: c}, nil
}

// startNative starts the supervisor as a detached process on the host.
func startNative(in *Info, dir, exe string, hj *journal.Journal) error {
	in.Endpoint = "unix://" + filepath.Join(dir, "control.sock")
	logf, err := os.OpenFile(filepath.Join(dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, argSupervise, "--name", in.Name, "--topology", in.Topology,
		"--dir", dir, "--listen", string(in.Endpoint), "--mode", string(in.Mode),
		"--configs", filepath.Join(dir, supervisor.ConfigsDir))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it dies while we wait
	return recordProcess(in, hj, cmd.Process.Pid)
}

func recordProcess(in *Info, hj *journal.Journal, pid int) error {
	r, err := hj.AddProcess(pid)
	if err != nil {
		return err
	}
	in.PID, in.Start = r.PID, r.Start
	return nil
}

// startVM boots the user-mode Linux kernel with the lab binary as init.
func startVM(ctx context.Context, in *Info, dir, exe string, hj *journal.Journal, opts Options) error {
	kernel, err := vm.FindKernel()
	if err != nil {
		return err
	}
	idx, err := freeManagementIndex(in.Name)
	if err != nil {
		return err
	}
	host := netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, byte(idx), 1}), 30)
	guest := netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, byte(idx), 2}), 30)
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	in.Token = hex.EncodeToString(token)
	tokenPath := filepath.Join(dir, tokenName)
	if err := os.WriteFile(tokenPath, []byte(in.Token), 0o600); err != nil {
		return err
	}
	in.TAP = fmt.Sprintf("lab-tap%d", idx)
	in.Endpoint = fmt.Sprintf("tcp://%s", netip.AddrPortFrom(guest.Addr(), guestPort))
	if err := hj.Add(journal.Record{Kind: journal.KindLink, Name: in.TAP}); err != nil {
		return err
	}
	m, err := vm.Start(ctx, vm.Config{
		Kernel: kernel, Init: exe, TAP: in.TAP, HostAddr: host, GuestAddr: guest,
		ConsoleLog: filepath.Join(dir, logName),
		Env: map[string]string{
			"LAB_NAME":       in.Name,
			"LAB_TOPOLOGY":   in.Topology,
			"LAB_TOKEN_FILE": tokenPath,
			"LAB_LISTEN":     string(in.Endpoint),
		},
	}, opts.Log)
	if err != nil {
		return err
	}
	return recordProcess(in, hj, m.PID)
}

// freeManagementIndex picks the third octet of a 169.254.X.0/30 management
// link that no other lab on the host uses.
func freeManagementIndex(self string) (int, error) {
	used := map[string]bool{}
	infos, _ := List()
	for _, in := range infos {
		if in.Name != self && in.TAP != "" {
			used[in.TAP] = true
		}
	}
	for i := 1; i < 255; i++ {
		tap := fmt.Sprintf("lab-tap%d", i)
		// A TAP may outlive its lab's state (a host crash, someone else's
		// link): never reuse a name that exists.
		if _, err := netlink.LinkByName(tap); err == nil {
			continue
		}
		if !used[tap] {
			return i, nil
		}
	}
	return 0, errors.New("no free management link for another VM lab")
}

// waitReady follows the supervisor's log (natively) or the VM console until
// the lab is ready, reporting each progress record.
func waitReady(ctx context.Context, logPath string, in *Info, progress func(Progress)) error {
	begin := time.Now()
	var f *os.File
	for f == nil {
		var err error
		if f, err = os.Open(logPath); err != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	defer f.Close()
	rd := bufio.NewReader(f)
	var tail []string
	var partial string
	for {
		line, err := rd.ReadString('\n')
		if err == nil {
			line = partial + line
			partial = ""
			var rec map[string]any
			if json.Unmarshal([]byte(strings.TrimSpace(line)), &rec) != nil {
				tail = appendTail(tail, strings.TrimSpace(line))
				continue
			}
			msg, _ := rec["msg"].(string)
			switch msg {
			case supervisor.MsgReady:
				if progress != nil {
					progress(Progress{Elapsed: time.Since(begin), Step: "ready", Attrs: attrs(rec)})
				}
				return nil
			case supervisor.MsgFailed:
				e, _ := rec["err"].(string)
				return errors.New(e)
			case "progress":
				if progress != nil {
					step, _ := rec["step"].(string)
					progress(Progress{Elapsed: time.Since(begin), Step: step, Attrs: attrs(rec)})
				}
			default:
				if lvl, _ := rec["level"].(string); lvl == "ERROR" || lvl == "WARN" {
					tail = appendTail(tail, strings.TrimSpace(line))
				}
			}
			continue
		}
		if err != io.EOF {
			return err
		}
		partial += line
		if !in.Alive() {
			return fmt.Errorf("lab process exited before the lab was ready; last output:\n  %s", strings.Join(tail, "\n  "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab not ready: %w; last output:\n  %s", ctx.Err(), strings.Join(tail, "\n  "))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func appendTail(tail []string, s string) []string {
	if s == "" {
		return tail
	}
	tail = append(tail, s)
	if len(tail) > 8 {
		tail = tail[1:]
	}
	return tail
}

func attrs(rec map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range rec {
		switch k {
		case "time", "level", "msg", "step":
		default:
			out[k] = v
		}
	}
	return out
}

// generateConfigs writes the HAProxy configuration of every LB7 with
// client-native, on the host, before the lab starts: in a user-mode Linux
// VM the same work costs seconds of its one CPU per LB7. The lab (the
// supervisor, natively or in the VM) reads them from dir/configs.
func generateConfigs(t *topology.Topology, name, dir string) error {
	out := filepath.Join(dir, supervisor.ConfigsDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	lb7s := t.NodesByRole(topology.RoleLB7)
	errs := make([]error, len(lb7s))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i, n := range lb7s {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// The node's state directory as the lab will see it.
			cfg, err := node.HAProxyConfig(t, n, filepath.Join(StateDir, name, "nodes", n.Name))
			if err == nil {
				var text []byte
				if text, err = haproxy.Generate(cfg); err == nil {
					err = os.WriteFile(node.HAProxyConfigFile(out, n.Name), text, 0o644)
				}
			}
			if err != nil {
				errs[i] = fmt.Errorf("generate haproxy configuration of %s: %w", n.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
