package kdf

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

func random(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestHMACMatchesCryptoHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, keyLen := range []int{0, 1, 32, 64, 65, 100} {
		for n := 0; n <= MaxInput; n += 17 {
			key, msg := random(r, keyLen), random(r, n)
			got := HMAC(key, msg[:n/3], msg[n/3:])
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if want := m.Sum(nil); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d bytes, message %d bytes: %x, want %x", keyLen, n, got, want)
			}
		}
	}
}

func TestHKDFMatchesCryptoHKDF(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, saltLen := range []int{0, 32, 64} {
		for _, ikmLen := range []int{0, 32, 64, 192, MaxInput} {
			for _, infoLen := range []int{0, 14, 46, MaxInfo} {
				for _, outLen := range []int{32, 64, 80, 96, 100} {
					salt, ikm, info := random(r, saltLen), random(r, ikmLen), random(r, infoLen)
					out := make([]byte, outLen)
					HKDF(out, salt, ikm, info[:infoLen/2], info[infoLen/2:])
					want, err := hkdf.Key(sha256.New, ikm, salt, string(info), outLen)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out, want) {
						t.Fatalf("salt %d, ikm %d, info %d, out %d: differs from crypto/hkdf", saltLen, ikmLen, infoLen, outLen)
					}
				}
			}
		}
	}
}

func TestLimitsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"hmac input": func() { HMAC(nil, make([]byte, MaxInput+1)) },
		"hkdf info":  func() { HKDF(make([]byte, 32), nil, nil, make([]byte, MaxInfo+1)) },
		"hkdf out":   func() { HKDF(make([]byte, MaxOutput+1), nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s over the limit did not panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkHKDF80(b *testing.B) {
	salt, ikm, out := make([]byte, 32), make([]byte, 32), make([]byte, 80)
	b.ReportAllocs()
	for b.Loop() {
		HKDF(out, salt, ikm, []byte("WhisperMessageKeys"))
	}
}
