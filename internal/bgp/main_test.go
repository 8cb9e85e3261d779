package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// childEnv carries a childSpec (JSON) to a copy of the test binary that
// must run one speaker instead of the tests.
const childEnv = "LAB_BGP_TEST_CHILD"

// Roles a child speaker plays.
const (
	roleRouter    = "router"    // Installs best paths into its FIB.
	roleReflector = "reflector" // Reflects, installs nothing.
	roleLB4       = "lb4"       // Announces prefixes via itself.
)

// childSpec tells a child speaker what to be.
type childSpec struct {
	Name     string
	Role     string
	Config   Config
	Announce []netip.Prefix
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// runChild runs one speaker until its standard input ends, which happens
// when the test closes the pipe or dies. Lines on standard input are
// commands: "withdraw PREFIX" or "announce PREFIX".
func runChild(specJSON string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		log.Error("decode child spec", "error", err)
		return 2
	}
	log = log.With("node", spec.Name)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	commands := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			select {
			case commands <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		log.Info("standard input closed, stopping")
		cancel()
	}()

	s := New(spec.Config, log)
	if err := s.Start(ctx); err != nil {
		log.Error("start speaker", "error", err)
		return 1
	}
	defer s.Stop()

	switch spec.Role {
	case roleRouter:
		fib, err := NewFIB(log)
		if err != nil {
			log.Error("open fib", "error", err)
			return 1
		}
		defer fib.Close()
		if err := fib.Flush(); err != nil {
			log.Error("flush fib", "error", err)
			return 1
		}
		watched := make(chan error, 1)
		go func() {
			watched <- s.WatchBest(ctx, func(p netip.Prefix, hops []netip.Addr) {
				if err := fib.Set(p, hops); err != nil {
					log.Error("install route", "error", err)
				}
			})
		}()
		defer func() {
			cancel()
			if err := <-watched; err != nil {
				log.Error("watch best paths", "error", err)
			}
			if err := fib.Flush(); err != nil {
				log.Error("flush fib", "error", err)
			}
		}()
	case roleReflector:
	case roleLB4:
		for _, p := range spec.Announce {
			if err := s.Announce(p, spec.Config.RouterID); err != nil {
				log.Error("announce", "error", err)
				return 1
			}
		}
	default:
		log.Error("unknown role", "role", spec.Role)
		return 2
	}

	for {
		select {
		case <-ctx.Done():
			return 0
		case line := <-commands:
			if err := runCommand(s, spec, line); err != nil {
				log.Error("command failed", "command", line, "error", err)
			}
		}
	}
}

func runCommand(s *Speaker, spec childSpec, line string) error {
	verb, arg, _ := strings.Cut(line, " ")
	p, err := netip.ParsePrefix(arg)
	if err != nil {
		return fmt.Errorf("parse prefix: %w", err)
	}
	switch verb {
	case "withdraw":
		return s.Withdraw(p)
	case "announce":
		return s.Announce(p, spec.Config.RouterID)
	}
	return fmt.Errorf("unknown command %q", verb)
}
