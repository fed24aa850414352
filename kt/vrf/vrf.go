// Package vrf is ECVRF-EDWARDS25519-SHA512-TAI, the verifiable random
// function of RFC 9381 (section 5, suite 0x03), over filippo.io/edwards25519.
//
// Key transparency hides every label (a username, an account id) behind the
// VRF's output: the server, which holds the private key, maps a label to a
// pseudorandom index and proves to a client that asked for that label that
// the index is right, while the index alone tells nothing about the label.
//
// Verification always validates the key (RFC 9381 section 5.3 with
// validate_key = TRUE): ParsePublicKey rejects points of small order. Points
// are decoded strictly as RFC 8032 section 5.1.3 says (a non-canonical
// encoding is not a point), as RFC 9381 section 5.5 requires.
//
// Encoding to the curve is try-and-increment (section 5.4.1.1), whose
// running time depends on the input: proving and verifying leak, through
// timing, which attempt succeeded for alpha. That is no secret here (the
// prover knows every label and a verifier only the labels it asks for); the
// secret scalar and the nonce are only used in constant-time arithmetic.
//
// Keys are values, safe for concurrent use; the zero PrivateKey and
// PublicKey are not valid keys.
package vrf

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"io"
	"log/slog"

	"filippo.io/edwards25519"
)

// Sizes of the suite's encodings (RFC 9381 section 5.5).
const (
	SeedSize      = 32 // a private key is an Ed25519-style 32-byte seed
	PublicKeySize = 32 // an encoded edwards25519 point
	ProofSize     = 80 // Gamma (32), c (16), s (32)
	OutputSize    = 64 // beta, a SHA-512 digest
)

// The suite's constants (RFC 9381 section 5.5 for suite_string and cLen;
// sections 5.2, 5.4.1.1 and 5.4.3 for the domain separators).
const (
	suiteString = 0x03 // ECVRF-EDWARDS25519-SHA512-TAI

	challengeSize = 16 // cLen
	pointSize     = 32 // ptLen
	scalarSize    = 32 // qLen

	encodeToCurveFront = 0x01 // encode_to_curve_domain_separator_front
	challengeFront     = 0x02 // challenge_generation_domain_separator_front
	proofToHashFront   = 0x03 // proof_to_hash_domain_separator_front
	separatorBack      = 0x00 // the three functions' domain_separator_back
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
type PrivateKey struct {
	_ [0]func()

	seed [SeedSize]byte
	// x is the secret scalar: the clamped lower half of SHA-512(seed).
	x *edwards25519.Scalar
	// nonceKey is the upper half of SHA-512(seed), the
	// truncated_hashed_sk_string of section 5.4.2.2.
	nonceKey [32]byte
	pub      PublicKey
}

// PublicKey is a VRF public key.
type PublicKey struct {
	_ [0]func()

	point   *edwards25519.Point // nil in the zero PublicKey
	encoded [PublicKeySize]byte // PK_string, the encode_to_curve_salt
}

// NewKeyFromSeed derives the key from a SeedSize-byte seed as Ed25519 does
// (RFC 8032 section 5.1.5; RFC 9381 section 5.1 uses the same secret
// scalar and the hash's upper half as the nonce key).
func NewKeyFromSeed(seed []byte) (*PrivateKey, error) {
	if len(seed) != SeedSize {
		return nil, ErrInvalidKey
	}
	k := &PrivateKey{}
	copy(k.seed[:], seed)
	h := sha512.Sum512(seed)
	x, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic("vrf: clamping a 32-byte string failed: " + err.Error())
	}
	k.x = x
	copy(k.nonceKey[:], h[32:])
	clear(h[:])
	y := new(edwards25519.Point).ScalarBaseMult(x)
	k.pub.point = y
	copy(k.pub.encoded[:], y.Bytes())
	return k, nil
}

// GenerateKey makes a key from SeedSize bytes of rand (crypto/rand when
// rand is nil).
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	if rand == nil {
		rand = cryptoRand
	}
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, err
	}
	defer clear(seed[:])
	return NewKeyFromSeed(seed[:])
}

// cryptoRand is crypto/rand's reader (a name, to spare GenerateKey's
// parameter from shadowing the package).
var cryptoRand = rand.Reader

// Seed returns the key's seed, to store it.
func (k *PrivateKey) Seed() []byte {
	k.mustBeValid()
	return bytes.Clone(k.seed[:])
}

// Public returns the public key.
func (k *PrivateKey) Public() *PublicKey {
	k.mustBeValid()
	p := &PublicKey{point: new(edwards25519.Point).Set(k.pub.point), encoded: k.pub.encoded}
	return p
}

