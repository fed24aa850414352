package spqr

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestHKDF64MatchesCryptoHKDF(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for n := range 96 {
		var ikm [keySize]byte
		for i := range ikm {
			ikm[i] = byte(r.Uint32())
		}
		info := make([]byte, n)
		for i := range info {
			info[i] = byte(r.Uint32())
		}
		got := hkdf64(&ikm, info)
		if want := hkdfSHA256(zeroSalt, ikm[:], string(info), 64); !bytes.Equal(got[:], want) {
			t.Fatalf("info length %d: hkdf64 differs from crypto/hkdf", n)
		}
	}
}
