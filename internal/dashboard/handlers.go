package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lab-lb/lab/internal/control"
)

//go:embed static
var static embed.FS

// ActionHeader must be set (to "1") on every POST: a browser sends no
// custom header to another site without asking it first (CORS), which
// this server never allows, so another page open in the same browser
// cannot kill nodes through it.
const ActionHeader = "X-Lab-Web"

// maxWorkers bounds the workers of a load started from the page.
const maxWorkers = 2000

// actionTimeout bounds one action on the lab.
const actionTimeout = time.Minute

// keepAlive is how often an idle stream gets a comment, so that proxies
// and browsers keep it open.
const keepAlive = 15 * time.Second

// nameRE is what the lab accepts as a node or segment name.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	mux.Handle("GET /", http.FileServerFS(files))
	mux.HandleFunc("GET /api/stream", s.stream)
	mux.HandleFunc("POST /api/nodes/{node}/{action}", s.nodeAction)
	mux.HandleFunc("POST /api/nodes/{node}/links/{other}", s.linkAction)
	mux.HandleFunc("POST /api/load/{action}", s.loadAction)
	return mux
}

// ServeHTTP serves the page, its stream and its actions, to requests
// that name this server (not another name that resolves to it: DNS
// rebinding) and, for actions, that carry ActionHeader.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hostAllowed(r.Host) {
		http.Error(w, fmt.Sprintf("host %q is not this server's address", r.Host), http.StatusForbidden)
		return
	}
	if r.Method == http.MethodPost && r.Header.Get(ActionHeader) != "1" {
		http.Error(w, "actions need the "+ActionHeader+": 1 header (the page sets it)", http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// hostAllowed accepts a Host header naming a loopback address, localhost,
// or the address the server listens on; any host when it listens on
// every address.
func (s *Server) hostAllowed(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && ip.IsLoopback():
		return true
	case s.listenIP == nil || s.listenIP.IsLoopback():
		return false
	case s.listenIP.IsUnspecified():
		return true
	}
	return ip != nil && ip.Equal(s.listenIP)
}

// stream sends the page the lab's picture, its events and the load, as
// server-sent events, until the page goes or the server stops.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	sub, err := s.hub.join(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer s.hub.leave(sub)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	fl.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		var err error
		select {
		case m, ok := <-sub.ch:
			if !ok {
				return
			}
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.event, m.data)
		case <-tick.C:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
		case <-r.Context().Done():
			return
		}
		if err != nil {
			return
		}
		fl.Flush()
	}
}

// checkNode answers false, after writing the error, unless node is a
// node of the lab with one of roles (any role when none is given).
func (s *Server) checkNode(w http.ResponseWriter, node string, roles ...string) bool {
	if !nameRE.MatchString(node) {
		http.Error(w, fmt.Sprintf("node %q: not a node name", node), http.StatusBadRequest)
		return false
	}
	role, known, ok := s.hub.roleOf(node)
	switch {
	case !ok:
		return true // no status yet: the lab decides
	case !known:
		http.Error(w, fmt.Sprintf("no node %s in the lab", node), http.StatusNotFound)
		return false
	case len(roles) > 0 && !slices.Contains(roles, role):
		http.Error(w, fmt.Sprintf("node %s is a %s: this applies to %s nodes", node, role, strings.Join(roles, " and ")), http.StatusBadRequest)
		return false
	}
	return true
}

// onOff reads the query parameter state, which must be one of the two
// words given.
func onOff(w http.ResponseWriter, r *http.Request, yes, no string) (bool, bool) {
	switch v := r.URL.Query().Get("state"); v {
	case yes:
		return true, true
	case no:
		return false, true
	default:
		http.Error(w, fmt.Sprintf("state %q: want %s or %s", v, yes, no), http.StatusBadRequest)
		return false, false
	}
}

// nodeAction is POST /api/nodes/NODE/ACTION: kill, freeze, revive, or
// maint?state=on|off.
func (s *Server) nodeAction(w http.ResponseWriter, r *http.Request) {
	node, action := r.PathValue("node"), r.PathValue("action")
	var do func(ctx context.Context) error
	switch action {
	case "kill", "freeze", "revive":
		if !s.checkNode(w, node) {
			return
		}
		f := map[string]func(context.Context, string) error{
			"kill": s.lab.Kill, "freeze": s.lab.Freeze, "revive": s.lab.Revive,
		}[action]
		do = func(ctx context.Context) error { return f(ctx, node) }
	case "maint":
		on, ok := onOff(w, r, "on", "off")
		if !ok || !s.checkNode(w, node, "lb4", "lb7") {
			return
		}
		action += " " + r.URL.Query().Get("state")
		do = func(ctx context.Context) error { return s.lab.Maint(ctx, node, on) }
	default:
		http.Error(w, fmt.Sprintf("action %q: want kill, freeze, revive or maint", action), http.StatusBadRequest)
		return
	}
	s.act(w, r, action+" "+node, do)
}

// linkAction is POST /api/nodes/NODE/links/OTHER?state=down|up: the
// node's leg of a segment, or its link to a peer node.
func (s *Server) linkAction(w http.ResponseWriter, r *http.Request) {
	node, other := r.PathValue("node"), r.PathValue("other")
	up, ok := onOff(w, r, "up", "down")
	if !ok || !s.checkNode(w, node) {
		return
	}
	if !nameRE.MatchString(other) {
		http.Error(w, fmt.Sprintf("link %q: not a segment or node name", other), http.StatusBadRequest)
		return
	}
	s.act(w, r, "link "+node+" "+other+" "+r.URL.Query().Get("state"), func(ctx context.Context) error {
		return s.lab.SetLink(ctx, node, other, up)
	})
}

// act runs an action on the lab and answers 204, or the lab's refusal.
func (s *Server) act(w http.ResponseWriter, r *http.Request, what string, do func(context.Context) error) {
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	start := time.Now()
	err := do(ctx)
	s.opts.Log.Info("action", "what", what, "took", time.Since(start).Round(time.Millisecond), "err", err)
	if err != nil {
		code := http.StatusBadGateway
		if ae, ok := errors.AsType[*control.APIError](err); ok && ae.Code/100 == 4 {
			code = ae.Code
		}
		http.Error(w, fmt.Sprintf("%s: %v", what, err), code)
		return
	}
	s.hub.poke()
	w.WriteHeader(http.StatusNoContent)
}

// loadAction is POST /api/load/start[?workers=N] and /api/load/stop.
func (s *Server) loadAction(w http.ResponseWriter, r *http.Request) {
	var start bool
	workers := s.opts.Workers
	switch a := r.PathValue("action"); a {
	case "start":
		start = true
		if v := r.URL.Query().Get("workers"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxWorkers {
				http.Error(w, fmt.Sprintf("workers %q: want a number from 1 to %d", v, maxWorkers), http.StatusBadRequest)
				return
			}
			workers = n
		}
	case "stop":
	default:
		http.Error(w, fmt.Sprintf("load %q: want start or stop", a), http.StatusBadRequest)
		return
	}
	err := s.hub.askLoad(r.Context(), start, workers)
	switch {
	case errors.Is(err, errLoadBusy):
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, errStopped):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
