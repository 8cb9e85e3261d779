package bfd

import (
	"net/netip"
	"testing"
	"time"
)

var (
	t0    = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	fast  = Config{Interval: 20 * time.Millisecond, Multiplier: 3}
)

// testSession is a session without jitter.
func testSession(peer netip.Addr, discr uint32, cfg Config) *session {
	s := newSession(peer, discr, cfg, t0)
	s.rand = func() float64 { return 0 }
	return s
}

// send delivers from's periodic packet to to over the wire format, and the
// final that answers a poll back. It reports whether to changed state.
func send(t *testing.T, from, to *session, now time.Time) bool {
	t.Helper()
	p := from.packet(now)
	changed, reply := deliver(t, p, to, now)
	if reply != p.Poll {
		t.Fatalf("reply = %v for a packet with poll %v", reply, p.Poll)
	}
	if reply {
		f := to.final()
		if !f.Final || f.Poll {
			t.Fatalf("final() = %+v, want final without poll", f)
		}
		deliver(t, f, from, now)
	}
	return changed
}

func deliver(t *testing.T, p Packet, to *session, now time.Time) (changed, reply bool) {
	t.Helper()
	q, err := Parse(p.Marshal())
	if err != nil {
		t.Fatalf("Parse(%+v): %v", p, err)
	}
	return to.receive(q, now)
}

// handshake brings a and b Up from Down, checking the states on the way.
func handshake(t *testing.T, a, b *session, now time.Time) {
	t.Helper()
	if !send(t, a, b, now) || b.state != Init {
		t.Fatalf("b after a's down: %s, want init", b.state)
	}
	if !send(t, b, a, now) || a.state != Up {
		t.Fatalf("a after b's init: %s, want up", a.state)
	}
	if !a.polling {
		t.Fatal("a entered up without starting a poll sequence")
	}
	if !send(t, a, b, now) || b.state != Up { // a polls, b answers with final
		t.Fatalf("b after a's up: %s, want up", b.state)
	}
	if a.polling {
		t.Error("a still polling after b's final")
	}
	send(t, b, a, now) // b polls, a answers
	if b.polling {
		t.Error("b still polling after a's final")
	}
}

func TestHandshake(t *testing.T) {
	a := testSession(addrB, 1, fast)
	b := testSession(addrA, 2, fast)
	for _, s := range []*session{a, b} {
		if !s.due(t0) {
			t.Fatal("a new session does not send at once")
		}
		if p := s.control(); p.State != Down || p.DesiredMinTx != time.Second || p.RequiredMinRx != fast.Interval || p.YourDiscr != 0 {
			t.Fatalf("first packet %+v, want down, desired min tx 1s, required min rx 20ms, your discr 0", p)
		}
		if s.txInterval() != time.Second {
			t.Fatalf("tx interval while down = %v, want 1s", s.txInterval())
		}
	}
	handshake(t, a, b, t0)
	for _, s := range []*session{a, b} {
		if got := s.txInterval(); got != fast.Interval {
			t.Errorf("tx interval once up = %v, want %v", got, fast.Interval)
		}
		if got := s.detectTime(); got != 60*time.Millisecond {
			t.Errorf("detect time once up = %v, want 60ms", got)
		}
		if p := s.packet(t0); p.Poll || p.Final || p.DesiredMinTx != fast.Interval {
			t.Errorf("packet after the poll = %+v, want no poll, desired min tx 20ms", p)
		}
		if snap := s.snapshot(); snap.Failed() || snap.Downs != 0 || snap.State != Up || snap.RemoteDiscr == 0 {
			t.Errorf("snapshot = %+v, want up, not failed", snap)
		}
	}
	if a.remoteDiscr != 2 || b.remoteDiscr != 1 {
		t.Errorf("remote discriminators %d, %d, want 2, 1", a.remoteDiscr, b.remoteDiscr)
	}
}

