package supervisor

import "net/http"

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
