package session

import (
	"crypto/sha256"
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
