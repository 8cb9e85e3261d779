package agentcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// connTimeout bounds the whole exchange on one connection.
const connTimeout = 2 * time.Second

// Server answers agent-check connections from the file at Path.
type Server struct {
	// Path is the agent-check file, read anew for every connection.
	Path string
	// Log receives warnings about an unusable file; nil discards them.
	Log *slog.Logger

	mu      sync.Mutex
	lastErr string // the last file error logged as a warning
}

// Serve answers connections accepted on ln until ctx is done, then closes ln,
// waits for the connections in progress and returns nil. Serve owns ln: it
// closes it on return. Each connection gets the file's current line and is
// closed; when the file cannot be read or parsed, it is closed without an
// answer and a warning is logged (once per distinct error).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := s.logger()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept agent-check connection: %w", err)
			}
			// Anything else (out of file descriptors, say) may pass.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed, retrying", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		wg.Go(func() { s.answer(conn, log) })
	}
}

// answer sends the current line on conn and closes it.
func (s *Server) answer(conn net.Conn, log *slog.Logger) {
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(connTimeout)); err != nil {
		log.Debug("set agent-check deadline", "remote", conn.RemoteAddr(), "err", err)
		return
	}
	st, err := ReadFile(s.Path)
	s.noteFileError(err, log)
	if err != nil {
		return
	}
	if _, err := io.WriteString(conn, st.String()+"\n"); err != nil {
		log.Debug("send agent-check answer", "remote", conn.RemoteAddr(), "err", err)
		return
	}
	// Close our side first, then read whatever the peer sent (HAProxy's
	// agent-send) until it closes: closing a socket with unread data resets
	// the connection, which could discard the answer in flight.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(conn, maxFileSize))
		}
	}
}

// noteFileError logs a file error as a warning when it differs from the
// previous one, so that a broken file does not flood the log at every check,
// and logs recovery once.
func (s *Server) noteFileError(err error, log *slog.Logger) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.mu.Lock()
	changed := msg != s.lastErr
	s.lastErr = msg
	s.mu.Unlock()
	switch {
	case err != nil && changed:
		log.Warn("agent-check file unusable, not answering", "path", s.Path, "err", err)
	case err != nil:
		log.Debug("agent-check file still unusable, not answering", "path", s.Path, "err", err)
	case changed:
		log.Info("agent-check file usable again", "path", s.Path)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
