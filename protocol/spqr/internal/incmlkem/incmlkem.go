// Package incmlkem implements ML-KEM-768 (FIPS 203) with the incremental
// encapsulation interface of libcrux-ml-kem 0.0.10 (module
// mlkem768::incremental), which the SPQR ratchet uses to send a public key and
// a ciphertext in two parts each.
//
// The encapsulation key ek = ByteEncode₁₂(t̂) ‖ ρ (FIPS 203, Algorithm 13) is
// split into
//
//	header (libcrux "pk1"):           ρ ‖ H(ek)          64 bytes
//	encapsulation key (libcrux "pk2"): ByteEncode₁₂(t̂)  1152 bytes
//
// and the ciphertext c = c₁ ‖ c₂ (FIPS 203, Algorithm 14) into
//
//	ciphertext 1: c₁ = ByteEncode₁₀(Compress₁₀(u))  960 bytes, needs only the header
//	ciphertext 2: c₂ = ByteEncode₄(Compress₄(v))    128 bytes, needs pk2 as well
//
// The shared secret K comes from (K, r) = G(m ‖ H(ek)) and is therefore
// known after the first step. Ciphertext 1 ‖ ciphertext 2 is an ordinary
// ML-KEM-768 ciphertext, so key generation and decapsulation use crypto/mlkem.
//
// All functions are safe for concurrent use.
package incmlkem

import (
	"crypto/mlkem"
	"crypto/sha3"
	"crypto/subtle"
	"errors"
)

// Sizes of the incremental ML-KEM-768 objects, in bytes (libcrux
// mlkem768::incremental: pk1_len, pk2_len, Ciphertext1::len, Ciphertext2::len).
const (
	HeaderSize           = 64   // ρ ‖ H(ek)
	EncapsulationKeySize = 1152 // ByteEncode₁₂(t̂)
	Ciphertext1Size      = 960
	Ciphertext2Size      = 128
	SharedSecretSize     = 32
	// SeedSize is the size of the key generation seed d ‖ z (FIPS 203,
	// Algorithm 16), libcrux KEY_GENERATION_SEED_SIZE.
	SeedSize = mlkem.SeedSize
	// RandomnessSize is the size of the encapsulation randomness m.
	RandomnessSize = 32
)

const (
	k   = 3  // FIPS 203, Table 2, ML-KEM-768
	eta = 2  // η₁ = η₂
	du  = 10 // d_u
	dv  = 4  // d_v

	encodedPolySize = 384 // 32·12 bytes, ByteEncode₁₂ of one polynomial
)

var (
	errSize            = errors.New("incmlkem: wrong input size")
	errHashMismatch    = errors.New("incmlkem: encapsulation key does not match header hash")
	errUnreducedCoeffs = errors.New("incmlkem: encapsulation key has coefficients not reduced modulo q")
)

// GenerateKey derives the key pair for a 64-byte seed d ‖ z, exactly as
// libcrux KeyPairCompressedBytes::from_seed does (it splits the seed into
// d = seed[:32] and z = seed[32:], as FIPS 203 ML-KEM.KeyGen_internal), and
// returns the header and the encapsulation key part.
func GenerateKey(seed []byte) (header, ek []byte, err error) {
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return nil, nil, err
	}
	full := dk.EncapsulationKey().Bytes() // t̂ encoding ‖ ρ
	hash := sha3.Sum256(full)
	header = make([]byte, 0, HeaderSize)
	header = append(header, full[EncapsulationKeySize:]...)
	header = append(header, hash[:]...)
	return header, full[:EncapsulationKeySize:EncapsulationKeySize], nil
}

// Decapsulate returns the shared secret for ciphertext 1 ‖ ciphertext 2
// under the key pair derived from seed, with FIPS 203 implicit rejection.
func Decapsulate(seed, ct1, ct2 []byte) ([]byte, error) {
	if len(ct1) != Ciphertext1Size || len(ct2) != Ciphertext2Size {
		return nil, errSize
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, 0, Ciphertext1Size+Ciphertext2Size)
	ct = append(ct, ct1...)
	ct = append(ct, ct2...)
	return dk.Decapsulate(ct)
}

