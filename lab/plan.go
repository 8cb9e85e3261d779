package lab

import (
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/topology"
)

// Plan validates the topology at path and returns the kernel objects `up`
// would create for it, and its VIPs with their allocated addresses and DNS
// names, without touching the kernel. Its String is the text `lab up
// --dry-run` prints; it marshals to JSON for `-o json`.
func Plan(path, name string) (*fabric.Plan, error) {
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
	return fabric.NewPlan(t, name), nil
}
