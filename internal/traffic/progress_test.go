package traffic

import (
	"testing"
	"time"
)

func TestProgressLastSecond(t *testing.T) {
	seconds := []Second{{Started: 1}, {Started: 2, OK: 1}, {Broken: 3}}
	cases := []struct {
		name    string
		elapsed time.Duration
		seconds []Second
		want    Second
		wantOK  bool
	}{
		{name: "first second", elapsed: 900 * time.Millisecond, seconds: seconds[:1]},
		{name: "second second", elapsed: 1500 * time.Millisecond, seconds: seconds[:2], want: seconds[0], wantOK: true},
		{name: "exact boundary", elapsed: 2 * time.Second, seconds: seconds, want: seconds[1], wantOK: true},
		{name: "last entry is in progress", elapsed: 2900 * time.Millisecond, seconds: seconds, want: seconds[1], wantOK: true},
		{name: "quiet seconds have no entry", elapsed: 5 * time.Second, seconds: seconds, want: Second{}, wantOK: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Progress{Elapsed: tc.elapsed, Seconds: tc.seconds}
			got, ok := p.LastSecond()
			if ok != tc.wantOK {
				t.Errorf("ok = %t, want %t", ok, tc.wantOK)
			}
			diff(t, "last second", got, tc.want)
		})
	}
}