// String prints no key material.
func (k *PrivateKey) String() string { return "vrf.PrivateKey[redacted]" }

// LogValue prints no key material.
func (k *PrivateKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

var _ slog.LogValuer = (*PrivateKey)(nil)

func (k *PrivateKey) mustBeValid() {
	if k == nil || k.x == nil {
		panic("vrf: use of a zero PrivateKey")
	}
}

// Prove returns the VRF output for alpha and its proof (RFC 9381 sections
// 5.1 and 5.2).
func (k *PrivateKey) Prove(alpha []byte) (beta [OutputSize]byte, proof [ProofSize]byte) {
	k.mustBeValid()
	// Steps 2-4: H, h_string, Gamma.
	h, _ := encodeToCurve(k.pub.encoded[:], alpha)
	hString := h.Bytes()
	gamma := new(edwards25519.Point).ScalarMult(k.x, h)

	// Step 5: the nonce (section 5.4.2.2).
	nonce := k.nonce(hString)
	// Step 6: c = challenge(Y, H, Gamma, k*B, k*H).
	u := new(edwards25519.Point).ScalarBaseMult(nonce)
	v := new(edwards25519.Point).ScalarMult(nonce, h)
	c := challenge(k.pub.point, h, gamma, u, v)
	// Step 7: s = (k + c*x) mod q.
	cScalar := challengeScalar(&c)
	s := edwards25519.NewScalar().MultiplyAdd(cScalar, k.x, nonce)
	nonce.Set(edwards25519.NewScalar())

	// Step 8: pi = Gamma || c || s.
	copy(proof[:pointSize], gamma.Bytes())
	copy(proof[pointSize:pointSize+challengeSize], c[:])
	copy(proof[pointSize+challengeSize:], s.Bytes())
	return proofToHash(gamma), proof
}

// Hash returns the VRF output for alpha without making a proof, which
// spares the proof's two scalar multiplications.
func (k *PrivateKey) Hash(alpha []byte) [OutputSize]byte {
	k.mustBeValid()
	h, _ := encodeToCurve(k.pub.encoded[:], alpha)
	return proofToHash(new(edwards25519.Point).ScalarMult(k.x, h))
}

// nonce is ECVRF_nonce_generation_RFC8032 (section 5.4.2.2):
// SHA-512(upper half of SHA-512(SK) || h_string) mod q.
func (k *PrivateKey) nonce(hString []byte) *edwards25519.Scalar {
	d := sha512.New()
	d.Write(k.nonceKey[:])
	d.Write(hString)
	var sum [sha512.Size]byte
	d.Sum(sum[:0])
	n, err := edwards25519.NewScalar().SetUniformBytes(sum[:])
	if err != nil {
		panic("vrf: reducing a 64-byte string failed: " + err.Error())
	}
	clear(sum[:])
	return n
}

// ParsePublicKey parses a PublicKeySize-byte public key, rejecting points
// that do not decode and points of small order (RFC 9381 section 5.4.5).
func ParsePublicKey(b []byte) (*PublicKey, error) {
	y, ok := decodePoint(b)
	if !ok || hasSmallOrder(y) {
		return nil, ErrInvalidKey
	}
	p := &PublicKey{point: y}
	copy(p.encoded[:], b)
	return p, nil
}

// Bytes returns the key's encoding.
func (p *PublicKey) Bytes() []byte {
	if p == nil || p.point == nil {
		return nil
	}
	return bytes.Clone(p.encoded[:])
}

// Verify checks proof for alpha and returns the VRF output (RFC 9381
// section 5.3, with the full validation of section 5.4.5);
// ErrInvalidProof when it does not verify.
func (p *PublicKey) Verify(alpha, proof []byte) (beta [OutputSize]byte, err error) {
	// Steps 1-3 happened in ParsePublicKey.
	if p == nil || p.point == nil {
		return beta, ErrInvalidKey
	}
	// Steps 4-6: decode the proof (section 5.4.4).
	if len(proof) != ProofSize {
		return beta, ErrInvalidProof
	}
	gamma, ok := decodePoint(proof[:pointSize])
	if !ok {
		return beta, ErrInvalidProof
	}
	// Not in RFC 9381: a Gamma of small order is refused outright. An
	// honest Gamma is x*H, with H of prime order and x nonzero, so this
	// rejects no proof Prove makes; it keeps a proof whose output is the
	// hash of the identity from ever reaching the challenge check.
	if hasSmallOrder(gamma) {
		return beta, ErrInvalidProof
	}
	var c [challengeSize]byte
	copy(c[:], proof[pointSize:pointSize+challengeSize])
	s, err := edwards25519.NewScalar().SetCanonicalBytes(proof[pointSize+challengeSize:])
	if err != nil { // s >= q
		return beta, ErrInvalidProof
	}

	// Step 7: H.
	h, _ := encodeToCurve(p.encoded[:], alpha)
	// Steps 8-9: U = s*B - c*Y, V = s*H - c*Gamma.
	negC := edwards25519.NewScalar().Negate(challengeScalar(&c))
	u := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(negC, p.point, s)
	v := new(edwards25519.Point).VarTimeMultiScalarMult(
		[]*edwards25519.Scalar{s, negC}, []*edwards25519.Point{h, gamma})
	// Steps 10-11. c is public, so the comparison need not be constant
	// time.
	if challenge(p.point, h, gamma, u, v) != c {
		return beta, ErrInvalidProof
	}
	return proofToHash(gamma), nil
}

// encodeToCurve is ECVRF_encode_to_curve_try_and_increment (section
// 5.4.1.1) with encode_to_curve_salt = PK_string and
// interpret_hash_value_as_a_point(s) = string_to_point(s[0..31]) (section
// 5.5).
// It also returns the counter that succeeded, for the tests.
func encodeToCurve(salt, alpha []byte) (h *edwards25519.Point, ctr int) {
	d := sha512.New()
	var sum [sha512.Size]byte
	// Each attempt succeeds with probability about 1/2; the RFC's
	// int_to_string(ctr, 1) bounds the counter at 255, which is reached
	// with probability about 2^-256.
	for ctr = 0; ctr < 256; ctr++ {
		d.Reset()
		d.Write([]byte{suiteString, encodeToCurveFront})
		d.Write(salt)
		d.Write(alpha)
		d.Write([]byte{byte(ctr), separatorBack})
		d.Sum(sum[:0])
		h, ok := decodePoint(sum[:pointSize])
		if !ok {
			continue
		}
		h.MultByCofactor(h)
		if h.Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue
		}
		return h, ctr
	}
	panic("vrf: try-and-increment found no point in 256 attempts")
}

