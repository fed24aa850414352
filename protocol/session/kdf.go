package session

import (
	"crypto/aes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash"
	"unsafe"

	"github.com/doorless/doorless/protocol/keys"
)

// Key-derivation labels, as libsignal uses them (rust/protocol/src/pqxdh.rs and
// rust/protocol/src/ratchet/keys.rs).
const (
	// pqxdhInfo is the HKDF info of the PQXDH master secret. libsignal uses it for
	// Kyber-1024 and ML-KEM-1024 prekeys alike.
	pqxdhInfo = "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
	// ratchetInfo is the HKDF info of a root-key step (RootKey::create_chain).
	ratchetInfo = "WhisperRatchet"
	// messageKeysInfo is the HKDF info of a message's cipher key, MAC key and IV.
	messageKeysInfo = "WhisperMessageKeys"
)

// Chain-key step inputs (ChainKey::MESSAGE_KEY_SEED and CHAIN_KEY_SEED).
var (
	messageKeySeed = []byte{0x01}
	chainKeySeed   = []byte{0x02}
)

// pqxdhDiscontinuity is the 32 bytes of 0xFF that start the PQXDH secret input, the
// "discontinuity bytes" of the X3DH and PQXDH specifications.
var pqxdhDiscontinuity = [32]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// kdf computes HMAC-SHA256 and HKDF-SHA256 with reusable hash states and buffers, so
// that the per-message work allocates nothing. Every buffer that reaches a hash.Hash
// lives here, not on the stack (a stack buffer passed to an interface method escapes).
// (Saving and restoring keyed hash states to skip the padded-key blocks was measured
// slower than rehashing them.) A kdf is not safe for concurrent use; each session state
// owns one.
type kdf struct {
	inner, outer hash.Hash
	pad          [sha256.BlockSize]byte
	sum          [sha256.Size]byte
	prk          [sha256.Size]byte
	t            [sha256.Size]byte
	ctr          [1]byte
	ikm          [32]byte                 // input key material, copied here so it does not escape
	id1, id2     [keys.PublicKeySize]byte // identity keys for the MAC
}

// hmac sets out to HMAC-SHA256(key, data...). key is at most one block long.
func (k *kdf) hmac(out *[32]byte, key []byte, data ...[]byte) {
	if k.inner == nil {
		k.inner, k.outer = sha256.New(), sha256.New()
	}
	if len(key) > sha256.BlockSize {
		panic("session: hmac key longer than a block")
	}
	clear(k.pad[:])
	copy(k.pad[:], key)
	for i := range k.pad {
		k.pad[i] ^= 0x36
	}
	k.inner.Reset()
	k.inner.Write(k.pad[:])
	for _, d := range data {
		k.inner.Write(d)
	}
	k.inner.Sum(k.sum[:0])
	for i := range k.pad {
		k.pad[i] ^= 0x36 ^ 0x5c
	}
	k.outer.Reset()
	k.outer.Write(k.pad[:])
	k.outer.Write(k.sum[:])
	k.outer.Sum(k.sum[:0])
	*out = k.sum
	clear(k.pad[:])
}

// hkdf fills out with HKDF-SHA256(salt, ikm, info) (RFC 5869). An empty salt means
// HashLen zero bytes, which HMAC treats like an empty key.
func (k *kdf) hkdf(out []byte, salt, ikm []byte, info string) {
	k.hmac(&k.prk, salt, ikm)
	var prev []byte
	for i := 1; len(out) > 0; i++ {
		k.ctr[0] = byte(i)
		k.hmac(&k.t, k.prk[:], prev, stringBytes(info), k.ctr[:])
		n := copy(out, k.t[:])
		out = out[n:]
		prev = k.t[:]
	}
	clear(k.prk[:])
	clear(k.t[:])
}

// stringBytes returns the bytes of a constant label without copying.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// handshakeKeys is what PQXDH hands the ratchet: the first root key, the first chain
// key and the initial SPQR authentication key.
type handshakeKeys struct {
	root, chain, pqr [32]byte
}

