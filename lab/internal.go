package lab

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lab-lb/lab/internal/control"
	"github.com/lab-lb/lab/internal/node"
	"github.com/lab-lb/lab/internal/supervisor"
	"github.com/lab-lb/lab/internal/topology"
	"github.com/lab-lb/lab/internal/vm"
	"github.com/lab-lb/lab/internal/vminit"
)

// The hidden first arguments with which lab starts its own processes.
const (
	argSupervise = "_supervise"
	argAgent     = "_agent"
)

// MaybeRunInternal runs this process as one of lab's own processes (the
// VM's init, a lab supervisor or a node agent) when it was started as one,
// and then exits; otherwise it returns at once. The lab command calls it
// first thing, and so must the TestMain of a Go test that brings labs up,
// because Up starts the running executable for those processes:
//
//	func TestMain(m *testing.M) {
//		lab.MaybeRunInternal()
//		os.Exit(m.Run())
//	}
func MaybeRunInternal() {
	if vm.InGuest() {
		vminit.Run() // never returns
	}
	if len(os.Args) < 2 {
		return
	}
	var err error
	switch os.Args[1] {
	case argSupervise:
		err = runSupervisor(os.Args[2:])
	case argAgent:
		err = runAgent(os.Args[2:])
	default:
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runSupervisor(args []string) error {
	var cfg supervisor.Config
	var mode, listen, tokenFile string
	fs := flag.NewFlagSet(argSupervise, flag.ContinueOnError)
	fs.StringVar(&cfg.Name, "name", "", "lab name")
	fs.StringVar(&cfg.Topology, "topology", "", "topology file")
	fs.StringVar(&cfg.Dir, "dir", "", "state directory")
	fs.StringVar(&listen, "listen", "", "control API endpoint")
	fs.StringVar(&mode, "mode", string(control.ModeNative), "run mode")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the control API token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Mode, cfg.Listen = control.Mode(mode), control.Endpoint(listen)
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("read token: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Executable = exe
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return supervisor.Run(ctx, cfg, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
}

func runAgent(args []string) error {
	var cfg node.Config
	var topo string
	fs := flag.NewFlagSet(argAgent, flag.ContinueOnError)
	fs.StringVar(&cfg.Lab, "lab", "", "lab name")
	fs.StringVar(&cfg.Node, "node", "", "node name")
	fs.StringVar(&cfg.Role, "role", "", "node role")
	fs.StringVar(&cfg.Dir, "dir", "", "node state directory")
	fs.StringVar(&topo, "topology", "", "topology file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Lifeline = os.NewFile(3, "lifeline")
	t, err := topology.Load(topo)
	if err != nil {
		return err
	}
	cfg.Topology = t
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return node.Run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.Node))
}
