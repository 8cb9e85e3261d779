package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lab-lb/lab/internal/dashboard"
	"github.com/lab-lb/lab/internal/testenv"
	"github.com/lab-lb/lab/lab"
)

// TestE2EWeb looks at `lab web` as a person would: the page of a minimal
// lab, open in headless Chromium, must show every node ready, run a load
// started with its button, show lb4-2 killed and the kill in its event log
// within a second of the kill, and chart the load, one chart per VIP, with
// the kill marked. A load started through the lab's API (as `lab load`
// does) is charted too, and a link set down shows from the lab's state. A
// screenshot of it is saved (and copied to $LAB_WEB_SCREENSHOT when set).
func TestE2EWeb(t *testing.T) {
	requireE2E(t)
	browser, err := exec.LookPath("chromium")
	if err != nil {
		testenv.SkipOrFail(t, "no chromium to open the page in (apt-get install chromium; make deps installs it): %v", err)
	}
	const name = "e2e-web"
	l := up(t, "../topologies/minimal.yaml", name)
	st := status(t, l)

	// The page's server, in process, on a free loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	// What the server logs (actions, loads, slow polls) goes to the test's
	// log; it has stopped by the time the test ends.
	webLog := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { served <- dashboard.Serve(srvCtx, l, ln, dashboard.Options{Log: webLog}) }()
	t.Cleanup(func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	url := "http://" + ln.Addr().String() + "/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1400, 1100),
		chromedp.Flag("disable-dev-shm-usage", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelB := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelB)
	// The page's own errors fail the test; what else it logs is shown.
	consoleCtx, stopConsole := context.WithCancel(bctx)
	messages := chromedp.Console(consoleCtx)
	var jsErrs []string
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() {
				jsErrs = append(jsErrs, m.String())
			} else if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				t.Logf("page console: %s", m)
			}
		}
	}()
	t.Cleanup(func() {
		stopConsole()
		<-consoleDone
		for _, e := range jsErrs {
			t.Errorf("JavaScript error on the page: %s", e)
		}
	})
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	nodeStates := func() (map[string]string, error) {
		return evalOn[map[string]string](bctx, `Object.fromEntries([...document.querySelectorAll('#lab [data-node]')].map(g => [g.dataset.node, g.dataset.state]))`)
	}

	start := time.Now()
	do("open "+url, chromedp.Navigate(url))
	testenv.EventuallyEvery(t, 30*time.Second, 50*time.Millisecond, "every node of the lab shown ready", func() error {
		states, err := nodeStates()
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if s, ok := states[n.Name]; !ok {
				return fmt.Errorf("no box for %s (boxes: %v)", n.Name, states)
			} else if s != dashboard.StateReady {
				return fmt.Errorf("%s is %s", n.Name, s)
			}
		}
		if len(states) != len(st.Nodes) {
			return fmt.Errorf("%d boxes for %d nodes: %v", len(states), len(st.Nodes), states)
		}
		return nil
	})
	t.Logf("page shows %d nodes ready after %s", len(st.Nodes), time.Since(start).Round(time.Millisecond))

	// A load, started as a person would: with the button.
	do("start the load", chromedp.Click(chromedp.ID("load-start")))
	// points is how many seconds the first VIP's chart draws.
	points := func() (int, error) {
		return evalOn[int](bctx, `Number((document.querySelector('#charts svg.vip-chart') || {dataset: {}}).dataset.points || 0)`)
	}
	// charts returns the target of each VIP's chart.
	charts := func() ([]string, error) {
		return evalOn[[]string](bctx, `[...document.querySelectorAll('#charts svg.vip-chart')].map(s => s.dataset.target)`)
	}
	var tcpVIPs []string
	for _, v := range st.VIPs {
		if v.Protocol == "" || v.Protocol == "tcp" {
			tcpVIPs = append(tcpVIPs, v.Address)
		}
	}
	testenv.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, "the charts draw the load, one per VIP", func() error {
		state, err := evalOn[string](bctx, `document.querySelector('#load').dataset.state || ''`)
		if err != nil {
			return err
		}
		n, err := points()
		if err != nil {
			return err
		}
		targets, err := charts()
		if err != nil {
			return err
		}
		if state != "running" || n < 3 || !slices.Equal(targets, tcpVIPs) {
			return fmt.Errorf("load %q, %d seconds charted, charts of %v (want %v)", state, n, targets, tcpVIPs)
		}
		return nil
	})

	// The kill, from Go; the page must show it within a second.
	killRows := `[...document.querySelectorAll('#events tr[data-kind=inject][data-ev-node="lb4-2"]')].filter(r => r.textContent.includes('kill:')).length`
	before, err := evalOn[int](bctx, killRows)
	if err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithTimeout(context.Background(), time.Minute)
	defer kcancel()
	killStart := time.Now()
	if err := l.Kill(kctx, "lb4-2"); err != nil {
		t.Fatalf("kill lb4-2: %v", err)
	}
	killed := time.Now()
	var boxAt, logAt time.Duration
	deadline := killed.Add(time.Second)
	for boxAt == 0 || logAt == 0 {
		states, err := nodeStates()
		if err != nil {
			t.Fatal(err)
		}
		if boxAt == 0 && states["lb4-2"] == dashboard.StateKilled {
			boxAt = time.Since(killStart)
		}
		rows, err := evalOn[int](bctx, killRows)
		if err != nil {
			t.Fatal(err)
		}
		if logAt == 0 && rows > before {
			logAt = time.Since(killStart)
		}
		if time.Now().After(deadline) {
			t.Fatalf("1s after the kill returned (%s after it was asked): lb4-2's box is %q (killed shown at %s), kill rows in the log %d (shown at %s)",
				time.Since(killStart).Round(time.Millisecond), states["lb4-2"], boxAt, rows, logAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("kill lb4-2 took %s; the page showed lb4-2 killed %s and the kill in its log %s after it was asked",
		killed.Sub(killStart).Round(time.Millisecond), boxAt.Round(time.Millisecond), logAt.Round(time.Millisecond))

	// The chart goes on, with the kill marked on it.
	n0, err := points()
	if err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyEvery(t, 20*time.Second, 100*time.Millisecond, "the chart marks the kill and goes on", func() error {
		marks, err := evalOn[int](bctx, `document.querySelectorAll('#charts svg.vip-chart:first-child .inject-mark').length`)
		if err != nil {
			return err
		}
		n, err := points()
		if err != nil {
			return err
		}
		if marks < 1 || n < n0+3 {
			return fmt.Errorf("%d injection marks, %d seconds charted (%d at the kill)", marks, n, n0)
		}
		return nil
	})

	// lb4-2's box opens its panel, with its buttons.
	do("click lb4-2", chromedp.Click(chromedp.ID("node-lb4-2")))
	testenv.EventuallyEvery(t, 5*time.Second, 50*time.Millisecond, "lb4-2's panel", func() error {
		actions, err := evalOn[[]string](bctx, `[...document.querySelectorAll('#panel button')].map(b => b.dataset.action)`)
		if err != nil {
			return err
		}
		for _, want := range []string{"kill lb4-2", "freeze lb4-2", "revive lb4-2", "maint lb4-2 on", "maint lb4-2 off", "link lb4-2 infra down", "link lb4-2 infra up"} {
			if !slices.Contains(actions, want) {
				return fmt.Errorf("no button %q in %v", want, actions)
			}
		}
		return nil
	})
	sctx, scancel := context.WithTimeout(bctx, time.Minute)
	shot, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	scancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	checkScreenshot(t, shot)

	// Revive, with the panel's button: the page shows lb4-2 back; then the
	// load stops with its button.
	do("revive lb4-2", chromedp.Click(chromedp.CSS(`#panel button[data-action="revive lb4-2"]`)))
	testenv.EventuallyEvery(t, time.Minute, 100*time.Millisecond, "lb4-2 shown ready again", func() error {
		states, err := nodeStates()
		if err != nil {
			return err
		}
		if s := states["lb4-2"]; s != dashboard.StateReady {
			return fmt.Errorf("lb4-2 is %s", s)
		}
		return nil
	})
	do("stop the load", chromedp.Click(chromedp.ID("load-stop")))
	testenv.EventuallyEvery(t, time.Minute, 100*time.Millisecond, "the load's report", func() error {
		text, err := evalOn[string](bctx, `document.querySelector('#load').dataset.state + ': ' + document.querySelector('#load-figures').textContent`)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(text, "idle: ") || !strings.Contains(text, "Last load from this page:") {
			return fmt.Errorf("%s", text)
		}
		t.Logf("load from the page: %s", text)
		return nil
	})

	// A load started elsewhere, through the lab's API as `lab load` does,
	// to one VIP: the page finds it and charts it, one chart.
	lctx, lcancel := context.WithTimeout(context.Background(), time.Minute)
	defer lcancel()
	ld, err := l.StartLoad(lctx, lab.LoadConfig{VIPs: []string{tcpVIPs[0]}, Workers: 5})
	if err != nil {
		t.Fatalf("start a load through the API: %v", err)
	}
	outside := time.Now()
	testenv.EventuallyEvery(t, 30*time.Second, 100*time.Millisecond, "the load started outside the page charted", func() error {
		key, err := evalOn[string](bctx, `document.querySelector('#charts').dataset.load || ''`)
		if err != nil {
			return err
		}
		targets, err := charts()
		if err != nil {
			return err
		}
		n, err := points()
		if err != nil {
			return err
		}
		if key != ld.Node+"/"+ld.ID || !slices.Equal(targets, tcpVIPs[:1]) || n < 2 {
			return fmt.Errorf("charts of load %q: %v, %d seconds", key, targets, n)
		}
		return nil
	})
	t.Logf("load %s on %s, started through the API, charted with 2 seconds %s after it started", ld.ID, ld.Node, time.Since(outside).Round(time.Millisecond))
	if _, err := ld.Stop(lctx); err != nil {
		t.Errorf("stop the load: %v", err)
	}

	// A link set down from Go shows down, from the lab's state; then up.
	linkDown := func(want int) func() error {
		return func() error {
			n, err := evalOn[int](bctx, `document.querySelectorAll('#lab line.edge.down').length`)
			if err != nil {
				return err
			}
			if (n > 0) != (want > 0) {
				return fmt.Errorf("%d links drawn down", n)
			}
			return nil
		}
	}
	if err := l.SetLink(lctx, "lb4-2", "infra", false); err != nil {
		t.Fatalf("link lb4-2 infra down: %v", err)
	}
	testenv.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, "lb4-2's infra link drawn down", linkDown(1))
	if err := l.SetLink(lctx, "lb4-2", "infra", true); err != nil {
		t.Fatalf("link lb4-2 infra up: %v", err)
	}
	testenv.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, "lb4-2's infra link drawn up", linkDown(0))
}

// testLogWriter writes lines to a test's log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// evalOn evaluates the JavaScript expression expr on the page of the
// browser context bctx.
func evalOn[T any](bctx context.Context, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// checkScreenshot checks that shot is a PNG with something drawn on it,
// and saves it in the test's directory and at $LAB_WEB_SCREENSHOT.
func checkScreenshot(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if n := colours(img); n < 8 {
		t.Errorf("screenshot has %d colours: blank?", n)
	}
	paths := []string{filepath.Join(t.TempDir(), "web.png")}
	if p := os.Getenv("LAB_WEB_SCREENSHOT"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Errorf("save screenshot: %v", err)
		}
	}
	t.Logf("screenshot %dx%d saved at %s", img.Bounds().Dx(), img.Bounds().Dy(), strings.Join(paths, ", "))
}

// colours counts the distinct colours of img, up to 1000.
func colours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= 1000 {
				return len(seen)
			}
		}
	}
	return len(seen)
}