// ValidateEncapsulationKey checks that ek and header belong together, as
// libcrux validate_pk_bytes does: H(ek ‖ ρ) must equal the hash in the
// header, and ek must pass the FIPS 203 modulus check (section 7.2), i.e.
// every 12-bit coefficient is below q.
func ValidateEncapsulationKey(header, ek []byte) error {
	if len(header) != HeaderSize || len(ek) != EncapsulationKeySize {
		return errSize
	}
	h := sha3.New256()
	h.Write(ek)
	h.Write(header[:32])
	if subtle.ConstantTimeCompare(h.Sum(nil), header[32:]) != 1 {
		return errHashMismatch
	}
	for i := 0; i < len(ek); i += 3 {
		d1 := uint16(ek[i]) | uint16(ek[i+1]&0x0f)<<8
		d2 := uint16(ek[i+1])>>4 | uint16(ek[i+2])<<4
		if d1 >= q || d2 >= q {
			return errUnreducedCoeffs
		}
	}
	return nil
}

// Encapsulate1 computes ciphertext 1 and the shared secret from the header
// and the 32-byte randomness m (libcrux incremental::encapsulate1). The
// caller keeps header and m to compute ciphertext 2 later; together they are
// the encapsulation state.
func Encapsulate1(header, m []byte) (ct1, sharedSecret []byte, err error) {
	if len(header) != HeaderSize || len(m) != RandomnessSize {
		return nil, nil, errSize
	}
	sharedSecret, rHat, r := encapsPrepare(header, m)

	// u = NTT⁻¹(Âᵀ ∘ r̂) + e₁ (FIPS 203, Algorithm 14, lines 4-19).
	rho := header[:32]
	var aT [k][k]nttElement // aT[i][j] = Â[j][i]
	for i := range k {
		for j := range k {
			aT[i][j] = sampleNTT(rho, byte(i), byte(j))
		}
	}
	ct1 = make([]byte, 0, Ciphertext1Size)
	for i := range k {
		var acc nttElement
		for j := range k {
			mulAccNTT(&acc, &aT[i][j], &rHat[j])
		}
		e1 := samplePolyCBD(r, byte(k+i))
		u := polyAdd(inverseNTT(acc), e1)
		ct1 = appendCompressed(ct1, &u, du)
	}
	return ct1, sharedSecret, nil
}

// Encapsulate2 computes ciphertext 2 from the encapsulation key part and the
// header and randomness given to Encapsulate1 (libcrux
// incremental::encapsulate2). The caller must have checked ek with
// ValidateEncapsulationKey.
func Encapsulate2(header, m, ek []byte) ([]byte, error) {
	if len(header) != HeaderSize || len(m) != RandomnessSize || len(ek) != EncapsulationKeySize {
		return nil, errSize
	}
	_, rHat, r := encapsPrepare(header, m)

	// v = NTT⁻¹(t̂ᵀ ∘ r̂) + e₂ + Decompress₁(m) (FIPS 203, Algorithm 14, lines 2-3, 17, 20-21).
	var acc nttElement
	for i := range k {
		tHat := decodeT(ek[i*encodedPolySize : (i+1)*encodedPolySize])
		mulAccNTT(&acc, &tHat, &rHat[i])
	}
	e2 := samplePolyCBD(r, 2*k)
	v := polyAdd(inverseNTT(acc), e2)
	v = polyAdd(v, decompressMessage(m))
	return appendCompressed(make([]byte, 0, Ciphertext2Size), &v, dv), nil
}

