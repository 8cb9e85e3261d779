package bgp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

func TestSlogLogger(t *testing.T) {
	for _, tc := range []struct {
		name      string
		level     slog.Level
		log       func(gobgplog.Logger)
		want      string // Empty when nothing may be written.
		wantLevel gobgplog.LogLevel
	}{
		{
			name:  "info with sorted fields",
			level: slog.LevelInfo,
			log: func(l gobgplog.Logger) {
				l.Info("Peer Up", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.2", "State": 6})
			},
			want:      "level=INFO msg=\"Peer Up\" Key=10.0.0.2 State=6 Topic=Peer\n",
			wantLevel: gobgplog.InfoLevel,
		},
		{
			name:      "debug dropped at info",
			level:     slog.LevelInfo,
			log:       func(l gobgplog.Logger) { l.Debug("noise", nil) },
			wantLevel: gobgplog.InfoLevel,
		},
		{
			name:      "debug kept at debug",
			level:     slog.LevelDebug,
			log:       func(l gobgplog.Logger) { l.Debug("detail", gobgplog.Fields{"Topic": "Table"}) },
			want:      "level=DEBUG msg=detail Topic=Table\n",
			wantLevel: gobgplog.DebugLevel,
		},
		{
			name:      "warn at warn",
			level:     slog.LevelWarn,
			log:       func(l gobgplog.Logger) { l.Warn("careful", nil); l.Info("quiet", nil) },
			want:      "level=WARN msg=careful\n",
			wantLevel: gobgplog.WarnLevel,
		},
		{
			name:      "error only",
			level:     slog.LevelError,
			log:       func(l gobgplog.Logger) { l.Error("broken", nil) },
			want:      "level=ERROR msg=broken\n",
			wantLevel: gobgplog.ErrorLevel,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey && len(groups) == 0 {
						return slog.Attr{}
					}
					return a
				},
			})
			l := slogLogger{log: slog.New(h)}
			tc.log(l)
			if got := buf.String(); got != tc.want {
				t.Errorf("output = %q, want %q", got, tc.want)
			}
			if got := l.GetLevel(); got != tc.wantLevel {
				t.Errorf("GetLevel() = %v, want %v", got, tc.wantLevel)
			}
		})
	}
}

func TestSlogLoggerPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(gobgplog.Logger)
	}{
		{name: "panic", call: func(l gobgplog.Logger) { l.Panic("code logic bug", nil) }},
		{name: "fatal", call: func(l gobgplog.Logger) { l.Fatal("unknown msg type", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("no panic")
				}
				if !strings.Contains(buf.String(), "level=ERROR") {
					t.Errorf("output = %q, want an error line", buf.String())
				}
			}()
			tc.call(slogLogger{log: slog.New(slog.NewTextHandler(&buf, nil))})
		})
	}
}
