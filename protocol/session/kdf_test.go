package session

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

func TestChainKeyVector(t *testing.T) {
	data, err := os.ReadFile("testdata/libsignal-chain-key.json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	get := func(name string) []byte {
		b, err := hex.DecodeString(v[name])
		if err != nil || len(b) != 32 {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	}
	var ck [32]byte
	copy(ck[:], get("chain_key"))
	seed, next := chainStep(&ck)
	mk := deriveMessageKeys(&seed, nil)
	if !bytes.Equal(mk.cipher[:], get("cipher_key")) || !bytes.Equal(mk.mac[:], get("mac_key")) || !bytes.Equal(next[:], get("next_chain_key")) {
		t.Fatalf("chain step: cipher %x mac %x next %x", mk.cipher, mk.mac, next)
	}
}

// TestMACMatchesStandardLibrary checks the reusable-state MAC against crypto/hmac, also
// across key changes (the state is reused from message to message).
func TestMACMatchesStandardLibrary(t *testing.T) {
	var m macState
	for n := 0; n < 600; n += 37 {
		var key [32]byte
		for i := range key {
			key[i] = byte(n + i)
		}
		data := bytes.Repeat([]byte{byte(n + 1)}, n)
		var got [32]byte
		m.hmac(&got, &key, data[:n/2], data[n/2:])
		h := hmac.New(sha256.New, key[:])
		h.Write(data)
		if want := h.Sum(nil); !bytes.Equal(got[:], want) {
			t.Fatalf("%d bytes: %x want %x", n, got, want)
		}
	}
}
