package cbc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
)

// TestAgainstStdlib: the hand-made chaining equals crypto/cipher's, and
// decryption inverts it, for every padding length.
func TestAgainstStdlib(t *testing.T) {
	var key [KeySize]byte
	var iv [aes.BlockSize]byte
	for i := range key {
		key[i] = byte(i)
	}
	for i := range iv {
		iv[i] = byte(100 + i)
	}
	block, _ := aes.NewCipher(key[:])
	for n := range 70 {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		got := Encrypt([]byte("prefix"), &key, &iv, pt)
		pad := aes.BlockSize - n%aes.BlockSize
		want := append(append([]byte(nil), pt...), bytes.Repeat([]byte{byte(pad)}, pad)...)
		cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(want, want)
		if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("n=%d: Encrypt differs from crypto/cipher", n)
		}
		back, err := Decrypt(&key, &iv, got[6:])
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("n=%d: Decrypt = %v", n, err)
		}
	}
}

func TestBadPadding(t *testing.T) {
	var key [KeySize]byte
	var iv [aes.BlockSize]byte
	block, _ := aes.NewCipher(key[:])
	for name, last := range map[string][]byte{
		"zero pad":     append(bytes.Repeat([]byte{1}, 15), 0),
		"pad too long": append(bytes.Repeat([]byte{1}, 15), 17),
		"inconsistent": append(bytes.Repeat([]byte{1}, 14), 3, 2),
	} {
		ct := append([]byte(nil), last...)
		cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(ct, ct)
		if _, err := Decrypt(&key, &iv, ct); !errors.Is(err, ErrBadPadding) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, n := range []int{0, 15, 17} {
		if _, err := Decrypt(&key, &iv, make([]byte, n)); !errors.Is(err, ErrBadPadding) {
			t.Errorf("length %d: %v", n, err)
		}
	}
}
