package supervisor

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/lab-lb/lab/internal/control"
)

// proxyLoad hands a load request (`lab load`) to the node's agent: the
// supervisor's /v1/nodes/{node}/load[/{rest...}] becomes the agent's
// /load[/{rest...}].
func (s *Supervisor) proxyLoad(w http.ResponseWriter, r *http.Request) {
	path := "/load"
	if rest := r.PathValue("rest"); rest != "" {
		path += "/" + rest
	}
	s.proxy(path)(w, r)
}

// loadListTimeout bounds one agent's answer to GET /load.
const loadListTimeout = 5 * time.Second

// handleLoads lists the loads running from every node whose agent runs,
// oldest first; an agent that does not answer in time lists none.
func (s *Supervisor) handleLoads(w http.ResponseWriter, r *http.Request) {
	t, _ := s.current()
	var mu sync.Mutex
	var wg sync.WaitGroup
	all := []control.LoadInfo{}
	if t != nil {
		for _, n := range t.Nodes {
			if s.lifeOf(n.Name).down() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lds, err := s.agentLoads(r.Context(), n.Name)
				if err != nil {
					s.log.Debug("list loads", "node", n.Name, "err", err)
					return
				}
				mu.Lock()
				all = append(all, lds...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b control.LoadInfo) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
	writeJSON(w, all)
}

// agentLoads returns the loads running from node name.
func (s *Supervisor) agentLoads(ctx context.Context, name string) ([]control.LoadInfo, error) {
	c, err := s.agentClient(name)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, loadListTimeout)
	defer cancel()
	var lds []control.LoadInfo
	if err := c.GetJSON(ctx, "/load", &lds); err != nil {
		return nil, err
	}
	for i := range lds {
		lds[i].Node = name
	}
	return lds, nil
}