// An increase of the transmission interval on entering Up waits for the end
// of the poll sequence (RFC 5880 §6.8.3).
func TestIncreaseWaitsForFinal(t *testing.T) {
	a := testSession(addrB, 1, Config{Interval: 2 * time.Second, Multiplier: 3})
	b := testSession(addrA, 2, fast) // asks for packets every 20ms
	send(t, a, b, t0)
	send(t, b, a, t0) // a is Up and polls
	if a.state != Up || !a.polling {
		t.Fatalf("a: %s, polling %v; want up, polling", a.state, a.polling)
	}
	if p := a.packet(t0); !p.Poll || p.DesiredMinTx != 2*time.Second {
		t.Errorf("a's packet = %+v, want poll with desired min tx 2s", p)
	}
	if got := a.txInterval(); got != time.Second {
		t.Errorf("a's tx interval while polling = %v, want 1s", got)
	}
	if got := a.nextTx.Sub(t0); got != time.Second {
		t.Errorf("a's next packet in %v, want 1s", got)
	}
	send(t, a, b, t0) // b answers with final
	if got := a.txInterval(); a.polling || got != 2*time.Second {
		t.Errorf("after the final: polling %v, tx interval %v; want false, 2s", a.polling, got)
	}
}

func TestDetectionExpired(t *testing.T) {
	a := testSession(addrB, 1, fast)
	b := testSession(addrA, 2, fast)
	handshake(t, a, b, t0)
	last := t0.Add(time.Millisecond)
	send(t, b, a, last)
	if got := a.deadline(); !got.Equal(a.nextTx) {
		t.Errorf("deadline %v, want the next transmission %v", got, a.nextTx)
	}
	a.packet(last.Add(50 * time.Millisecond)) // a keeps sending, b is silent
	if got, want := a.deadline(), last.Add(60*time.Millisecond); !got.Equal(want) {
		t.Errorf("deadline %v, want the detection time %v", got, want)
	}
	if a.expired(last.Add(60*time.Millisecond - 1)) {
		t.Fatal("expired before the detection time")
	}
	now := last.Add(60 * time.Millisecond)
	if !a.expired(now) {
		t.Fatal("not expired after the detection time")
	}
	snap := a.snapshot()
	if snap.State != Down || snap.Diag != DiagDetectExpired || !snap.Failed() || snap.Downs != 1 || !snap.Since.Equal(now) {
		t.Errorf("after expiry %+v, want down, detection time expired, failed, 1 down since %v", snap, now)
	}
	if a.remoteDiscr != 0 || !a.due(now) || a.txInterval() != time.Second {
		t.Errorf("after expiry: remote discr %d, due %v, tx interval %v; want 0, true, 1s", a.remoteDiscr, a.due(now), a.txInterval())
	}
	if p := a.packet(now); p.State != Down || p.YourDiscr != 0 || p.Poll || p.DesiredMinTx != time.Second {
		t.Errorf("packet after expiry %+v, want down, your discr 0, no poll, desired min tx 1s", p)
	}
	if a.expired(now.Add(time.Hour)) {
		t.Error("expired again with no peer")
	}

	// Recovery: b, still Up, is told a is Down, and the handshake runs again.
	now = now.Add(time.Second)
	a.packet(now)
	if !send(t, a, b, now) || b.state != Down || b.diag != DiagNeighborDown {
		t.Fatalf("b after a's down: %s (%s), want down (neighbor signaled session down)", b.state, b.diag)
	}
	handshake(t, a, b, now)
	for _, s := range []*session{a, b} {
		if snap := s.snapshot(); snap.State != Up || snap.Failed() || snap.Downs != 1 {
			t.Errorf("after recovery %+v, want up, not failed, 1 down", snap)
		}
	}
}

func TestNeighborDown(t *testing.T) {
	for _, st := range []State{Down, AdminDown} {
		a := testSession(addrB, 1, fast)
		b := testSession(addrA, 2, fast)
		handshake(t, a, b, t0)
		p := b.control()
		p.State = st
		if changed, _ := deliver(t, p, a, t0.Add(time.Millisecond)); !changed {
			t.Fatalf("%s from the peer changed nothing", st)
		}
		if snap := a.snapshot(); snap.State != Down || snap.Diag != DiagNeighborDown || !snap.Failed() {
			t.Errorf("after %s from the peer: %+v, want down, neighbor signaled session down, failed", st, snap)
		}
	}
}

func TestNeverUpNotFailed(t *testing.T) {
	a := testSession(addrB, 1, fast)
	b := testSession(addrA, 2, fast)
	if a.expired(t0.Add(time.Hour)) || a.snapshot().Failed() {
		t.Error("a session that never heard its peer expired or failed")
	}
	send(t, b, a, t0) // a goes Init, then b falls silent
	if a.state != Init {
		t.Fatalf("a: %s, want init", a.state)
	}
	if !a.expired(t0.Add(3 * time.Second)) {
		t.Fatal("init did not expire after 3 × 1s")
	}
	if snap := a.snapshot(); snap.State != Down || snap.Diag != DiagDetectExpired || snap.Failed() || snap.Downs != 0 {
		t.Errorf("%+v, want down, detection time expired, not failed, 0 downs", snap)
	}
}

