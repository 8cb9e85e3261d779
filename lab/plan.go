package lab

import (
	"github.com/lab-lb/lab/internal/fabric"
	"github.com/lab-lb/lab/internal/topology"
)

// Plan validates the topology at path and returns, as text, the kernel
// objects `up` would create for it, without touching the kernel.
func Plan(path, name string) (string, error) {
	t, err := topology.Load(path)
	if err != nil {
		return "", err
	}
	if name == "" {
		name = t.Name
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	return fabric.NewPlan(t, name).String(), nil
}