// challenge is ECVRF_challenge_generation (section 5.4.3): the first cLen
// bytes of SHA-512(suite || 0x02 || P1 || ... || P5 || 0x00).
func challenge(points ...*edwards25519.Point) [challengeSize]byte {
	d := sha512.New()
	d.Write([]byte{suiteString, challengeFront})
	var buf [pointSize]byte
	for _, p := range points {
		copy(buf[:], p.Bytes())
		d.Write(buf[:])
	}
	d.Write([]byte{separatorBack})
	var sum [sha512.Size]byte
	d.Sum(sum[:0])
	var c [challengeSize]byte
	copy(c[:], sum[:challengeSize])
	return c
}

// challengeScalar is string_to_int(c) as a scalar: c < 2^128 < q, so it
// needs no reduction.
func challengeScalar(c *[challengeSize]byte) *edwards25519.Scalar {
	var b [scalarSize]byte
	copy(b[:], c[:])
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("vrf: a 128-bit challenge is not a canonical scalar")
	}
	return s
}

// proofToHash is ECVRF_proof_to_hash's output for Gamma (section 5.2):
// SHA-512(suite || 0x03 || cofactor*Gamma || 0x00).
func proofToHash(gamma *edwards25519.Point) [OutputSize]byte {
	d := sha512.New()
	d.Write([]byte{suiteString, proofToHashFront})
	d.Write(new(edwards25519.Point).MultByCofactor(gamma).Bytes())
	d.Write([]byte{separatorBack})
	var beta [OutputSize]byte
	d.Sum(beta[:0])
	return beta
}

// decodePoint is string_to_point (RFC 8032 section 5.1.3). edwards25519's
// SetBytes also accepts non-canonical encodings (y >= p, or x = 0 with the
// sign bit set), which RFC 8032 rejects; re-encoding catches both, since the
// encoding of a point is unique.
func decodePoint(b []byte) (*edwards25519.Point, bool) {
	if len(b) != pointSize {
		return nil, false
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil || !bytes.Equal(p.Bytes(), b) {
		return nil, false
	}
	return p, true
}

// hasSmallOrder reports whether cofactor*p is the identity (section
// 5.4.5): p is one of the curve's eight points of order 1, 2, 4 or 8.
func hasSmallOrder(p *edwards25519.Point) bool {
	q := new(edwards25519.Point).MultByCofactor(p)
	return q.Equal(edwards25519.NewIdentityPoint()) == 1
}
