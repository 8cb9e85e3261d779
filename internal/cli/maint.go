package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/lab"
)

func newMaintCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "maint NODE on|off",
		Short: "Take an LB4 (/etc/lb/disable: VIPs withdrawn) or an LB7 (agent-check down: out of every LB4) out of service, or back",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[1] {
			case "on":
				on = true
			case "off":
			default:
				return fmt.Errorf("maint %s %q: want on or off", args[0], args[1])
			}
			l, err := lab.Open(g.name)
			if err != nil {
				return err
			}
			defer l.Close()
			return l.Maint(cmd.Context(), args[0], on)
		},
	}
}

func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent NODE STATE",
		Short: "Write an agent-check answer (up, down, drain, maint, ready, 50%...) into a backend's or LB7's /etc/lb/agent-check",
		Args:  cobra.ExactArgs(2),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Agent(cmd.Context(), args[0], args[1])
		}),
	}
}

func newKillCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "kill NODE",
		Short: "Crash a node: all its processes die at once, its links stay up (peers see TCP sessions close)",
		Args:  cobra.ExactArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Kill(cmd.Context(), args[0])
		}),
	}
}

func newReviveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revive NODE",
		Short: "Restart a killed node's agent and services; it rejoins by itself",
		Args:  cobra.ExactArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Revive(cmd.Context(), args[0])
		}),
	}
}
