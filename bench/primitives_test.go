package bench

import (
	"crypto/aes"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
	"io"
	"testing"

	"github.com/cloudflare/circl/kem/kyber/kyber1024"

	"github.com/doorless/doorless/protocol/keys"
)

// The "primitives" baselines do the cryptographic work a protocol step cannot avoid,
// and nothing else: no parsing, no encoding, no state bookkeeping. They use the same
// libraries as Doorless (Go's crypto/..., circl for Kyber-1024) in their cheapest
// allocation-free form, with every key and input freshly derived as the protocol
// derives it, so no work can be hoisted out of the loop.

// prim holds reusable hash states and scratch buffers, so that HMAC and HKDF allocate
// nothing: every slice that reaches a hash.Hash lives here (a stack buffer passed to
// an interface method would escape and be allocated on each call).
type prim struct {
	inner, outer hash.Hash
	pad          [sha256.BlockSize]byte
	sum          [sha256.Size]byte
	prk, t       [sha256.Size]byte
	ctr          [1]byte
	okm          [96]byte
	secret       []byte // PQXDH master secret input

	// one-message state
	sendChain, recvChain [32]byte // Double Ratchet chain keys (kept equal)
	sendPQ, recvPQ       [32]byte // SPQR chain keys (kept equal)
	seed, pqKey, next    [32]byte
	cipherKey, macKey    [32]byte
	iv                   [16]byte
	plaintext            []byte
	ct, pt               []byte // ciphertext and decrypted plaintext buffers
	macInput             []byte // identity keys ‖ message header ‖ ciphertext
	headerLen            int
	mac                  [32]byte

	noSPQR bool // Double Ratchet alone, as before SPQR: no SPQR chain step, no salt

	// constant inputs
	one, two   [1]byte
	mkInfo     []byte // "WhisperMessageKeys"
	pqInfo     []byte // 4-byte counter ‖ "Signal PQ Ratchet V1 Chain Next"
	ratchetInf []byte // "WhisperRatchet"
	pqxdhInfo  []byte
}

func newPrim(plaintextLen, headerLen int) *prim {
	p := &prim{inner: sha256.New(), outer: sha256.New(), headerLen: headerLen}
	p.one[0], p.two[0] = 1, 2
	p.mkInfo = []byte("WhisperMessageKeys")
	p.pqInfo = append([]byte{0, 0, 0, 1}, "Signal PQ Ratchet V1 Chain Next"...)
	p.ratchetInf = []byte("WhisperRatchet")
	p.pqxdhInfo = []byte("WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024")
	p.secret = make([]byte, 0, 32*6)
	p.plaintext = make([]byte, plaintextLen)
	padded := (plaintextLen/aes.BlockSize + 1) * aes.BlockSize
	p.ct = make([]byte, padded)
	p.pt = make([]byte, padded)
	p.macInput = make([]byte, 2*keys.PublicKeySize+headerLen+padded)
	_, _ = io.ReadFull(rand.Reader, p.sendChain[:])
	p.recvChain = p.sendChain
	_, _ = io.ReadFull(rand.Reader, p.sendPQ[:])
	p.recvPQ = p.sendPQ
	_, _ = io.ReadFull(rand.Reader, p.macInput)
	return p
}

// hmac sets out to HMAC-SHA256(key, parts...); key is at most one block.
func (p *prim) hmac(out *[32]byte, key []byte, parts ...[]byte) {
	clear(p.pad[:])
	copy(p.pad[:], key)
	for i := range p.pad {
		p.pad[i] ^= 0x36
	}
	p.inner.Reset()
	p.inner.Write(p.pad[:])
	for _, d := range parts {
		p.inner.Write(d)
	}
	p.inner.Sum(p.sum[:0])
	for i := range p.pad {
		p.pad[i] ^= 0x36 ^ 0x5c
	}
	p.outer.Reset()
	p.outer.Write(p.pad[:])
	p.outer.Write(p.sum[:])
	p.outer.Sum(p.sum[:0])
	*out = p.sum
}

// hkdf fills out (at most 96 bytes) with HKDF-SHA256(salt, ikm, info).
func (p *prim) hkdf(out []byte, salt, ikm, info []byte) {
	p.hmac(&p.prk, salt, ikm)
	var prev []byte
	for i := 1; len(out) > 0; i++ {
		p.ctr[0] = byte(i)
		p.hmac(&p.t, p.prk[:], prev, info, p.ctr[:])
		n := copy(out, p.t[:])
		out = out[n:]
		prev = p.t[:]
	}
}

// chainStep is the Double Ratchet's symmetric step: two HMACs.
func (p *prim) chainStep(chain *[32]byte) {
	p.hmac(&p.seed, chain[:], p.one[:])
	p.hmac(chain, chain[:], p.two[:])
}

// pqChainStep is SPQR's per-message chain step: HKDF(zero salt, chain key, counter ‖
// label) to 64 bytes, the next chain key and the SPQR message key.
func (p *prim) pqChainStep(chain *[32]byte) {
	p.hkdf(p.okm[:64], nil, chain[:], p.pqInfo)
	copy(chain[:], p.okm[:32])
	copy(p.pqKey[:], p.okm[32:64])
}

// messageKeys is the 80-byte HKDF expand salted with the SPQR key.
func (p *prim) messageKeys() {
	salt := p.pqKey[:]
	if p.noSPQR {
		salt = nil
	}
	p.hkdf(p.okm[:80], salt, p.seed[:], p.mkInfo)
	copy(p.cipherKey[:], p.okm[:32])
	copy(p.macKey[:], p.okm[32:64])
	copy(p.iv[:], p.okm[64:80])
}

