package lab

import (
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/topology"
)

// UpPlan is what `lab up` would create for a topology: network namespaces,
// bridges, veths, tunnels, addresses, routes and sysctls, and the VIPs
// with their addresses and DNS names. Its String is the text `lab up
// --dry-run` prints, and it marshals to the JSON of `lab up --dry-run -o
// json`; the kernel objects themselves are not part of this API.
type UpPlan struct {
	// Lab is the name of the lab it is for.
	Lab string
	// Namespaces are the network namespaces, the bridges' first, then one
	// per node.
	Namespaces []string
	// VIPs are the topology's VIPs with their allocated addresses.
	VIPs []VIP

	raw *fabric.Plan
}

// Plan validates the topology at path and returns the kernel objects `up`
// would create for it as a lab called name (by default the topology's
// name), without touching the kernel.
func Plan(path, name string) (*UpPlan, error) {
	t, err := topology.Load(path)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = t.Name
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	return planFrom(fabric.NewPlan(t, name)), nil
}

// planFrom is the public form of a plan.
func planFrom(p *fabric.Plan) *UpPlan {
	return &UpPlan{
		Lab: p.Lab, Namespaces: p.Namespaces,
		VIPs: convert(p.VIPs, func(v topology.VIP) VIP { return VIP(v) }),
		raw:  p,
	}
}

// String writes the plan as `lab up --dry-run` prints it.
func (p *UpPlan) String() string {
	if p.raw == nil {
		return ""
	}
	return p.raw.String()
}

// MarshalJSON writes the plan as `lab up --dry-run -o json` prints it.
func (p *UpPlan) MarshalJSON() ([]byte, error) { return marshalRaw(p.raw) }
