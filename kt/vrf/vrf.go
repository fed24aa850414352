// Package vrf is ECVRF-EDWARDS25519-SHA512-TAI, the verifiable random
// function of RFC 9381 (section 5, suite 0x03), over filippo.io/edwards25519.
//
// Key transparency hides every label (a username, an account id) behind the
// VRF's output: the server, which holds the private key, maps a label to a
// pseudorandom index and proves to a client that asked for that label that
// the index is right, while the index alone tells nothing about the label.
//
// Keys are values, safe for concurrent use; the zero PrivateKey and
// PublicKey are not valid keys.
package vrf

import (
	"errors"
	"io"
)

// Sizes of the suite's encodings (RFC 9381 section 5.5).
const (
	SeedSize      = 32 // a private key is an Ed25519-style 32-byte seed
	PublicKeySize = 32 // an encoded edwards25519 point
	ProofSize     = 80 // Gamma (32), c (16), s (32)
	OutputSize    = 64 // beta, a SHA-512 digest
)

// Sentinel errors.
var (
	// ErrInvalidProof: the proof is malformed or does not verify for this
	// key and input.
	ErrInvalidProof = errors.New("vrf: invalid proof")
	// ErrInvalidKey: the bytes are not a valid public key (not a point,
	// or a point of small order), or a seed of the wrong size.
	ErrInvalidKey = errors.New("vrf: invalid key")
)

// PrivateKey is a VRF private key.
type PrivateKey struct{ _ [0]func() }

// PublicKey is a VRF public key.
type PublicKey struct{ _ [0]func() }

// NewKeyFromSeed derives the key from a SeedSize-byte seed as Ed25519 does
// (RFC 8032 section 5.1.5; RFC 9381 section 5.1 uses the same secret
// scalar and the hash's upper half as the nonce key).
func NewKeyFromSeed(seed []byte) (*PrivateKey, error) { panic("vrf: not implemented") }

// GenerateKey makes a key from SeedSize bytes of rand.
func GenerateKey(rand io.Reader) (*PrivateKey, error) { panic("vrf: not implemented") }

// Seed returns the key's seed, to store it.
func (k *PrivateKey) Seed() []byte { panic("vrf: not implemented") }

// Public returns the public key.
func (k *PrivateKey) Public() *PublicKey { panic("vrf: not implemented") }

// Prove returns the VRF output for alpha and its proof (RFC 9381 sections
// 5.1 and 5.2).
func (k *PrivateKey) Prove(alpha []byte) (beta [OutputSize]byte, proof [ProofSize]byte) {
	panic("vrf: not implemented")
}

// Hash returns the VRF output for alpha without making a proof, which
// spares the proof's two scalar multiplications.
func (k *PrivateKey) Hash(alpha []byte) [OutputSize]byte { panic("vrf: not implemented") }

// ParsePublicKey parses a PublicKeySize-byte public key, rejecting points
// that do not decode and points of small order (RFC 9381 section 5.4.5).
func ParsePublicKey(b []byte) (*PublicKey, error) { panic("vrf: not implemented") }

// Bytes returns the key's encoding.
func (p *PublicKey) Bytes() []byte { panic("vrf: not implemented") }

// Verify checks proof for alpha and returns the VRF output (RFC 9381
// section 5.3, with the full validation of section 5.4.5);
// ErrInvalidProof when it does not verify.
func (p *PublicKey) Verify(alpha, proof []byte) (beta [OutputSize]byte, err error) {
	panic("vrf: not implemented")
}
