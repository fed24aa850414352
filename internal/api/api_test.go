package api

import (
	"strings"
	"testing"
)

func TestValidUsername(t *testing.T) {
	for _, ok := range []string{"abc", "alice", "a_1", "z" + strings.Repeat("9", 31)} {
		if !ValidUsername(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "ab", "Alice", "1abc", "_abc", "a-b", "a b", "abc\n", "é_abc", "a" + strings.Repeat("b", 32)} {
		if ValidUsername(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestUUID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		u := NewUUID()
		if !ValidUUID(u) || seen[u] {
			t.Fatalf("NewUUID %q invalid or repeated", u)
		}
		seen[u] = true
	}
	for _, bad := range []string{"", testID + "0", strings.ToUpper(testID), strings.ReplaceAll(testID, "-", ""),
		"0b7c2c1e-4d4f-1c2a-9e3b-6f1d2a3b4c5d" /* version 1 */, "0b7c2c1e-4d4f-4c2a-7e3b-6f1d2a3b4c5d" /* variant */} {
		if ValidUUID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLoginAndFrameSize(t *testing.T) {
	if got := Login(testAccount, 7); got != testAccount+".7" {
		t.Fatalf("Login: %q", got)
	}
	// An envelope of the largest content fits its frame size.
	e := validEnvelope()
	e.Content = make([]byte, 256<<10)
	e.SourceUsername = "a" + strings.Repeat("b", 31)
	b := mustJSON(Frame{Type: FrameEnvelope, Envelope: e})
	if len(b) > MaxFrameSize(256<<10) {
		t.Fatalf("frame of %d bytes over MaxFrameSize %d", len(b), MaxFrameSize(256<<10))
	}
	if ack := mustJSON(Frame{Type: FrameAck, ID: testID}); len(ack) > MaxClientFrameSize {
		t.Fatalf("ack of %d bytes over MaxClientFrameSize", len(ack))
	}
}
