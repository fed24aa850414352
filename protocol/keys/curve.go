// Package keys holds the key types of the Signal protocol as libsignal encodes them:
// Curve25519 key pairs with XEdDSA-style signatures, KEM key pairs (Kyber-1024 and
// ML-KEM-1024), identity keys, prekeys and registration ids.
//
// Every encoding here is byte-compatible with libsignal (the npm package
// @signalapp/libsignal-client 0.103): a public key is serialized as a type byte followed
// by the raw key, and signatures made by PrivateKey.Sign verify with libsignal's
// PublicKey.verify and the other way round.
//
// Values of these types are immutable once made and safe for concurrent use. The zero
// value of PublicKey is not a usable key; the zero value of the other types is invalid.
// Types that hold secret material print as [redacted].
package keys

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Curve25519 encodings, as libsignal-core's curve module defines them.
const (
	// TypeDJB is the type byte before a serialized Curve25519 public key
	// (libsignal KeyType::Djb).
	TypeDJB = 0x05
	// PublicKeySize is the size of a serialized public key: type byte and 32 bytes.
	PublicKeySize = 33
	// PrivateKeySize is the size of a serialized private key (no type byte).
	PrivateKeySize = 32
	// SignatureSize is the size of an XEdDSA signature.
	SignatureSize = 64
)

var (
	// ErrBadKeyType is returned for a serialized key whose type byte is unknown.
	ErrBadKeyType = errors.New("keys: unknown key type")
	// ErrBadKeyLength is returned for a key of the wrong length.
	ErrBadKeyLength = errors.New("keys: bad key length")
	// ErrInvalidAgreement is returned when a Diffie-Hellman agreement is all zero
	// (the peer's public key has small order).
	ErrInvalidAgreement = errors.New("keys: invalid key agreement")
	// ErrBadSignature is returned where a signature does not verify.
	ErrBadSignature = errors.New("keys: signature verification failed")
)

// PublicKey is a Curve25519 (Montgomery u-coordinate) public key.
type PublicKey [32]byte

// ParsePublicKey decodes a serialized public key: the type byte 0x05 and 32 bytes.
// Unlike libsignal, which logs and ignores trailing bytes, it rejects them.
func ParsePublicKey(b []byte) (PublicKey, error) {
	if len(b) == 0 {
		return PublicKey{}, ErrBadKeyLength
	}
	if b[0] != TypeDJB {
		return PublicKey{}, ErrBadKeyType
	}
	if len(b) != PublicKeySize {
		return PublicKey{}, ErrBadKeyLength
	}
	var k PublicKey
	copy(k[:], b[1:])
	return k, nil
}

// Bytes returns the serialized key: type byte and 32 bytes.
func (k PublicKey) Bytes() []byte {
	return k.AppendBytes(make([]byte, 0, PublicKeySize))
}

// AppendBytes appends the serialized key to b.
func (k PublicKey) AppendBytes(b []byte) []byte {
	return append(append(b, TypeDJB), k[:]...)
}

// Equal reports whether two keys are the same, in constant time.
func (k PublicKey) Equal(o PublicKey) bool {
	return subtle.ConstantTimeCompare(k[:], o[:]) == 1
}

// String returns the key in hex, for debugging; public keys are not secret.
func (k PublicKey) String() string { return fmt.Sprintf("%x", k[:]) }

// Verify reports whether sig is a valid XEdDSA signature by k over the concatenation of
// the message parts, exactly as libsignal's PublicKey.verifySignature decides.
func (k PublicKey) Verify(sig []byte, message ...[]byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	// Convert the Montgomery u-coordinate to an Edwards point whose sign is carried in
	// the top bit of the signature: y = (u-1)/(u+1). SetBytes ignores the top bit of u,
	// as curve25519-dalek does.
	A, ok := k.toEdwards(sig[63] >> 7)
	if !ok {
		return false
	}

	var sBytes [64]byte // zero-extended so that SetUniformBytes reduces s mod l
	copy(sBytes[:32], sig[32:])
	sBytes[31] &= 0x7f
	if sBytes[31]&0xe0 != 0 {
		return false
	}
	s, err := new(edwards25519.Scalar).SetUniformBytes(sBytes[:])
	if err != nil {
		return false
	}

	h := sha512.New()
	h.Write(sig[:32])
	h.Write(A.Bytes())
	for _, m := range message {
		h.Write(m)
	}
	var digest [64]byte
	hs, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))

	minusA := new(edwards25519.Point).Negate(A)
	R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(hs, minusA, s)
	return subtle.ConstantTimeCompare(R.Bytes(), sig[:32]) == 1
}

// PrivateKey is a clamped Curve25519 private key.
type PrivateKey struct {
	scalar [32]byte
	public PublicKey
}

// GeneratePrivateKey makes a new private key with randomness from r (crypto/rand when nil).
func GeneratePrivateKey(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	k := &PrivateKey{}
	// Read straight into the key: a local buffer would escape through io.ReadFull.
	if _, err := io.ReadFull(r, k.scalar[:]); err != nil {
		return nil, fmt.Errorf("keys: reading randomness: %w", err)
	}
	k.init()
	return k, nil
}

// NewPrivateKey decodes a 32-byte private key. Like libsignal, it clamps the scalar, so
// any 32 bytes make a key.
func NewPrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) != PrivateKeySize {
		return nil, ErrBadKeyLength
	}
	k := &PrivateKey{}
	copy(k.scalar[:], b)
	k.init()
	return k, nil
}

// init clamps the scalar (RFC 7748) and computes the public key.
func (k *PrivateKey) init() {
	k.scalar[0] &= 248
	k.scalar[31] &= 127
	k.scalar[31] |= 64
	k.public = x25519Public(&k.scalar)
}

