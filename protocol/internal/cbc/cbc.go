// Package cbc is AES-256-CBC with PKCS#7 padding, as Signal's message
// ciphers use it (the Double Ratchet's SignalMessage and the sender-key
// SenderKeyMessage). The chaining is done here rather than with
// cipher.NewCBCEncrypter/Decrypter, which allocate: this is on the path of
// every message.
//
// The functions are pure and safe for concurrent use.
package cbc

import (
	"crypto/aes"
	"crypto/subtle"
	"errors"
)

// KeySize is the AES-256 key size.
const KeySize = 32

// ErrBadPadding is returned by Decrypt for input that is not a padded CBC
// ciphertext.
var ErrBadPadding = errors.New("bad padding")

// Encrypt appends the encryption of plaintext under key and iv, padded with
// PKCS#7, to dst.
func Encrypt(dst []byte, key *[KeySize]byte, iv *[aes.BlockSize]byte, plaintext []byte) []byte {
	block, _ := aes.NewCipher(key[:]) // a 32-byte key cannot fail
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	start := len(dst)
	dst = append(dst, plaintext...)
	for range pad {
		dst = append(dst, byte(pad))
	}
	prev := iv[:]
	for b := dst[start:]; len(b) > 0; b = b[aes.BlockSize:] {
		subtle.XORBytes(b[:aes.BlockSize], b[:aes.BlockSize], prev)
		block.Encrypt(b[:aes.BlockSize], b[:aes.BlockSize])
		prev = b[:aes.BlockSize]
	}
	return dst
}

// Decrypt reverses Encrypt into a new slice. Callers check the message's MAC
// or signature first, so the padding check is no oracle to an outsider; it
// is constant-time all the same.
func Decrypt(key *[KeySize]byte, iv *[aes.BlockSize]byte, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, ErrBadPadding
	}
	block, _ := aes.NewCipher(key[:])
	out := make([]byte, len(ciphertext))
	prev := iv[:]
	for i := 0; i < len(ciphertext); i += aes.BlockSize {
		block.Decrypt(out[i:i+aes.BlockSize], ciphertext[i:i+aes.BlockSize])
		subtle.XORBytes(out[i:i+aes.BlockSize], out[i:i+aes.BlockSize], prev)
		prev = ciphertext[i : i+aes.BlockSize]
	}
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, ErrBadPadding
	}
	good := 1
	for _, b := range out[len(out)-pad:] {
		good &= subtle.ConstantTimeByteEq(b, byte(pad))
	}
	if good != 1 {
		return nil, ErrBadPadding
	}
	return out[:len(out)-pad], nil
}
