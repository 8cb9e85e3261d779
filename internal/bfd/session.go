package bfd

import (
	"math/rand/v2"
	"net/netip"
	"time"
)

// Config is a session's local parameters.
type Config struct {
	// Interval is bfd.DesiredMinTxInterval once Up and always
	// bfd.RequiredMinRxInterval (one second at least with Echo); zero
	// means 300 ms.
	Interval time.Duration
	// Multiplier is bfd.DetectMult, 1 to 255; zero means 3. It counts
	// echoes too.
	Multiplier int
	// Echo is the interval of the echo function (see echo.go), zero for
	// none: while the session is Up, an ICMP echo request goes to the peer
	// every Echo, and the session goes Down (DiagEchoFailed) once
	// Multiplier of them, the oldest sent Multiplier x Echo ago, are
	// unanswered.
	Echo time.Duration
}

// withDefaults fills the zero fields of c and clamps the others to what the
// wire can carry.
func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 300 * time.Millisecond
	}
	c.Interval = max(c.Interval, time.Microsecond)
	if c.Multiplier <= 0 {
		c.Multiplier = 3
	}
	c.Multiplier = min(c.Multiplier, 255)
	return c
}

// controlInterval is the interval of control packets: Interval, and at
// least one second with the echo function, which then detects failures
// (RFC 5880 §6.8.3: control traffic at a negligible level).
func (c Config) controlInterval() time.Duration {
	if c.Echo > 0 {
		return max(c.Interval, slowTx)
	}
	return c.Interval
}

// slowTx is bfd.DesiredMinTxInterval while a session is not Up (RFC 5880
// §6.8.3 asks for at least one second).
const slowTx = time.Second

// Session is a session as Sessions and the change callback report it.
type Session struct {
	Peer        netip.Addr    `json:"peer"`
	State       State         `json:"state"`
	Diag        Diag          `json:"diag,omitempty"` // why it last left Up
	Since       time.Time     `json:"since"`          // last state change
	Downs       int           `json:"downs"`          // times it left Up
	TxInterval  time.Duration `json:"tx_interval"`    // before jitter
	DetectTime  time.Duration `json:"detect_time"`    // 0 until the peer is heard
	Echo        time.Duration `json:"echo,omitempty"` // echo interval, 0 without
	LocalDiscr  uint32        `json:"local_discr"`
	RemoteDiscr uint32        `json:"remote_discr"`
}

// Failed says the session was Up and is not any more: the peer went silent or
// said it went down. A session that never came up has not failed (the caller
// then relies on its other signals, BGP).
func (s Session) Failed() bool { return s.Downs > 0 && s.State != Up }

// session is the state machine of RFC 5880 §6.8 for one peer, in asynchronous
// mode without authentication. It does no I/O and reads no clock: the caller
// passes the time in, sends what packet returns and calls expired by
// deadline.
type session struct {
	cfg  Config
	peer netip.Addr

	localDiscr, remoteDiscr uint32
	state, remoteState      State
	diag                    Diag

	desiredMinTx  time.Duration // as sent
	activeMinTx   time.Duration // as used to send: lags an increase until the poll ends
	requiredMinRx time.Duration
	remoteMinTx   time.Duration
	remoteMinRx   time.Duration
	remoteMult    uint8

	lastRx  time.Time
	nextTx  time.Time // zero: no periodic transmission
	polling bool

	since      time.Time
	downs      int
	sendFailed bool // a send error was logged in this state

	// The echo function, while Up: the next echo is due at nextEcho
	// (zero: none) with sequence number echoSeq; unanswered holds the
	// echoes sent and not answered, oldest first.
	nextEcho   time.Time
	echoSeq    uint16
	unanswered []pendingEcho

	rand func() float64 // in [0, 1), for the jitter
}

func newSession(peer netip.Addr, discr uint32, cfg Config, now time.Time) *session {
	cfg = cfg.withDefaults()
	return &session{
		cfg:           cfg,
		peer:          peer,
		localDiscr:    discr,
		state:         Down,
		remoteState:   Down,
		desiredMinTx:  slowTx,
		activeMinTx:   slowTx,
		requiredMinRx: cfg.controlInterval(),
		remoteMinRx:   time.Microsecond, // RFC 5880 §6.8.1
		nextTx:        now,
		since:         now,
		rand:          rand.Float64,
	}
}

