package session

import (
	"crypto/aes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"hash"

	"github.com/doorless/doorless/protocol/internal/kdf"
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

// The key schedule runs on package internal/kdf, which hashes short inputs without
// allocating. Labels are kept as byte slices so that passing them allocates nothing.
var (
	pqxdhLabel       = []byte(pqxdhInfo)
	ratchetLabel     = []byte(ratchetInfo)
	messageKeysLabel = []byte(messageKeysInfo)
)

// handshakeKeys is what PQXDH hands the ratchet: the first root key, the first chain
// key and the initial SPQR authentication key.
type handshakeKeys struct {
	root, chain, pqr [32]byte
}

func deriveHandshakeKeys(secret []byte) handshakeKeys {
	var okm [96]byte
	kdf.HKDF(okm[:], nil, secret, pqxdhLabel)
	var h handshakeKeys
	copy(h.root[:], okm[:32])
	copy(h.chain[:], okm[32:64])
	copy(h.pqr[:], okm[64:])
	clear(okm[:])
	return h
}

// rootStep is RootKey::create_chain: HKDF(salt = root key, ikm = DH output) gives the
// next root key and a fresh chain key.
func rootStep(root *[32]byte, dh *[32]byte) (newRoot, chain [32]byte) {
	var okm [64]byte
	kdf.HKDF(okm[:], root[:], dh[:], ratchetLabel)
	copy(newRoot[:], okm[:32])
	copy(chain[:], okm[32:])
	clear(okm[:])
	return newRoot, chain
}

// chainStep returns the message-key seed at this chain key and the next chain key.
func chainStep(key *[32]byte) (seed, next [32]byte) {
	return kdf.HMAC(key[:], messageKeySeed), kdf.HMAC(key[:], chainKeySeed)
}

// macState computes the MAC of a SignalMessage, HMAC-SHA256 over input too long for
// internal/kdf, with hash states and buffers that are reused so that it allocates
// nothing per message (a stack buffer passed to a hash.Hash would escape). It is not
// safe for concurrent use; each session state owns one.
type macState struct {
	inner, outer hash.Hash
	pad          [sha256.BlockSize]byte
	sum          [sha256.Size]byte
	id1, id2     [keys.PublicKeySize]byte // identity keys
}

// hmac sets out to HMAC-SHA256(key, data...) for a 32-byte key.
func (m *macState) hmac(out *[32]byte, key *[32]byte, data ...[]byte) {
	if m.inner == nil {
		m.inner, m.outer = sha256.New(), sha256.New()
	}
	clear(m.pad[:])
	copy(m.pad[:], key[:])
	for i := range m.pad {
		m.pad[i] ^= 0x36
	}
	m.inner.Reset()
	m.inner.Write(m.pad[:])
	for _, d := range data {
		m.inner.Write(d)
	}
	m.inner.Sum(m.sum[:0])
	for i := range m.pad {
		m.pad[i] ^= 0x36 ^ 0x5c
	}
	m.outer.Reset()
	m.outer.Write(m.pad[:])
	m.outer.Write(m.sum[:])
	m.outer.Sum(m.sum[:0])
	*out = m.sum
	clear(m.pad[:])
}

// messageKeys are the keys of one message.
type messageKeys struct {
	cipher [32]byte
	mac    [32]byte
	iv     [16]byte
}

// deriveMessageKeys expands a message-key seed, salted with the SPQR message key
// (MessageKeys::derive_keys).
func deriveMessageKeys(seed *[32]byte, pqrKey []byte) messageKeys {
	var okm [80]byte
	kdf.HKDF(okm[:], pqrKey, seed[:], messageKeysLabel)
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
