package cli

import "testing"

func TestWebListenPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": false, "127.0.0.2:0": false, "[::1]:8080": false, "localhost:8080": false,
		"0.0.0.0:8080": true, ":8080": true, "[::]:80": true, "192.0.2.7:8080": true, "myhost:8080": true,
	} {
		got, err := webListenPublic(addr)
		if err != nil || got != want {
			t.Errorf("webListenPublic(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := webListenPublic("8080"); err == nil {
		t.Errorf("webListenPublic(8080): no error")
	}
}
