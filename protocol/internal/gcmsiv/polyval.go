package gcmsiv

import "encoding/binary"

// POLYVAL (RFC 8452, section 3) works in GF(2^128) defined by
// x^128 + x^127 + x^126 + x^121 + 1, on 16-byte blocks read as little-endian
// polynomials: bit i of the block (byte i/8, bit i%8) is the coefficient of x^i.
// dot(a, b) = a·b·x^-128, and POLYVAL(H, X_1..X_n) is S_n with S_0 = 0 and
// S_j = dot(S_{j-1} ⊕ X_j, H).
//
// The multiplication is constant-time: no table lookups, no branches on data. It is
// the integer-multiplication technique with "holes" (each operand split into four
// masks that keep one bit in four, so the carries of an integer product land on bits
// that are masked off afterwards).

// fieldElement is a block as two little-endian 64-bit halves: lo holds x^0..x^63.
type fieldElement struct{ lo, hi uint64 }

func loadElement(b []byte) fieldElement {
	return fieldElement{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:16])}
}

func (e fieldElement) store(b []byte) {
	binary.LittleEndian.PutUint64(b[:8], e.lo)
	binary.LittleEndian.PutUint64(b[8:16], e.hi)
}

// Masks keeping one bit in four, at offsets 0 to 3.
const (
	m0 = 0x1111111111111111
	m1 = 0x2222222222222222
	m2 = 0x4444444444444444
	m3 = 0x8888888888888888
)

// clmulLow returns the low 64 bits of the carry-less product of x and y. Each masked
// operand has at most 16 set bits, so a coefficient of an integer product of two of them
// sums at most 16 terms, and only at bits 60 to 63, whose carries leave the word: below
// that every sum fits in the 4 bits up to the next bit of the same residue class, and
// its parity is the carry-less coefficient.
func clmulLow(x, y uint64) uint64 {
	x0, x1, x2, x3 := x&m0, x&m1, x&m2, x&m3
	y0, y1, y2, y3 := y&m0, y&m1, y&m2, y&m3
	z0 := x0*y0 ^ x1*y3 ^ x2*y2 ^ x3*y1
	z1 := x0*y1 ^ x1*y0 ^ x2*y3 ^ x3*y2
	z2 := x0*y2 ^ x1*y1 ^ x2*y0 ^ x3*y3
	z3 := x0*y3 ^ x1*y2 ^ x2*y1 ^ x3*y0
	return z0&m0 | z1&m1 | z2&m2 | z3&m3
}

// rev64 reverses the bits of x.
func rev64(x uint64) uint64 {
	x = x>>1&0x5555555555555555 | x&0x5555555555555555<<1
	x = x>>2&0x3333333333333333 | x&0x3333333333333333<<2
	x = x>>4&0x0f0f0f0f0f0f0f0f | x&0x0f0f0f0f0f0f0f0f<<4
	x = x>>8&0x00ff00ff00ff00ff | x&0x00ff00ff00ff00ff<<8
	x = x>>16&0x0000ffff0000ffff | x&0x0000ffff0000ffff<<16
	return x>>32 | x<<32
}

// clmul returns the 128-bit carry-less product of x and y. Reversing both operands
// reverses their 127-bit product, so the low word of the product of the reversed
// operands, reversed back, is bits 63 to 126 of the product.
func clmul(x, y uint64) (lo, hi uint64) {
	lo = clmulLow(x, y)
	hi = rev64(clmulLow(rev64(x), rev64(y))) >> 1
	return lo, hi
}

// dot returns a·b·x^-128 in POLYVAL's field.
func dot(a, b fieldElement) fieldElement {
	// Karatsuba: three 64×64 products make the 256-bit product c3:c2:c1:c0.
	l0, l1 := clmul(a.lo, b.lo)
	h0, h1 := clmul(a.hi, b.hi)
	m0, m1 := clmul(a.lo^a.hi, b.lo^b.hi)
	m0 ^= l0 ^ h0
	m1 ^= l1 ^ h1
	c0, c1, c2, c3 := l0, l1^m0, h0^m1, h1

	// Montgomery reduction by x^128, one word at a time. The polynomial is 1 modulo
	// x^64, so adding c0·P clears word 0; c0·P contributes c0·(x^121 + x^126 + x^127)
	// = c0·x^64·(x^57 + x^62 + x^63) to words 1 and 2 and c0·x^128 to word 2.
	c1 ^= c0<<57 ^ c0<<62 ^ c0<<63
	c2 ^= c0>>7 ^ c0>>2 ^ c0>>1 ^ c0
	// The same for the new word 1, one word higher.
	c2 ^= c1<<57 ^ c1<<62 ^ c1<<63
	c3 ^= c1>>7 ^ c1>>2 ^ c1>>1 ^ c1
	return fieldElement{c2, c3}
}

// polyval accumulates POLYVAL under the key h.
type polyval struct {
	h, s fieldElement
}

// update absorbs whole blocks; len(blocks) must be a multiple of 16.
func (p *polyval) update(blocks []byte) {
	for len(blocks) >= blockSize {
		x := loadElement(blocks)
		p.s = dot(fieldElement{p.s.lo ^ x.lo, p.s.hi ^ x.hi}, p.h)
		blocks = blocks[blockSize:]
	}
}

// updatePadded absorbs b, zero-padded to a whole number of blocks.
func (p *polyval) updatePadded(b []byte) {
	n := len(b) &^ (blockSize - 1)
	p.update(b[:n])
	if n < len(b) {
		var last [blockSize]byte
		copy(last[:], b[n:])
		p.update(last[:])
	}
}
