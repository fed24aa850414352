package senderkey

import (
	"crypto/aes"
	"math"

	"github.com/doorless/doorless/protocol/internal/kdf"
	"github.com/doorless/doorless/protocol/keys"
)

// Key derivation, as libsignal's sender_keys.rs does it.
const (
	// messageKeysInfo is the HKDF info that expands a message-key seed into the IV and
	// the AES key (SenderMessageKey::new; no salt).
	messageKeysInfo = "WhisperGroup"
	// messageKeysSize is the HKDF output: a 16-byte IV, then a 32-byte AES-256 key.
	messageKeysSize = 16 + 32
)

// Chain-key step inputs (SenderChainKey::MESSAGE_KEY_SEED and CHAIN_KEY_SEED).
var (
	messageKeySeed = []byte{0x01}
	chainKeySeed   = []byte{0x02}
)

var messageKeysLabel = []byte(messageKeysInfo)

// chainKey is the chain at one iteration.
type chainKey struct {
	iteration uint32
	key       [chainKeySize]byte
}

// seed returns the message-key seed of this iteration.
func (c *chainKey) seed() [chainKeySize]byte { return kdf.HMAC(c.key[:], messageKeySeed) }

// next returns the chain at the following iteration, or false at the end of the chain
// (libsignal refuses to step past iteration 2³²-1).
func (c *chainKey) next() (chainKey, bool) {
	if c.iteration == math.MaxUint32 {
		return chainKey{}, false
	}
	return chainKey{iteration: c.iteration + 1, key: kdf.HMAC(c.key[:], chainKeySeed)}, true
}

// skippedKey is the message-key seed of an iteration that has not arrived yet.
type skippedKey struct {
	iteration uint32
	seed      [chainKeySize]byte
}

// state is one sender chain: what libsignal's SenderKeyStateStructure holds.
type state struct {
	chainID    uint32
	chain      chainKey
	signingKey keys.PublicKey
	signing    *keys.PrivateKey // the sender's own chain only
	skipped    []skippedKey     // oldest first, at most MaxMessageKeys
}

// messageKeys are the AES key and IV of one message.
type messageKeys struct {
	iv  [aes.BlockSize]byte
	key [32]byte
}

func deriveMessageKeys(seed *[chainKeySize]byte) messageKeys {
	var okm [messageKeysSize]byte
	kdf.HKDF(okm[:], nil, seed[:], messageKeysLabel)
	var mk messageKeys
	copy(mk.iv[:], okm[:16])
	copy(mk.key[:], okm[16:])
	clear(okm[:])
	return mk
}