// txInterval is the transmission interval before jitter (RFC 5880 §6.8.7).
func (s *session) txInterval() time.Duration { return max(s.activeMinTx, s.remoteMinRx) }

// detectTime is the detection time of RFC 5880 §6.8.4 (asynchronous mode), or
// zero while the peer has not been heard.
func (s *session) detectTime() time.Duration {
	return time.Duration(s.remoteMult) * max(s.requiredMinRx, s.remoteMinTx)
}

// receive applies a packet from the peer that passed Parse and matched this
// session (RFC 5880 §6.8.6). changed says the state changed; reply says the
// packet was a poll, to be answered at once with final.
func (s *session) receive(p Packet, now time.Time) (changed, reply bool) {
	s.lastRx = now
	s.remoteDiscr = p.MyDiscr
	s.remoteState = p.State
	s.remoteMinTx = p.DesiredMinTx
	s.remoteMinRx = p.RequiredMinRx
	s.remoteMult = p.DetectMult
	if p.Final && s.polling {
		s.polling = false
		s.activeMinTx = s.desiredMinTx
	}

	old := s.state
	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.setState(Down, DiagNeighborDown, now)
		}
	case s.state == Down:
		switch p.State {
		case Down:
			s.setState(Init, DiagNone, now)
		case Init:
			s.setState(Up, DiagNone, now)
		}
	case s.state == Init:
		if p.State == Init || p.State == Up {
			s.setState(Up, DiagNone, now)
		}
	case s.state == Up:
		if p.State == Down {
			s.setState(Down, DiagNeighborDown, now)
		}
	}
	s.reschedule(now)
	return s.state != old, p.Poll
}

// setState moves to st, sending at once; diag, unless DiagNone, replaces the
// diagnostic. Entering Up lowers the transmission interval to the control
// interval and starts a poll sequence, and the echo function; leaving it
// goes back to one second, which needs no poll (RFC 5880 §6.8.3).
func (s *session) setState(st State, diag Diag, now time.Time) {
	if s.state == Up {
		s.downs++
		s.desiredMinTx, s.activeMinTx = slowTx, slowTx
		s.polling = false
	}
	if st == Up {
		s.desiredMinTx = s.cfg.controlInterval()
		s.activeMinTx = min(s.activeMinTx, s.desiredMinTx) // an increase waits for the final
		s.polling = true
	}
	if diag != DiagNone {
		s.diag = diag
	}
	s.unanswered, s.nextEcho = s.unanswered[:0], time.Time{}
	if st == Up && s.cfg.Echo > 0 {
		s.nextEcho = now
	}
	s.state = st
	s.since = now
	s.sendFailed = false
	s.nextTx = now
}

// reschedule brings the next transmission forward when the interval shrank
// below the time left, and starts periodic transmission when the peer stops
// asking for none.
func (s *session) reschedule(now time.Time) {
	if s.remoteMinRx == 0 {
		return // left to packet, which stops it
	}
	if s.nextTx.IsZero() || s.nextTx.After(now.Add(s.txInterval())) {
		s.nextTx = now
	}
}

// expired applies the detection timer: when the peer has been silent for the
// detection time, it is forgotten and a session in Init or Up goes Down. It
// reports whether the state changed.
func (s *session) expired(now time.Time) bool {
	if s.remoteDiscr == 0 || now.Before(s.lastRx.Add(s.detectTime())) {
		return false
	}
	s.remoteDiscr = 0 // RFC 5880 §6.8.1
	s.remoteState = Down
	if s.state != Init && s.state != Up {
		return false
	}
	s.setState(Down, DiagDetectExpired, now)
	return true
}

// due says a periodic packet should be sent now.
func (s *session) due(now time.Time) bool {
	return !s.nextTx.IsZero() && !now.Before(s.nextTx)
}

// deadline is when the session next needs due, expired, echoDue or
// echoExpired checked: the earliest of the next transmission, the
// detection timer, the next echo and the echo detection time, zero for
// never.
func (s *session) deadline() time.Time {
	d := s.nextTx
	earlier := func(e time.Time) {
		if !e.IsZero() && (d.IsZero() || e.Before(d)) {
			d = e
		}
	}
	if s.remoteDiscr != 0 {
		earlier(s.lastRx.Add(s.detectTime()))
	}
	earlier(s.nextEcho)
	if len(s.unanswered) >= s.cfg.Multiplier { // fewer: the next echo comes first
		earlier(s.unanswered[0].at.Add(s.echoDetectTime()))
	}
	return d
}

