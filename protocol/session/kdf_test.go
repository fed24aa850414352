package session

import (
	"bytes"
	"crypto/hkdf"
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
	var k kdf
	seed, next := k.chainStep(&ck)
	mk := k.messageKeys(&seed, nil)
	if !bytes.Equal(mk.cipher[:], get("cipher_key")) || !bytes.Equal(mk.mac[:], get("mac_key")) || !bytes.Equal(next[:], get("next_chain_key")) {
		t.Fatalf("chain step: cipher %x mac %x next %x", mk.cipher, mk.mac, next)
	}
}

// TestKDFMatchesStandardLibrary checks the allocation-free HMAC and HKDF against
// crypto/hmac and crypto/hkdf.
func TestKDFMatchesStandardLibrary(t *testing.T) {
	var k kdf
	for n := 0; n < 200; n += 13 {
		key := bytes.Repeat([]byte{byte(n)}, n%65)
		data := bytes.Repeat([]byte{byte(n + 1)}, n)
		var got [32]byte
		k.hmac(&got, key, data[:n/2], data[n/2:])
		m := hmac.New(sha256.New, key)
		m.Write(data)
		if want := m.Sum(nil); !bytes.Equal(got[:], want) {
			t.Fatalf("hmac with %d-byte key, %d bytes: %x want %x", len(key), n, got, want)
		}
		for _, size := range []int{32, 64, 80, 96} {
			out := make([]byte, size)
			var salt []byte
			if n%2 == 1 {
				salt = key
			}
			k.hkdf(out, salt, data, "label")
			want, err := hkdf.Key(sha256.New, data, salt, "label", size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("hkdf %d bytes: %x want %x", size, out, want)
			}
		}
	}
}
