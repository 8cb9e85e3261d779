package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "zero",
			want: Config{
				Mode: ModeDownloads, Workers: 200, Path: "/10M", ReadSize: 16384, Pause: 500 * time.Millisecond, EarlyStop: 0.05,
				ReadTimeout: 3 * time.Second, StallThreshold: time.Second, ConnectTimeout: 3 * time.Second,
			},
		},
		{
			name: "set fields kept",
			in: Config{
				Workers: 3, Path: "/1M", ReadSize: 1, Pause: -1, EarlyStop: -1,
				ReadTimeout: time.Second, StallThreshold: time.Millisecond, ConnectTimeout: time.Minute, Seed: 7,
			},
			want: Config{
				Mode: ModeDownloads, Workers: 3, Path: "/1M", ReadSize: 1, Pause: -1, EarlyStop: -1,
				ReadTimeout: time.Second, StallThreshold: time.Millisecond, ConnectTimeout: time.Minute, Seed: 7,
			},
		},
		{
			name: "requests",
			in:   Config{Mode: ModeRequests},
			want: Config{
				Mode: ModeRequests, Workers: 10, Rate: 10, Path: "/", ReadSize: 16384, Pause: 500 * time.Millisecond,
				EarlyStop: 0.05, ReadTimeout: 3 * time.Second, StallThreshold: time.Second, ConnectTimeout: 3 * time.Second,
			},
		},
		{
			name: "requests set fields kept",
			in:   Config{Mode: ModeRequests, Workers: 2, Rate: 0.5, Path: "/1K", KeepAlive: true},
			want: Config{
				Mode: ModeRequests, Workers: 2, Rate: 0.5, KeepAlive: true, Path: "/1K", ReadSize: 16384, Pause: 500 * time.Millisecond,
				EarlyStop: 0.05, ReadTimeout: 3 * time.Second, StallThreshold: time.Second, ConnectTimeout: 3 * time.Second,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diff(t, "config", tt.in.WithDefaults(), tt.want, addrs)
		})
	}
}

func TestStartRejects(t *testing.T) {
	vip4 := netip.MustParseAddrPort("192.0.2.1:80")
	vip6 := netip.MustParseAddrPort("[2001:db8::1]:80")
	src4 := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	tests := []struct {
		name string
		cfg  Config
		errs []string // parts of the error, all present
	}{
		{name: "no target", cfg: Config{}, errs: []string{"no target"}},
		{name: "no port", cfg: Config{Targets: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}},
			errs: []string{"invalid target 192.0.2.1:0"}},
		{name: "no source of the family", cfg: Config{Targets: []netip.AddrPort{vip4, vip6}, Sources: src4},
			errs: []string{"target [2001:db8::1]:80: no IPv6 source"}},
		{name: "relative path", cfg: Config{Targets: []netip.AddrPort{vip4}, Path: "10M"},
			errs: []string{`path "10M"`}},
		{name: "stall above timeout", cfg: Config{Targets: []netip.AddrPort{vip4}, StallThreshold: 5 * time.Second},
			errs: []string{"stall threshold 5s"}},
		{name: "every problem", cfg: Config{Workers: -1, ReadSize: -1, EarlyStop: 1, ReadTimeout: -1},
			errs: []string{"no target", "workers -1", "read size -1", "early stop chance 1", "read timeout -1ns"}},
		{name: "rate of a download load", cfg: Config{Targets: []netip.AddrPort{vip4}, Rate: 5, KeepAlive: true},
			errs: []string{"a rate applies to a request load only", "keep-alive applies to a request load only"}},
		{name: "rate too high", cfg: Config{Mode: ModeRequests, Targets: []netip.AddrPort{vip4}, Rate: 5000},
			errs: []string{"rate 5000: want requests per second per worker"}},
		{name: "unknown mode", cfg: Config{Mode: "bursts", Targets: []netip.AddrPort{vip4}},
			errs: []string{`mode "bursts": want downloads or requests`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Start(context.Background(), tt.cfg, nil)
			if err == nil {
				r.Stop()
				t.Fatal("started, want an error")
			}
			for _, part := range tt.errs {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not contain %q", err, part)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	tests := []struct {
		name string
		err  error
		want Outcome
	}{
		{name: "reset", err: fmt.Errorf("read body: %w", op(syscall.ECONNRESET)), want: OutcomeReset},
		{name: "broken pipe", err: fmt.Errorf("send request: %w", op(syscall.EPIPE)), want: OutcomeReset},
		{name: "aborted", err: op(syscall.ECONNABORTED), want: OutcomeReset},
		{name: "refused", err: fmt.Errorf("connect: %w", op(syscall.ECONNREFUSED)), want: OutcomeRefused},
		{name: "read deadline", err: &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, want: OutcomeTimeout},
		{name: "context deadline", err: fmt.Errorf("connect: %w", context.DeadlineExceeded), want: OutcomeTimeout},
		{name: "kernel timeout", err: op(syscall.ETIMEDOUT), want: OutcomeTimeout},
		{name: "host unreachable", err: op(syscall.EHOSTUNREACH), want: OutcomeTimeout},
		{name: "net unreachable", err: op(syscall.ENETUNREACH), want: OutcomeError},
		{name: "no free port", err: fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}), want: OutcomeExhausted},
		{name: "port in use", err: fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}), want: OutcomeExhausted},
		{name: "truncated", err: fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), want: OutcomeError},
		{name: "other", err: errors.New("malformed HTTP response"), want: OutcomeError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}
