package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogLogger lets GoBGP log through a *slog.Logger. GoBGP's levels map to
// slog's; its own level setting is ignored because the slog handler
// decides what is written.
type slogLogger struct {
	log *slog.Logger
}

var _ gobgplog.Logger = slogLogger{}

func (l slogLogger) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}

// Panic logs at error level and panics, as GoBGP expects.
func (l slogLogger) Panic(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic(fmt.Sprintf("gobgp: %s", msg))
}

// Fatal logs at error level and panics: GoBGP calls it only on internal
// bugs, and a panic, unlike an exit, runs deferred cleanups.
func (l slogLogger) Fatal(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic(fmt.Sprintf("gobgp: %s", msg))
}

// Error logs at error level.
func (l slogLogger) Error(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

// Warn logs at warning level.
func (l slogLogger) Warn(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelWarn, msg, fields)
}

// Info logs at info level.
func (l slogLogger) Info(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelInfo, msg, fields)
}

// Debug logs at debug level.
func (l slogLogger) Debug(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelDebug, msg, fields)
}

// SetLevel does nothing: the slog handler owns the level.
func (l slogLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel reports the most verbose level the slog handler accepts, so
// that GoBGP skips building debug messages nobody reads.
func (l slogLogger) GetLevel() gobgplog.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return gobgplog.DebugLevel
	case l.log.Enabled(ctx, slog.LevelInfo):
		return gobgplog.InfoLevel
	case l.log.Enabled(ctx, slog.LevelWarn):
		return gobgplog.WarnLevel
	default:
		return gobgplog.ErrorLevel
	}
}
