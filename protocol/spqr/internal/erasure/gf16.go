package erasure

import "sync"

// Arithmetic in GF(2¹⁶) = GF(2)[x]/(p(x)), elements stored as uint16 bit
// vectors (bit i is the coefficient of xⁱ). All data handled here (public
// keys and ciphertexts sent in the clear) is public, so table lookups are
// acceptable.

// poly is p(x) = x¹⁶ + x¹² + x³ + x + 1, spqr src/encoding/gf.rs POLY
// (0x1100b, from Plank's table of primitive polynomials). Because p is
// primitive, x (the element 2) generates the multiplicative group.
const poly = 0x1100b

// groupOrder is the order of GF(2¹⁶)*, 2¹⁶ − 1.
const groupOrder = 1<<16 - 1

// gfTables holds discrete logarithms to base x and their inverse.
type gfTables struct {
	exp [2 * groupOrder]uint16 // exp[i] = xⁱ, doubled to skip a reduction mod groupOrder
	log [1 << 16]uint16        // log[xⁱ] = i; log[0] is unused
}

// tables is built on first use (≈ 390 KiB), so that programs which never
// decode SPQR chunks do not pay for it.
var tables = sync.OnceValue(func() *gfTables {
	t := new(gfTables)
	v := uint32(1)
	for i := range groupOrder {
		t.exp[i] = uint16(v)
		t.exp[i+groupOrder] = uint16(v)
		t.log[v] = uint16(i)
		v <<= 1
		if v&(1<<16) != 0 {
			v ^= poly
		}
	}
	return t
})

func (t *gfTables) mul(a, b uint16) uint16 {
	if a == 0 || b == 0 {
		return 0
	}
	return t.exp[int(t.log[a])+int(t.log[b])]
}

// div returns a/b for b ≠ 0. Like the crate's a·b^(2¹⁶−2), it returns 0
// for b = 0; callers never divide by zero.
func (t *gfTables) div(a, b uint16) uint16 {
	if a == 0 || b == 0 {
		return 0
	}
	return t.exp[int(t.log[a])+groupOrder-int(t.log[b])]
}

// mulBy multiplies by a fixed element c with four 16-entry tables, one per
// nibble of the other factor: c·a = t[0][a&15] ⊕ t[1][a>>4&15] ⊕ t[2][a>>8&15]
// ⊕ t[3][a>>12]. Its 128 bytes stay in L1 cache, unlike the log tables, which
// makes it the faster choice for loops that multiply by one value.
type mulBy [4][16]uint16

func newMulBy(c uint16) *mulBy {
	var m mulBy
	e := c // c·x^(4k+b)
	for k := range m {
		for b := range 4 {
			bit := 1 << b
			for j := bit; j < 2*bit; j++ { // the entries whose top bit is b
				m[k][j] = m[k][j-bit] ^ e
			}
			e = mulX(e)
		}
	}
	return &m
}

// mulX returns a·x.
func mulX(a uint16) uint16 {
	return a<<1 ^ -(a>>15)&(poly&0xffff)
}

func (m *mulBy) mul(a uint16) uint16 {
	return m[0][a&15] ^ m[1][a>>4&15] ^ m[2][a>>8&15] ^ m[3][a>>12]
}