func TestRestartedPeer(t *testing.T) {
	a := testSession(addrB, 1, fast)
	b := testSession(addrA, 2, fast)
	handshake(t, a, b, t0)
	now := t0.Add(10 * time.Millisecond)
	b2 := testSession(addrA, 3, fast) // b restarted, a new discriminator
	if !send(t, b2, a, now) || a.state != Down || a.diag != DiagNeighborDown || a.remoteDiscr != 3 {
		t.Fatalf("a after the restarted peer's down: %s (%s) remote discr %d, want down (neighbor signaled session down) 3", a.state, a.diag, a.remoteDiscr)
	}
	send(t, b2, a, now) // Down+Down: Init
	if a.state != Init {
		t.Fatalf("a: %s, want init", a.state)
	}
	if !send(t, a, b2, now) || b2.state != Up {
		t.Fatalf("b2 after a's init: %s, want up", b2.state)
	}
	send(t, b2, a, now)
	send(t, a, b2, now)
	if a.state != Up || b2.state != Up || a.snapshot().Downs != 1 || a.remoteDiscr != 3 {
		t.Errorf("a %s (%d downs, remote %d), b2 %s; want both up, 1 down, remote 3", a.state, a.snapshot().Downs, a.remoteDiscr, b2.state)
	}
}

// A packet from the peer that comes back Up after our expiry (it never saw
// us go) does not bring us Up: Down ignores Up.
func TestDownIgnoresUp(t *testing.T) {
	a := testSession(addrB, 1, fast)
	b := testSession(addrA, 2, fast)
	handshake(t, a, b, t0)
	now := t0.Add(time.Second)
	a.expired(now)
	p := b.control()
	if changed, _ := deliver(t, p, a, now); changed || a.state != Down {
		t.Errorf("a after up from the peer: %s, want down", a.state)
	}
}

func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		mult   int
		lo, hi float64
	}{{3, 0.75, 1}, {1, 0.75, 0.90}} {
		s := newSession(addrA, 1, Config{Interval: time.Second, Multiplier: tc.mult}, t0)
		for _, r := range []float64{0, 0.5, 0.999999} {
			s.rand = func() float64 { return r }
			checkJitter(t, s.jitter(time.Second), tc.mult, tc.lo, tc.hi)
		}
		s = newSession(addrA, 1, Config{Interval: time.Second, Multiplier: tc.mult}, t0) // the real source
		for range 1000 {
			p := s.nextTx
			s.packet(p)
			checkJitter(t, s.nextTx.Sub(p), tc.mult, tc.lo, tc.hi)
		}
	}
}

func checkJitter(t *testing.T, got time.Duration, mult int, lo, hi float64) {
	t.Helper()
	if got < time.Duration(lo*float64(time.Second)) || got > time.Duration(hi*float64(time.Second)) {
		t.Fatalf("multiplier %d: interval %v out of [%v, %v] × 1s", mult, got, lo, hi)
	}
}

