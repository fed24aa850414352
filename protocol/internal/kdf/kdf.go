// Package kdf is HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) for the short inputs
// of the protocol's key schedules, computed without allocating: every input is copied
// into a stack buffer and hashed with sha256.Sum256, so nothing escapes to the heap.
// Inputs longer than MaxInput (a message body under a MAC, for example) need
// crypto/hmac instead.
//
// Both the Double Ratchet (package session) and SPQR (package spqr) derive their keys
// here. The functions are safe for concurrent use.
package kdf

import "crypto/sha256"

const (
	// MaxInput is the longest HMAC message (all parts together) HMAC accepts, and the
	// longest HKDF input key material. It covers the longest input of the protocol, the
	// PQXDH secret (32 bytes of 0xFF, four X25519 outputs and a KEM secret: 192 bytes).
	MaxInput = 256
	// MaxInfo is the longest HKDF info: one expand block hashes T(i-1), the info and a
	// counter byte.
	MaxInfo = MaxInput - sha256.Size - 1
	// MaxOutput is the longest HKDF output (255 blocks, RFC 5869 section 2.3).
	MaxOutput = 255 * sha256.Size
)

// HMAC returns HMAC-SHA256(key, parts...), the parts concatenated. A key longer than a
// block is hashed first, as RFC 2104 says. It panics if the parts are longer than
// MaxInput together: that is a programming error, as every caller's inputs are bounded.
func HMAC(key []byte, parts ...[]byte) [sha256.Size]byte {
	var k [sha256.BlockSize]byte
	if len(key) > sha256.BlockSize {
		h := sha256.Sum256(key)
		copy(k[:], h[:])
	} else {
		copy(k[:], key)
	}
	var inner [sha256.BlockSize + MaxInput]byte
	var outer [sha256.BlockSize + sha256.Size]byte
	for i, b := range k {
		inner[i], outer[i] = b^0x36, b^0x5c // ipad, opad
	}
	n := sha256.BlockSize
	for _, p := range parts {
		if len(p) > len(inner)-n {
			panic("kdf: HMAC input longer than MaxInput")
		}
		n += copy(inner[n:], p)
	}
	h := sha256.Sum256(inner[:n])
	copy(outer[sha256.BlockSize:], h[:])
	clear(inner[:n]) // only what was written; the rest is still zero
	clear(k[:])
	return sha256.Sum256(outer[:])
}

// HKDF fills out with HKDF-SHA256(salt, ikm, info), info being the concatenation of
// the parts. An empty salt stands for HashLen zero bytes, as RFC 5869 says. It panics
// if ikm is longer than MaxInput, the info than MaxInfo, or out than MaxOutput.
func HKDF(out []byte, salt, ikm []byte, info ...[]byte) {
	if len(out) > MaxOutput {
		panic("kdf: HKDF output longer than MaxOutput")
	}
	prk := HMAC(salt, ikm)
	// msg is T(i-1) ‖ info ‖ i; T(0) is empty.
	var msg [MaxInput]byte
	n := sha256.Size
	for _, p := range info {
		if len(p) > MaxInfo-(n-sha256.Size) {
			panic("kdf: HKDF info longer than MaxInfo")
		}
		n += copy(msg[n:], p)
	}
	start := sha256.Size // the first block has no T(i-1)
	for i := byte(1); len(out) > 0; i++ {
		msg[n] = i
		t := HMAC(prk[:], msg[start:n+1])
		out = out[copy(out, t[:]):]
		copy(msg[:sha256.Size], t[:])
		start = 0
	}
	clear(prk[:])
	clear(msg[:n+1])
}
