package incmlkem

// Arithmetic in ℤ_q and in the NTT domain of R_q = ℤ_q[X]/(X²⁵⁶+1), FIPS 203
// sections 2.3, 2.4 and 4.3. Every operation on secret values runs in time
// independent of those values: reductions use multiplications, shifts and
// masks, never data-dependent branches or divisions.

const (
	q = 3329 // FIPS 203, section 2.4: the ML-KEM modulus
	n = 256  // FIPS 203, section 2.4: the degree of the ring polynomial

	// Barrett reduction constants for inputs below 2²⁴ (> q²):
	// quotient ≈ (a * barrettMultiplier) >> barrettShift.
	barrettMultiplier = 5039 // ⌊2²⁴ / q⌋
	barrettShift      = 24

	zeta          = 17   // FIPS 203, section 4.3: a primitive 256-th root of unity modulo q
	nInverseTimes = 3303 // FIPS 203, Algorithm 10, line 14: 128⁻¹ mod q
)

// fieldElement is an element of ℤ_q, always fully reduced to [0, q).
type fieldElement uint16

// ringElement is a polynomial of R_q in coefficient form.
type ringElement [n]fieldElement

// nttElement is a polynomial of R_q in NTT form (FIPS 203, section 4.3).
type nttElement [n]fieldElement

// reduceOnce maps a value in [0, 2q) to [0, q).
func reduceOnce(a uint16) fieldElement {
	x := a - q
	// On underflow the top bit of x is set (2¹⁶ - q > 2¹⁵); add q back.
	x += (x >> 15) * q
	return fieldElement(x)
}

func fieldAdd(a, b fieldElement) fieldElement {
	return reduceOnce(uint16(a + b))
}

func fieldSub(a, b fieldElement) fieldElement {
	return reduceOnce(uint16(a - b + q))
}

// barrettReduce reduces a < 2²⁴ modulo q.
func barrettReduce(a uint32) fieldElement {
	quotient := uint32((uint64(a) * barrettMultiplier) >> barrettShift)
	return reduceOnce(uint16(a - quotient*q))
}

func fieldMul(a, b fieldElement) fieldElement {
	return barrettReduce(uint32(a) * uint32(b))
}

// compress implements Compress_d (FIPS 203, equation 4.7): round(2ᵈ·x/q) mod 2ᵈ.
func compress(x fieldElement, d uint) uint16 {
	// Since q is odd, 2ᵈ·x/q is never exactly halfway between two integers,
	// so rounding is ⌊(2ᵈ·x + ⌊q/2⌋) / q⌋. The dividend is below 2²³ for
	// d ≤ 11, where ⌊dividend·divMultiplier / 2^divShift⌋ is the exact
	// quotient: divMultiplier·q − 2^divShift = 2492 and 2²³·2492 < 2^divShift.
	const (
		divMultiplier = 10321340 // ⌈2³⁵ / q⌉
		divShift      = 35
	)
	dividend := uint64(x)<<d + q/2
	quotient := (dividend * divMultiplier) >> divShift
	return uint16(quotient) & (1<<d - 1)
}

// zetas[i] is ζ^BitRev₇(i) mod q, FIPS 203 Algorithms 9 and 10.
// gammas[i] is ζ^(2·BitRev₇(i)+1) mod q, FIPS 203 Algorithm 11.
var zetas, gammas = nttConstants()

func nttConstants() (zetas, gammas [128]fieldElement) {
	var pow [256]fieldElement // pow[k] = ζᵏ mod q
	pow[0] = 1
	for k := 1; k < len(pow); k++ {
		pow[k] = fieldMul(pow[k-1], zeta)
	}
	for i := range 128 {
		r := bitRev7(uint8(i))
		zetas[i] = pow[r]
		gammas[i] = pow[2*int(r)+1]
	}
	return zetas, gammas
}

func bitRev7(i uint8) uint8 {
	var r uint8
	for b := range 7 {
		r |= (i >> b & 1) << (6 - b)
	}
	return r
}

// ntt implements FIPS 203, Algorithm 9.
func ntt(f ringElement) nttElement {
	i := 1
	for length := 128; length >= 2; length /= 2 {
		for start := 0; start < n; start += 2 * length {
			z := zetas[i]
			i++
			for j := start; j < start+length; j++ {
				t := fieldMul(z, f[j+length])
				f[j+length] = fieldSub(f[j], t)
				f[j] = fieldAdd(f[j], t)
			}
		}
	}
	return nttElement(f)
}

// inverseNTT implements FIPS 203, Algorithm 10.
func inverseNTT(g nttElement) ringElement {
	f := ringElement(g)
	i := 127
	for length := 2; length <= 128; length *= 2 {
		for start := 0; start < n; start += 2 * length {
			z := zetas[i]
			i--
			for j := start; j < start+length; j++ {
				t := f[j]
				f[j] = fieldAdd(t, f[j+length])
				f[j+length] = fieldMul(z, fieldSub(f[j+length], t))
			}
		}
	}
	for j := range f {
		f[j] = fieldMul(f[j], nInverseTimes)
	}
	return f
}

// mulAccNTT sets acc += a ∘ b, implementing FIPS 203 Algorithms 11 and 12.
func mulAccNTT(acc *nttElement, a, b *nttElement) {
	for i := range 128 {
		a0, a1 := a[2*i], a[2*i+1]
		b0, b1 := b[2*i], b[2*i+1]
		c0 := fieldAdd(fieldMul(a0, b0), fieldMul(fieldMul(a1, b1), gammas[i]))
		c1 := fieldAdd(fieldMul(a0, b1), fieldMul(a1, b0))
		acc[2*i] = fieldAdd(acc[2*i], c0)
		acc[2*i+1] = fieldAdd(acc[2*i+1], c1)
	}
}

func polyAdd(a, b ringElement) ringElement {
	for i := range a {
		a[i] = fieldAdd(a[i], b[i])
	}
	return a
}
