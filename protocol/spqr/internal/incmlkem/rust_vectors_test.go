package incmlkem

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// decompress implements Decompress_d (FIPS 203, equation 4.8).
func decompress(y uint16, d uint) fieldElement {
	return fieldElement((uint32(y)*q + 1<<(d-1)) >> d)
}

// unpack implements ByteDecode_d for d < 12.
func unpack(b []byte, d uint) ringElement {
	var f ringElement
	var acc uint32
	var bits uint
	i := 0
	for c := range f {
		for bits < d {
			acc |= uint32(b[i]) << bits
			i++
			bits += 8
		}
		f[c] = decompress(uint16(acc&(1<<d-1)), d)
		acc >>= d
		bits -= d
	}
	return f
}

// decrypt implements K-PKE.Decrypt (FIPS 203, Algorithm 15) with the
// encoded secret key dkPKE, returning m.
func decrypt(dkPKE, ct1, ct2 []byte) []byte {
	var acc nttElement
	for i := range k {
		s := decodeT(dkPKE[i*encodedPolySize:])
		u := ntt(unpack(ct1[i*32*du:], du))
		mulAccNTT(&acc, &s, &u)
	}
	v := unpack(ct2, dv)
	su := inverseNTT(acc)
	m := make([]byte, 32)
	for i := range v {
		w := fieldSub(v[i], su[i])
		m[i/8] |= byte(compress(w, 1)) << (i % 8)
	}
	return m
}

// TestRustKey completes the encapsulation the Rust crate's Blake started to
// Alex's libcrux-generated key (see protocol/spqr/testdata), and checks that
// the key's own secret decrypts it to Blake's randomness: ciphertext 1 and
// 2 are what libcrux expects for that key, and the shared secret is
// G(m ‖ H(ek)).
func TestRustKey(t *testing.T) {
	b, err := os.ReadFile("../../testdata/rust_state_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		AlexDK        string `json:"alex_dk"`
		AlexSendingEK string `json:"alex_sending_ek"`
		BlakeHeader   string `json:"blake_header"`
		BlakeM        string `json:"blake_m"`
		BlakeCt1      string `json:"blake_ct1"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	dk, _ := hex.DecodeString(v.AlexDK)
	header, _ := hex.DecodeString(v.BlakeHeader)
	m, _ := hex.DecodeString(v.BlakeM)
	wantCt1, _ := hex.DecodeString(v.BlakeCt1)
	ek, _ := hex.DecodeString(v.AlexSendingEK)

	ct1, ss, err := Encapsulate1(header, m)
	if err != nil || !bytes.Equal(ct1, wantCt1) {
		t.Fatal("ciphertext 1 differs from the crate's", err)
	}
	if err := ValidateEncapsulationKey(header, ek); err != nil {
		t.Fatal(err)
	}
	ct2, err := Encapsulate2(header, m, ek)
	if err != nil {
		t.Fatal(err)
	}
	if got := decrypt(dk[:k*encodedPolySize], ct1, ct2); !bytes.Equal(got, m) {
		t.Fatal("the Rust key's secret does not decrypt our ciphertext")
	}
	g := sha3.New512()
	g.Write(m)
	g.Write(dk[2336:2368]) // H(ek) as stored in the libcrux key
	if !bytes.Equal(g.Sum(nil)[:32], ss) {
		t.Fatal("shared secret is not G(m ‖ H(ek))")
	}
}