func (k *kdf) handshakeKeys(secret []byte) handshakeKeys {
	var okm [96]byte
	k.hkdf(okm[:], nil, secret, pqxdhInfo)
	var h handshakeKeys
	copy(h.root[:], okm[:32])
	copy(h.chain[:], okm[32:64])
	copy(h.pqr[:], okm[64:])
	clear(okm[:])
	return h
}

// rootStep is RootKey::create_chain: HKDF(salt = root key, ikm = DH output) gives the
// next root key and a fresh chain key.
func (k *kdf) rootStep(root *[32]byte, dh *[32]byte) (newRoot, chain [32]byte) {
	var okm [64]byte
	k.ikm = *dh
	k.hkdf(okm[:], root[:], k.ikm[:], ratchetInfo)
	clear(k.ikm[:])
	copy(newRoot[:], okm[:32])
	copy(chain[:], okm[32:])
	clear(okm[:])
	return newRoot, chain
}

// chainStep returns the message-key seed at this chain key and the next chain key.
func (k *kdf) chainStep(key *[32]byte) (seed, next [32]byte) {
	k.hmac(&seed, key[:], messageKeySeed)
	k.hmac(&next, key[:], chainKeySeed)
	return seed, next
}

// messageKeys are the keys of one message.
type messageKeys struct {
	cipher [32]byte
	mac    [32]byte
	iv     [16]byte
}

// messageKeys expands a message-key seed, salted with the SPQR message key
// (MessageKeys::derive_keys).
func (k *kdf) messageKeys(seed *[32]byte, pqrKey []byte) messageKeys {
	var okm [80]byte
	k.ikm = *seed
	k.hkdf(okm[:], pqrKey, k.ikm[:], messageKeysInfo)
	clear(k.ikm[:])
	var mk messageKeys
	copy(mk.cipher[:], okm[:32])
	copy(mk.mac[:], okm[32:64])
	copy(mk.iv[:], okm[64:])
	clear(okm[:])
	return mk
}

// errBadPadding is returned by cbcDecrypt for input that is not a padded CBC ciphertext.
var errBadPadding = errors.New("bad padding")

// cbcEncrypt is AES-256-CBC with PKCS#7 padding, appended to dst. The chaining is done
// here rather than with cipher.NewCBCEncrypter, which allocates.
func cbcEncrypt(dst []byte, k *messageKeys, plaintext []byte) []byte {
	block, _ := aes.NewCipher(k.cipher[:])
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	start := len(dst)
	dst = append(dst, plaintext...)
	for range pad {
		dst = append(dst, byte(pad))
	}
	prev := k.iv[:]
	for b := dst[start:]; len(b) > 0; b = b[aes.BlockSize:] {
		subtle.XORBytes(b[:aes.BlockSize], b[:aes.BlockSize], prev)
		block.Encrypt(b[:aes.BlockSize], b[:aes.BlockSize])
		prev = b[:aes.BlockSize]
	}
	return dst
}

// cbcDecrypt reverses cbcEncrypt.
func cbcDecrypt(k *messageKeys, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, errBadPadding
	}
	block, _ := aes.NewCipher(k.cipher[:])
	out := make([]byte, len(ciphertext))
	prev := k.iv[:]
	for i := 0; i < len(ciphertext); i += aes.BlockSize {
		block.Decrypt(out[i:i+aes.BlockSize], ciphertext[i:i+aes.BlockSize])
		subtle.XORBytes(out[i:i+aes.BlockSize], out[i:i+aes.BlockSize], prev)
		prev = ciphertext[i : i+aes.BlockSize]
	}
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, errBadPadding
	}
	// The MAC has been checked before decryption, so this check is not an oracle; it
	// is constant-time all the same.
	good := 1
	for _, b := range out[len(out)-pad:] {
		good &= subtle.ConstantTimeByteEq(b, byte(pad))
	}
	if good != 1 {
		return nil, errBadPadding
	}
	return out[:len(out)-pad], nil
}