func TestNoPacketsWanted(t *testing.T) {
	a := testSession(addrB, 1, fast)
	p := Packet{State: Down, DetectMult: 3, MyDiscr: 2, DesiredMinTx: time.Second} // required min rx 0
	deliver(t, p, a, t0)
	a.packet(t0)
	if !a.nextTx.IsZero() || a.due(t0.Add(time.Hour)) {
		t.Fatalf("next transmission %v, want none while the peer wants no packets", a.nextTx)
	}
	p.RequiredMinRx = fast.Interval
	deliver(t, p, a, t0.Add(time.Second))
	if !a.due(t0.Add(time.Second)) {
		t.Error("transmission did not resume")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Interval != 300*time.Millisecond || c.Multiplier != 3 {
		t.Errorf("defaults %+v, want 300ms × 3", c)
	}
	if c := (Config{Interval: time.Nanosecond, Multiplier: 1000}).withDefaults(); c.Interval != time.Microsecond || c.Multiplier != 255 {
		t.Errorf("clamped %+v, want 1µs × 255", c)
	}
}

// TestEcho checks the echo function: echoes go out once Up, every Echo; a
// reply answers its echo and the older ones; the session fails once
// Multiplier echoes are unanswered, the oldest Multiplier x Echo ago, and
// not when the caller itself was held up and sent nothing.
func TestEcho(t *testing.T) {
	ms := time.Millisecond
	cfg := Config{Interval: time.Second, Multiplier: 3, Echo: 100 * ms}
	up := func() (*session, *session) {
		a := testSession(addrB, 1, cfg)
		b := testSession(addrA, 2, Config{Interval: time.Second, Multiplier: 3})
		if _, due := a.echoDue(t0); due {
			t.Fatal("echo due before the session is up")
		}
		handshake(t, a, b, t0)
		return a, b
	}
	// tick sends the echo due at now, if any, and returns its number.
	tick := func(a *session, now time.Time) (uint16, bool) {
		seq, due := a.echoDue(now)
		if due {
			a.echoSent(seq, now)
		}
		return seq, due
	}

	t.Run("answered", func(t *testing.T) {
		a, _ := up()
		for i := range 50 { // 5 s, every echo answered
			now := t0.Add(time.Duration(i) * 100 * ms)
			seq, due := tick(a, now)
			if !due {
				t.Fatalf("no echo due at %s", now.Sub(t0))
			}
			if a.echoExpired(now) {
				t.Fatalf("session failed at %s with every echo answered", now.Sub(t0))
			}
			a.echoReply(seq)
		}
		if d := a.deadline(); d.IsZero() || d.After(t0.Add(5*time.Second)) {
			t.Errorf("deadline %s, want the next echo at 5s", d.Sub(t0))
		}
	})

	t.Run("silent peer", func(t *testing.T) {
		a, _ := up()
		var failedAt time.Duration
		for i := range 10 {
			now := t0.Add(time.Duration(i) * 100 * ms)
			tick(a, now)
			if a.echoExpired(now) {
				failedAt = now.Sub(t0)
				break
			}
		}
		if failedAt != 300*ms || a.state != Down || a.diag != DiagEchoFailed || a.downs != 1 {
			t.Errorf("failed at %s in %s (%s), want at 300ms in down (echo failed)", failedAt, a.state, a.diag)
		}
		if _, due := a.echoDue(t0.Add(time.Second)); due || len(a.unanswered) != 0 {
			t.Error("echoes continue after the session went down")
		}
	})

	t.Run("a late reply answers the older echoes", func(t *testing.T) {
		a, _ := up()
		tick(a, t0)
		tick(a, t0.Add(100*ms))
		seq, _ := tick(a, t0.Add(200*ms))
		a.echoReply(seq) // the first two were lost, or overtaken
		if len(a.unanswered) != 0 || a.echoExpired(t0.Add(300*ms)) {
			t.Errorf("%d unanswered after the newest was answered", len(a.unanswered))
		}
	})

	t.Run("held up caller", func(t *testing.T) {
		a, _ := up()
		seq, _ := tick(a, t0)
		// Held up for 2 s: the reply came in time and is applied first,
		// as Server.step drains the socket before it judges.
		a.echoReply(seq)
		now := t0.Add(2 * time.Second)
		if a.echoExpired(now) {
			t.Fatal("session failed after its caller was held up")
		}
		// One echo sent since, unanswered: too few to fail.
		tick(a, now)
		if a.echoExpired(now.Add(time.Second)) {
			t.Error("session failed on one unanswered echo")
		}
	})
}

// TestControlInterval checks that control packets slow to one second while
// the echo function detects failures (RFC 5880 §6.8.3), and keep the
// configured interval without it.
func TestControlInterval(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{Interval: 200 * ms, Multiplier: 3}, 200 * ms},
		{Config{Interval: 200 * ms, Multiplier: 3, Echo: 100 * ms}, time.Second},
		{Config{Interval: 2 * time.Second, Multiplier: 3, Echo: 100 * ms}, 2 * time.Second},
	} {
		s := testSession(addrB, 1, tt.cfg)
		if s.requiredMinRx != tt.want {
			t.Errorf("%+v: required min rx %s, want %s", tt.cfg, s.requiredMinRx, tt.want)
		}
		s.setState(Up, DiagNone, t0)
		if s.desiredMinTx != tt.want {
			t.Errorf("%+v: desired min tx once up %s, want %s", tt.cfg, s.desiredMinTx, tt.want)
		}
	}
}
