package store

import (
	"encoding/hex"
	"testing"
)

// TestSendKeys pins the send-id keys: databases hold them, so a change
// would let a send replayed after an upgrade through, and the two stores
// must agree on them. The values are those the stores computed before the
// keys moved here.
func TestSendKeys(t *testing.T) {
	const account, sendID = "7f9d0000-0000-4000-8000-000000000001", "0b1e0000-0000-4000-8000-000000000002"
	for name, c := range map[string]struct {
		got  []byte
		want string
	}{
		"SendKey":       {SendKey(account, 2, sendID), "ea1111683785ccfed4a593c4ef0b49f1cca5eadfc8219b049022d1fa13c7031e"},
		"SealedSendKey": {SealedSendKey(account, sendID), "ac16e97e68bc2c1a55ab6f43699528aeec22d8f0ad0eff9de229aa5879a4c04f"},
	} {
		if got := hex.EncodeToString(c.got); got != c.want {
			t.Errorf("%s = %s, want %s", name, got, c.want)
		}
	}
	if hex.EncodeToString(SendKey(account, 3, sendID)) == hex.EncodeToString(SendKey(account, 2, sendID)) {
		t.Error("SendKey ignores the source device")
	}
}