// encapsPrepare computes (K, r) = G(m ‖ H(ek)) (FIPS 203, Algorithm 17,
// line 1) and r̂ = NTT(y) with y sampled from r (Algorithm 14, lines 9-12).
func encapsPrepare(header, m []byte) (sharedSecret []byte, rHat [k]nttElement, r []byte) {
	g := sha3.New512()
	g.Write(m)
	g.Write(header[32:])
	kr := g.Sum(nil)
	sharedSecret, r = kr[:SharedSecretSize:SharedSecretSize], kr[SharedSecretSize:]
	for i := range k {
		rHat[i] = ntt(samplePolyCBD(r, byte(i)))
	}
	return sharedSecret, rHat, r
}

// sampleNTT implements FIPS 203, Algorithm 7, for the matrix entry
// Â[j][i] = SampleNTT(ρ ‖ i ‖ j) as indexed in Algorithm 14, line 6
// (Â[i,j] ← SampleNTT(ρ‖j‖i)). ρ is public, so rejection sampling may branch.
func sampleNTT(rho []byte, i, j byte) nttElement {
	xof := sha3.NewSHAKE128()
	xof.Write(rho)
	xof.Write([]byte{i, j})
	var a nttElement
	var buf [168]byte // one SHAKE128 block
	off := len(buf)
	for c := 0; c < n; {
		if off >= len(buf) {
			xof.Read(buf[:])
			off = 0
		}
		d1 := uint16(buf[off]) | uint16(buf[off+1]&0x0f)<<8
		d2 := uint16(buf[off+1])>>4 | uint16(buf[off+2])<<4
		off += 3
		if d1 < q {
			a[c] = fieldElement(d1)
			c++
		}
		if d2 < q && c < n {
			a[c] = fieldElement(d2)
			c++
		}
	}
	return a
}

// samplePolyCBD returns SamplePolyCBD_η(PRF_η(s, b)) for η = 2 (FIPS 203,
// Algorithm 8 and equation 4.3). ML-KEM-768 has η₁ = η₂ = 2, so the same
// sampler serves for y, e₁ and e₂.
func samplePolyCBD(s []byte, b byte) ringElement {
	prf := sha3.NewSHAKE256()
	prf.Write(s)
	prf.Write([]byte{b})
	var buf [64 * eta]byte
	prf.Read(buf[:])
	var f ringElement
	for i, v := range buf {
		// Each nibble gives one coefficient: (b₀ + b₁) − (b₂ + b₃).
		for half := range 2 {
			nib := v >> (4 * half)
			x := uint16(nib&1 + nib>>1&1)
			y := uint16(nib>>2&1 + nib>>3&1)
			f[2*i+half] = fieldSub(fieldElement(x), fieldElement(y))
		}
	}
	return f
}

// decodeT implements ByteDecode₁₂ for one polynomial of a validated key.
func decodeT(b []byte) nttElement {
	var t nttElement
	for i := 0; i < n; i += 2 {
		x := b[3*i/2:]
		t[i] = fieldElement(uint16(x[0]) | uint16(x[1]&0x0f)<<8)
		t[i+1] = fieldElement(uint16(x[1])>>4 | uint16(x[2])<<4)
	}
	return t
}

// decompressMessage returns Decompress₁(ByteDecode₁(m)): each bit of m, least
// significant first, becomes 0 or ⌈q/2⌋ = 1665.
func decompressMessage(m []byte) ringElement {
	var f ringElement
	for i := range f {
		bit := uint16(m[i/8] >> (i % 8) & 1)
		f[i] = fieldElement(bit * ((q + 1) / 2))
	}
	return f
}

// appendCompressed appends ByteEncode_d(Compress_d(f)) (FIPS 203, Algorithm
// 5): 256 d-bit values, packed least significant bit first.
func appendCompressed(b []byte, f *ringElement, d uint) []byte {
	var acc uint32
	var bits uint
	for _, c := range f {
		acc |= uint32(compress(c, d)) << bits
		bits += d
		for bits >= 8 {
			b = append(b, byte(acc))
			acc >>= 8
			bits -= 8
		}
	}
	return b
}