// encryptMessage is the sender's per-message work: chain step, SPQR chain step,
// message keys, AES-256-CBC with PKCS#7 padding, HMAC-SHA256 over the identity keys,
// the header and the ciphertext.
func (p *prim) encryptMessage() {
	p.chainStep(&p.sendChain)
	if !p.noSPQR {
		p.pqChainStep(&p.sendPQ)
	}
	p.messageKeys()
	block, _ := aes.NewCipher(p.cipherKey[:])
	n := copy(p.ct, p.plaintext)
	pad := byte(len(p.ct) - n)
	for i := n; i < len(p.ct); i++ {
		p.ct[i] = pad
	}
	prev := p.iv[:]
	for b := p.ct; len(b) > 0; b = b[aes.BlockSize:] {
		subtle.XORBytes(b[:aes.BlockSize], b[:aes.BlockSize], prev)
		block.Encrypt(b[:aes.BlockSize], b[:aes.BlockSize])
		prev = b[:aes.BlockSize]
	}
	copy(p.macInput[len(p.macInput)-len(p.ct):], p.ct)
	p.hmac(&p.mac, p.macKey[:], p.macInput)
}

// decryptMessage is the receiver's per-message work: the same key derivation, the MAC
// check and AES-256-CBC decryption with the padding check.
func (p *prim) decryptMessage() bool {
	p.chainStep(&p.recvChain)
	if !p.noSPQR {
		p.pqChainStep(&p.recvPQ)
	}
	p.messageKeys()
	want := p.mac
	p.hmac(&p.mac, p.macKey[:], p.macInput)
	if subtle.ConstantTimeCompare(want[:8], p.mac[:8]) != 1 {
		return false
	}
	block, _ := aes.NewCipher(p.cipherKey[:])
	prev := p.iv[:]
	for i := 0; i < len(p.ct); i += aes.BlockSize {
		block.Decrypt(p.pt[i:i+aes.BlockSize], p.ct[i:i+aes.BlockSize])
		subtle.XORBytes(p.pt[i:i+aes.BlockSize], p.pt[i:i+aes.BlockSize], prev)
		prev = p.ct[i : i+aes.BlockSize]
	}
	pad := p.pt[len(p.pt)-1]
	good := 1
	for _, b := range p.pt[len(p.pt)-int(pad):] {
		good &= subtle.ConstantTimeByteEq(b, pad)
	}
	return good == 1
}

// aesCBCRoundTrip is the AES-256-CBC part of one message: key schedules on both
// sides, encryption of the padded plaintext, decryption.
func aesCBCRoundTrip(p *prim) {
	block, _ := aes.NewCipher(p.cipherKey[:])
	prev := p.iv[:]
	for b := p.ct; len(b) > 0; b = b[aes.BlockSize:] {
		subtle.XORBytes(b[:aes.BlockSize], b[:aes.BlockSize], prev)
		block.Encrypt(b[:aes.BlockSize], b[:aes.BlockSize])
		prev = b[:aes.BlockSize]
	}
	block, _ = aes.NewCipher(p.cipherKey[:])
	prev = p.iv[:]
	for i := 0; i < len(p.ct); i += aes.BlockSize {
		block.Decrypt(p.pt[i:i+aes.BlockSize], p.ct[i:i+aes.BlockSize])
		subtle.XORBytes(p.pt[i:i+aes.BlockSize], p.pt[i:i+aes.BlockSize], prev)
		prev = p.ct[i : i+aes.BlockSize]
	}
}

// rootStep is RootKey::create_chain: HKDF(salt = root, ikm = DH output) to 64 bytes.
func (p *prim) rootStep(root *[32]byte, dh []byte) {
	p.hkdf(p.okm[:64], root[:], dh, p.ratchetInf)
	copy(root[:], p.okm[:32])
	copy(p.next[:], p.okm[32:64])
}

// x25519KeyGen and x25519Agree are the X25519 work of a ratchet or handshake step, with
// the primitives protocol/keys implements: a fixed-base Edwards multiplication for a new
// key's public key and the RFC 7748 ladder for an agreement. (The op=x25519-*-stdlib
// benchmarks measure crypto/ecdh beside them.)
func x25519KeyGen(tb testing.TB) keys.KeyPair {
	k, err := keys.GenerateKeyPair(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func x25519Agree(tb testing.TB, priv *keys.PrivateKey, pub []byte) []byte {
	s, err := priv.Agree(keys.PublicKey(pub))
	if err != nil {
		tb.Fatal(err)
	}
	return s[:]
}

// kyberEncaps is a Kyber-1024 encapsulation to a packed public key (as a bundle
// carries it), with 32 bytes from crypto/rand.
func kyberEncaps(pkBytes, ct, ss []byte) {
	var seed [32]byte
	_, _ = io.ReadFull(rand.Reader, seed[:])
	var pk kyber1024.PublicKey
	pk.Unpack(pkBytes)
	pk.EncapsulateTo(ct, ss, seed[:])
}

// mlkem768Epoch is the ML-KEM-768 work of one SPQR epoch: a key pair, an
// encapsulation, a decapsulation.
func mlkem768Epoch(tb testing.TB) {
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		tb.Fatal(err)
	}
	ss, ct := dk.EncapsulationKey().Encapsulate()
	ss2, err := dk.Decapsulate(ct)
	if err != nil || subtle.ConstantTimeCompare(ss, ss2) != 1 {
		tb.Fatal("mlkem768: shared secrets differ")
	}
}
