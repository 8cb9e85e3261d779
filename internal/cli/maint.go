package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lab-lb/lab/lab"
)

func newMaintCmd(g *globals) *cobra.Command {
	var vip string
	c := &cobra.Command{
		Use:   "maint NODE on|off | maint --vip NAME on|off",
		Short: "Take an LB4 (/etc/lb/disable: VIPs withdrawn), an LB7 (agent-check down: out of every LB4) or one VIP (--vip: withdrawn by every LB4) out of service, or back",
		Long: `Take a node or a VIP out of service, or put it back.

  lab maint lb4-2 on      /etc/lb/disable on lb4-2: it withdraws every VIP
  lab maint lb7-1 on      "down" in lb7-1's /etc/lb/agent-check: every LB4
                          takes it out
  lab maint --vip www1 on /etc/lb/disable.www1 on every LB4: each withdraws
                          that VIP's addresses alone; the lab's DNS stops
                          answering them once its checks fail`,
		Args: func(cmd *cobra.Command, args []string) error {
			if vip != "" {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			state := args[len(args)-1]
			var on bool
			switch state {
			case "on":
				on = true
			case "off":
			default:
				return fmt.Errorf("maint %q: want on or off", state)
			}
			l, err := lab.Open(g.name)
			if err != nil {
				return err
			}
			defer l.Close()
			if vip != "" {
				return l.MaintVIP(cmd.Context(), vip, on)
			}
			return l.Maint(cmd.Context(), args[0], on)
		},
	}
	c.Flags().StringVar(&vip, "vip", "", "take the VIP named NAME out of service on every LB4, instead of a node")
	return c
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
	var freeze bool
	c := &cobra.Command{
		Use:   "kill NODE [--freeze]",
		Short: "Crash a node: all its processes die at once, its links stay up (peers see TCP sessions close)",
		Long: `Crash a node: all its processes die at once, its links stay up (peers see
TCP sessions close), its kernel state (addresses, routes, IPVS) stays.
An LB4, LB7, backend, client or host has its agent in the pool, the
process the lab shares between such nodes: that agent stops and every
socket the pool has in the node's network namespace (its BGP sessions
too) closes at once, as the kernel closes a killed process's, while the
node's own processes (HAProxy, commands of lab exec) are killed.

With --freeze the failure is silent: the node's processes are stopped
(SIGSTOP) and every packet to and from it is dropped; lab revive thaws
it. A pooled agent is cut off that way too, though its own timers run on.`,
		Args: cobra.ExactArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			if freeze {
				return l.Freeze(cmd.Context(), args[0])
			}
			return l.Kill(cmd.Context(), args[0])
		}),
	}
	c.Flags().BoolVar(&freeze, "freeze", false, "fail silently instead: processes stopped, every packet to and from the node dropped")
	return c
}

func newLinkCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "link NODE SEGMENT|PEER down|up",
		Short: "Set a node's leg of a segment, or its link to a peer node, down or up (both ends)",
		Args:  cobra.ExactArgs(3),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			switch args[2] {
			case "up", "down":
			default:
				return fmt.Errorf("link %s %s %q: want up or down", args[0], args[1], args[2])
			}
			return l.SetLink(cmd.Context(), args[0], args[1], args[2] == "up")
		}),
	}
}

func newImpairCmd(g *globals) *cobra.Command {
	var im lab.Impairment
	c := &cobra.Command{
		Use:   "impair NODE SEGMENT|PEER [--delay D] [--jitter J] [--loss PCT]",
		Short: "Delay, jitter and drop packets on a node's link with netem (both directions); no flags removes it",
		Args:  cobra.ExactArgs(2),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Impair(cmd.Context(), args[0], args[1], im)
		}),
	}
	c.Flags().DurationVar(&im.Delay, "delay", 0, "added delay, e.g. 20ms")
	c.Flags().DurationVar(&im.Jitter, "jitter", 0, "delay variation, e.g. 5ms")
	c.Flags().Float64Var(&im.Loss, "loss", 0, "percentage of packets dropped, e.g. 1")
	return c
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

func newAddCmd(g *globals) *cobra.Command {
	var like string
	c := &cobra.Command{
		Use:   "add NODE --like MODEL",
		Short: "Add an LB4 or LB7 to the running lab, made like an existing one (segments, routes, settings)",
		Args:  cobra.ExactArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Add(cmd.Context(), args[0], like)
		}),
	}
	c.Flags().StringVar(&like, "like", "", "existing lb4 or lb7 node to copy (required)")
	_ = c.MarkFlagRequired("like")
	return c
}

func newRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove an LB4 or LB7 from the running lab: its processes, namespace and links go",
		Args:  cobra.ExactArgs(1),
		RunE: g.withLab(func(cmd *cobra.Command, l *lab.Lab, args []string) error {
			return l.Remove(cmd.Context(), args[0])
		}),
	}
}
