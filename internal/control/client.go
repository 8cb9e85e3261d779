package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Endpoint says where a control API listens: "unix:///path" or
// "tcp://host:port".
type Endpoint string

// Client talks to a supervisor or an agent.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for endpoint; token is sent as a bearer token
// when not empty.
func NewClient(ep Endpoint, token string) (*Client, error) {
	u, err := url.Parse(string(ep))
	if err != nil {
		return nil, fmt.Errorf("parse endpoint %q: %w", ep, err)
	}
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	switch u.Scheme {
	case "unix":
		path := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		return &Client{base: "http://lab", token: token, hc: &http.Client{Transport: tr}}, nil
	case "tcp":
		tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 5 * time.Second}).DialContext
		return &Client{base: "http://" + u.Host, token: token, hc: &http.Client{Transport: tr}}, nil
	default:
		return nil, fmt.Errorf("endpoint %q: want unix:// or tcp://", ep)
	}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, &APIError{Method: method, Path: path, Code: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	}
	return resp, nil
}

// APIError is a refusal from the control API. Its message is the
// server's, written for the user ("node lb7-2 already exists"); the
// request is named too when the server gave no reason of its own (no
// message, or net/http's for a route it does not know: a lab binary of
// another version).
type APIError struct {
	Method, Path string
	Code         int
	Message      string
}

func (e *APIError) Error() string {
	switch e.Message {
	case "", "404 page not found", http.StatusText(e.Code):
		return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Code, http.StatusText(e.Code))
	}
	return e.Message
}

// GetJSON decodes the JSON document at path into v.
func (c *Client) GetJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Post sends a POST with an optional JSON body and discards the answer.
func (c *Client) Post(ctx context.Context, path string, v any) error {
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// PostJSON sends in (nil for no body) as JSON with a POST and decodes the
// JSON answer into out.
func (c *Client) PostJSON(ctx context.Context, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = strings.NewReader(string(b))
	}
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of POST %s: %w", path, err)
	}
	return nil
}

// Status returns the lab's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.GetJSON(ctx, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Readiness returns the lab's status with only whether each node has
// converged (AgentStatus.Ready, Waiting), much cheaper to make than Status
// in a busy lab.
func (c *Client) Readiness(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.GetJSON(ctx, "/v1/status?ready=1", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// StatusOf returns the status of the nodes of the given roles only.
func (c *Client) StatusOf(ctx context.Context, roles ...string) (*Status, error) {
	q := url.Values{}
	for _, r := range roles {
		q.Add("role", r)
	}
	var st Status
	if err := c.GetJSON(ctx, "/v1/status?"+q.Encode(), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Events returns the lab's events numbered after since (Event.Seq),
// oldest first; since 0 returns the whole log.
func (c *Client) Events(ctx context.Context, since uint64) ([]Event, error) {
	var evs []Event
	q := url.Values{EventsSinceParam: {strconv.FormatUint(since, 10)}}
	if err := c.GetJSON(ctx, "/v1/events?"+q.Encode(), &evs); err != nil {
		return nil, fmt.Errorf("read the event log: %w", err)
	}
	return evs, nil
}

// Loads lists the loads running in the lab, oldest first.
func (c *Client) Loads(ctx context.Context) ([]LoadInfo, error) {
	var lds []LoadInfo
	if err := c.GetJSON(ctx, PathLoads, &lds); err != nil {
		return nil, fmt.Errorf("list the loads: %w", err)
	}
	return lds, nil
}

// CPU returns where the lab kernel's CPU time went over interval, or
// since boot when interval is 0.
func (c *Client) CPU(ctx context.Context, interval time.Duration) (*CPUReport, error) {
	path := PathCPU
	if interval > 0 {
		path += "?" + url.Values{CPUIntervalParam: {interval.String()}}.Encode()
	}
	var rep CPUReport
	if err := c.GetJSON(ctx, path, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Exec runs argv on node, streaming stdin to it and its output back, and
// returns its exit status. path is "/v1/nodes/NODE/exec" on a supervisor,
// "/exec" on an agent, and may carry a query (ExecInterruptParam).
func (c *Client) Exec(ctx context.Context, path string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	q := url.Values{"arg": argv}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	resp, err := c.do(ctx, http.MethodPost, path+sep+q.Encode(), io.NopCloser(stdin))
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	return ReadFrames(resp.Body, stdout, stderr)
}

// Stream copies the body at path to w until it ends or ctx is done.
func (c *Client) Stream(ctx context.Context, path string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// WaitReachable polls until the API answers or the deadline passes.
func (c *Client) WaitReachable(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var v map[string]any
		err := c.GetJSON(ctx, "/v1/ping", &v)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("control API not reachable: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