// Bytes returns the 32-byte clamped private key. The caller must protect it.
func (k *PrivateKey) Bytes() []byte {
	b := k.scalar
	return b[:]
}

// PublicKey returns the matching public key.
func (k *PrivateKey) PublicKey() PublicKey { return k.public }

// Agree computes the X25519 shared secret with pub. An all-zero result (a peer key of
// small order) is rejected with ErrInvalidAgreement, as libsignal does.
func (k *PrivateKey) Agree(pub PublicKey) ([32]byte, error) {
	var out [32]byte
	u := [32]byte(pub)
	x25519(&out, &k.scalar, &u)
	if isZero(&out) {
		return [32]byte{}, ErrInvalidAgreement
	}
	return out, nil
}

// xeddsaHashPrefix starts the nonce hash: 0xFE followed by 31 bytes of 0xFF, the
// "hash1" prefix of the XEdDSA specification (section 2.3), as libsignal uses it.
var xeddsaHashPrefix = [32]byte{
	0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// Sign makes an XEdDSA signature over the concatenation of the message parts, with 64
// bytes of randomness from r (crypto/rand when nil). The Edwards public key's sign bit
// is carried in the top bit of the signature, as libsignal does.
func (k *PrivateKey) Sign(r io.Reader, message ...[]byte) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	var random [64]byte
	if _, err := io.ReadFull(r, random[:]); err != nil {
		return nil, fmt.Errorf("keys: reading randomness: %w", err)
	}
	a, err := new(edwards25519.Scalar).SetBytesWithClamping(k.scalar[:])
	if err != nil {
		return nil, err
	}
	A := new(edwards25519.Point).ScalarBaseMult(a).Bytes()
	signBit := A[31] & 0x80

	var digest [64]byte
	h := sha512.New()
	h.Write(xeddsaHashPrefix[:])
	h.Write(k.scalar[:])
	for _, m := range message {
		h.Write(m)
	}
	h.Write(random[:])
	rs, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))
	R := new(edwards25519.Point).ScalarBaseMult(rs).Bytes()

	h.Reset()
	h.Write(R)
	h.Write(A)
	for _, m := range message {
		h.Write(m)
	}
	hs, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))
	s := new(edwards25519.Scalar).MultiplyAdd(hs, a, rs)

	sig := make([]byte, 0, SignatureSize)
	sig = append(sig, R...)
	sig = append(sig, s.Bytes()...)
	sig[63] = sig[63]&0x7f | signBit
	return sig, nil
}

// String hides the key.
func (k *PrivateKey) String() string { return "[redacted]" }

// LogValue hides the key from slog.
func (k *PrivateKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// GoString hides the key from %#v.
func (k *PrivateKey) GoString() string { return "[redacted]" }

// KeyPair is a Curve25519 private key with its public key.
type KeyPair struct {
	Public  PublicKey
	Private *PrivateKey
}

// GenerateKeyPair makes a new key pair with randomness from r (crypto/rand when nil).
func GenerateKeyPair(r io.Reader) (KeyPair, error) {
	k, err := GeneratePrivateKey(r)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Public: k.PublicKey(), Private: k}, nil
}

// IsCanonical reports whether k is a canonical encoding of a point in the prime-order
// subgroup, the check libsignal makes on an incoming PQXDH base key.
func (k PublicKey) IsCanonical() bool {
	// Canonical u: the top bit clear and u < 2^255 - 19.
	if k[31]&0x80 != 0 {
		return false
	}
	if k[31] == 0x7f && k[0] >= 0xed {
		allFF := true
		for _, b := range k[1:31] {
			if b != 0xff {
				allFF = false
				break
			}
		}
		if allFF {
			return false
		}
	}
	// Torsion-free: map to Edwards with sign 0 and check l*P = identity.
	P, ok := k.toEdwards(0)
	return ok && isTorsionFree(P)
}

// toEdwards maps the Montgomery u-coordinate to the Edwards point with y = (u-1)/(u+1)
// and the given sign bit of x, as curve25519-dalek's MontgomeryPoint::to_edwards does:
// the top bit of u is ignored, and u = -1, which has no Edwards equivalent, or a y that
// is not on the curve is reported with false.
func (k PublicKey) toEdwards(sign byte) (*edwards25519.Point, bool) {
	var u, one, num, den, y field.Element
	if _, err := u.SetBytes(k[:]); err != nil {
		return nil, false
	}
	one.One()
	den.Add(&u, &one)
	if den.Equal(new(field.Element).Zero()) == 1 {
		return nil, false
	}
	num.Subtract(&u, &one)
	y.Multiply(&num, den.Invert(&den))
	var b [32]byte
	copy(b[:], y.Bytes())
	b[31] |= sign << 7
	P, err := new(edwards25519.Point).SetBytes(b[:])
	if err != nil {
		return nil, false
	}
	return P, true
}

// isTorsionFree reports whether l*P is the identity, l the prime order of the subgroup.
// P is public (a peer's key), so a variable-time multiplication is fine.
func isTorsionFree(P *edwards25519.Point) bool {
	// l*P = (l-1)*P + P; l-1 is a canonical scalar.
	Q := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(orderMinusOne, P, edwards25519.NewScalar())
	Q.Add(Q, P)
	return Q.Equal(edwards25519.NewIdentityPoint()) == 1
}

// orderMinusOne is l - 1, l = 2^252 + 27742317777372353535851937790883648493.
var orderMinusOne = func() *edwards25519.Scalar {
	b := [32]byte{
		0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(b[:])
	if err != nil {
		panic(err)
	}
	return s
}()