// pendingEcho is an echo request sent and not answered yet.
type pendingEcho struct {
	seq uint16
	at  time.Time
}

// echoDetectTime is how long the oldest unanswered echo may wait.
func (s *session) echoDetectTime() time.Duration {
	return time.Duration(s.cfg.Multiplier) * s.cfg.Echo
}

// echoDue returns the sequence number of the echo request to send now, if
// one is due, and schedules the next one at the next multiple of Echo (in
// absolute time: the echoes of every session go together, and their
// sender wakes once for all). The caller sends it and then calls echoSent
// with the time the send returned.
func (s *session) echoDue(now time.Time) (seq uint16, due bool) {
	if s.nextEcho.IsZero() || now.Before(s.nextEcho) {
		return 0, false
	}
	s.echoSeq++
	s.nextEcho = now.Truncate(s.cfg.Echo).Add(s.cfg.Echo)
	return s.echoSeq, true
}

// echoSent records that echo seq left at at.
func (s *session) echoSent(seq uint16, at time.Time) {
	if s.state == Up && s.cfg.Echo > 0 {
		s.unanswered = append(s.unanswered, pendingEcho{seq, at})
	}
}

// echoReply applies the reply to echo seq: it and every older echo are
// answered (the peer's kernel is there; replies overtaking each other do
// not matter).
func (s *session) echoReply(seq uint16) {
	for i, e := range s.unanswered {
		if e.seq == seq {
			s.unanswered = append(s.unanswered[:0], s.unanswered[i+1:]...)
			return
		}
	}
}

// echoExpired applies the echo detection: Multiplier echoes unanswered,
// the oldest sent the echo detection time ago, take the session Down. The
// caller must first have applied every reply it has received (see
// Server.step): it judges by what came back, not by when it looked, so
// that a caller held up (a busy machine) fails no session that answered.
// It reports whether the state changed.
func (s *session) echoExpired(now time.Time) bool {
	if s.state != Up || len(s.unanswered) < s.cfg.Multiplier ||
		now.Before(s.unanswered[0].at.Add(s.echoDetectTime())) {
		return false
	}
	s.setState(Down, DiagEchoFailed, now)
	return true
}

// control is the packet describing the session.
func (s *session) control() Packet {
	return Packet{
		Diag:          s.diag,
		State:         s.state,
		DetectMult:    uint8(s.cfg.Multiplier),
		MyDiscr:       s.localDiscr,
		YourDiscr:     s.remoteDiscr,
		DesiredMinTx:  s.desiredMinTx,
		RequiredMinRx: s.requiredMinRx,
	}
}

// packet returns the periodic packet to send now, polling during a poll
// sequence, and schedules the next one a jittered interval later (RFC 5880
// §6.8.7), or never while the peer asks for no packets.
func (s *session) packet(now time.Time) Packet {
	p := s.control()
	p.Poll = s.polling
	s.nextTx = time.Time{}
	if s.remoteMinRx != 0 {
		s.nextTx = now.Add(s.jitter(s.txInterval()))
	}
	return p
}

// final returns the answer to a poll, which leaves the schedule alone.
func (s *session) final() Packet {
	p := s.control()
	p.Final = true
	return p
}

// jitter reduces iv by a random 0 to 25 %, or 10 to 25 % with a multiplier
// of 1 (RFC 5880 §6.8.7).
func (s *session) jitter(iv time.Duration) time.Duration {
	lo := 0.0
	if s.cfg.Multiplier == 1 {
		lo = 0.10
	}
	return iv - time.Duration(float64(iv)*(lo+(0.25-lo)*s.rand()))
}

// snapshot reports the session.
func (s *session) snapshot() Session {
	return Session{
		Peer:        s.peer,
		State:       s.state,
		Diag:        s.diag,
		Since:       s.since,
		Downs:       s.downs,
		TxInterval:  s.txInterval(),
		DetectTime:  s.detectTime(),
		Echo:        s.cfg.Echo,
		LocalDiscr:  s.localDiscr,
		RemoteDiscr: s.remoteDiscr,
	}
}
