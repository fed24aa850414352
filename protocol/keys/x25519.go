package keys

import (
	"crypto/subtle"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// X25519 is written here over filippo.io/edwards25519's constant-time field arithmetic
// instead of using crypto/ecdh, for a measured reason (docs/benchmarks.md): crypto/ecdh
// computes a private key's public key eagerly with a full Montgomery ladder, so every
// ratchet key pair cost a ladder for its public key plus one per agreement. Here the
// public key comes from a fixed-base Edwards multiplication (about 2.5 times faster),
// mapped to the Montgomery u-coordinate; agreement is the RFC 7748 ladder. Both are
// checked against crypto/ecdh in the tests.

// x25519Public returns the X25519 public key of a clamped scalar: [scalar]B on the
// Edwards curve, mapped to Montgomery u = (1 + y) / (1 - y). Since B has prime order
// and the clamped scalar is a multiple of the cofactor, this equals X25519(scalar, 9).
func x25519Public(scalar *[32]byte) PublicKey {
	s, err := new(edwards25519.Scalar).SetBytesWithClamping(scalar[:])
	if err != nil {
		panic("keys: " + err.Error()) // only for a wrong length, which the type rules out
	}
	var out PublicKey
	copy(out[:], new(edwards25519.Point).ScalarBaseMult(s).BytesMontgomery())
	return out
}

// ladderConstant is (486662 + 2) / 4. RFC 7748 writes the ladder's last step as
// z2 = E·(AA + 121665·E); this code computes the same value as E·(BB + 121666·E),
// since AA = BB + E.
const ladderConstant = 121666

// x25519 sets out to X25519(scalar, u) (RFC 7748, section 5). The scalar must be clamped;
// the top bit of u is ignored and non-canonical u are reduced, as the RFC requires.
func x25519(out *[32]byte, scalar *[32]byte, u *[32]byte) {
	var x1, x2, z2, x3, z3, tmp0, tmp1 field.Element
	if _, err := x1.SetBytes(u[:]); err != nil {
		panic("keys: " + err.Error())
	}
	x2.One()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for pos := 254; pos >= 0; pos-- {
		b := int(scalar[pos/8]>>uint(pos&7)) & 1
		swap ^= b
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = b

		tmp0.Subtract(&x3, &z3)          // D = x3 - z3
		tmp1.Subtract(&x2, &z2)          // B = x2 - z2
		x2.Add(&x2, &z2)                 // A = x2 + z2
		z2.Add(&x3, &z3)                 // C = x3 + z3
		z3.Multiply(&tmp0, &x2)          // DA
		z2.Multiply(&z2, &tmp1)          // CB
		tmp0.Square(&tmp1)               // BB
		tmp1.Square(&x2)                 // AA
		x3.Add(&z3, &z2)                 // DA + CB
		z2.Subtract(&z3, &z2)            // DA - CB
		x2.Multiply(&tmp1, &tmp0)        // x2 = AA * BB
		tmp1.Subtract(&tmp1, &tmp0)      // E = AA - BB
		z2.Square(&z2)                   // (DA - CB)^2
		z3.Mult32(&tmp1, ladderConstant) // 121666 * E
		x3.Square(&x3)                   // x3 = (DA + CB)^2
		tmp0.Add(&tmp0, &z3)             // BB + 121666 * E
		z3.Multiply(&x1, &z2)            // z3 = x1 * (DA - CB)^2
		z2.Multiply(&tmp1, &tmp0)        // z2 = E * (BB + 121666 * E)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())
}

// isZero reports, in constant time, whether b is all zero.
func isZero(b *[32]byte) bool {
	var zero [32]byte
	return subtle.ConstantTimeCompare(b[:], zero[:]) == 1
}
