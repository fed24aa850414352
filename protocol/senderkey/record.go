package senderkey

import (
	"crypto/aes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/doorless/doorless/protocol/internal/cbc"
	"github.com/doorless/doorless/protocol/keys"
)

// Limits, as libsignal's consts.rs sets them.
const (
	// MaxStates is how many chains a record keeps (MAX_SENDER_KEY_STATES); processing a
	// new distribution message drops the oldest beyond it.
	MaxStates = 5
	// MaxMessageKeys is how many skipped message keys a chain keeps (MAX_MESSAGE_KEYS);
	// the oldest are dropped first.
	MaxMessageKeys = 2000
	// MaxForwardJumps is how far ahead of its chain a message may be (MAX_FORWARD_JUMPS).
	MaxForwardJumps = 25_000
	// MaxPlaintextSize is the longest plaintext Encrypt takes: the message it makes must
	// stay within MaxMessageSize.
	MaxPlaintextSize = MaxMessageSize - 1024
)

var (
	// ErrInvalidMessage is returned for a message that is malformed, or whose
	// ciphertext does not decrypt under a valid signature.
	ErrInvalidMessage = errors.New("senderkey: invalid message")
	// ErrUnsupportedVersion is returned for a message of a version other than 3.
	ErrUnsupportedVersion = errors.New("senderkey: unsupported message version")
	// ErrNoSenderKeyState is returned when the record has no chain for the message (the
	// receiver never processed the sender's distribution message for that chain), or no
	// chain at all to encrypt with. The receiver's remedy is to ask the sender for its
	// distribution message again.
	ErrNoSenderKeyState = errors.New("senderkey: no sender key state")
	// ErrDistributionMismatch is returned for a message of another distribution than
	// the record's: the caller loaded the wrong record.
	ErrDistributionMismatch = errors.New("senderkey: message is for another distribution")
	// ErrInvalidSignature is returned for a message whose signature does not verify
	// with the chain's signing key: forged or tampered with.
	ErrInvalidSignature = errors.New("senderkey: invalid message signature")
	// ErrDuplicateMessage is returned for a message whose key has already been used (a
	// replay, or a message delivered twice), or was dropped as too old.
	ErrDuplicateMessage = errors.New("senderkey: duplicate message")
	// ErrTooFarAhead is returned for a message more than MaxForwardJumps iterations
	// ahead of its chain.
	ErrTooFarAhead = errors.New("senderkey: message too far ahead of its chain")
	// ErrChainExhausted is returned when a chain is at its last iteration (2³²-1) and
	// cannot step further: rotate.
	ErrChainExhausted = errors.New("senderkey: chain exhausted")
	// ErrNotSender is returned by the sender's operations on a record whose newest
	// chain is someone else's (it has no private signing key).
	ErrNotSender = errors.New("senderkey: record holds no own sender key")
	// ErrMessageTooLarge is returned by Encrypt for a plaintext over MaxPlaintextSize.
	ErrMessageTooLarge = errors.New("senderkey: plaintext too large")
	// ErrCorruptRecord is returned by ParseRecord for bytes that are not a record.
	ErrCorruptRecord = errors.New("senderkey: corrupt record")
)

// Record holds one device's sender-key chains for one sender (possibly itself) in one
// distribution: at most MaxStates chains, newest first. The zero value is an empty
// record of the nil distribution id; NewRecord names the distribution.
type Record struct {
	id     DistributionID
	states []*state // newest first
}

// NewRecord returns an empty record for distribution id.
func NewRecord(id DistributionID) *Record { return &Record{id: id} }

// DistributionID returns the distribution the record belongs to.
func (r *Record) DistributionID() DistributionID { return r.id }

// ChainIDs returns the ids of the record's chains, newest first.
func (r *Record) ChainIDs() []uint32 {
	ids := make([]uint32, len(r.states))
	for i, s := range r.states {
		ids[i] = s.chainID
	}
	return ids
}

// CanEncrypt reports whether the record's newest chain is the device's own, so that
// Encrypt and DistributionMessage work.
func (r *Record) CanEncrypt() bool { return len(r.states) > 0 && r.states[0].signing != nil }

// String describes the record without any key material.
func (r *Record) String() string {
	return fmt.Sprintf("senderkey.Record{distribution: %s, chains: %v, own: %t}", r.id, r.ChainIDs(), r.CanEncrypt())
}

// GoString describes the record for %#v, without any key material.
func (r *Record) GoString() string { return r.String() }

// LogValue describes the record for slog, without any key material.
func (r *Record) LogValue() slog.Value { return slog.StringValue(r.String()) }

// newOwnState makes a chain as libsignal's create_sender_key_distribution_message does:
// a random 31-bit chain id (libsignal-protocol-java's range), a random chain key at
// iteration 0 and a new signing key pair.
func newOwnState(rnd io.Reader) (*state, error) {
	rnd = randReader(rnd)
	var b [4 + chainKeySize]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, fmt.Errorf("senderkey: reading randomness: %w", err)
	}
	signing, err := keys.GeneratePrivateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("senderkey: %w", err)
	}
	s := &state{
		chainID:    binary.BigEndian.Uint32(b[:4]) >> 1,
		signingKey: signing.PublicKey(),
		signing:    signing,
	}
	copy(s.chain.key[:], b[4:])
	clear(b[:])
	return s, nil
}

// DistributionMessage returns the message that lets members decrypt the device's own
// messages in this distribution from the chain's current iteration on. On an empty
// record it first creates the device's chain (as libsignal's
// create_sender_key_distribution_message); otherwise it reuses the newest chain, which
// must be the device's own (ErrNotSender). rnd supplies randomness (nil: crypto/rand).
func (r *Record) DistributionMessage(rnd io.Reader) (*DistributionMessage, error) {
	if len(r.states) == 0 {
		s, err := newOwnState(rnd)
		if err != nil {
			return nil, err
		}
		r.states = []*state{s}
	}
	s := r.states[0]
	if s.signing == nil {
		return nil, ErrNotSender
	}
	return newDistributionMessage(r.id, s.chainID, s.chain.iteration, &s.chain.key, s.signingKey), nil
}

// Rotate replaces the device's own chain with a new one (new chain id, chain key and
// signing key) and returns its distribution message, to be sent to the current members
// only; it is libsignal's deleting the sender key record and creating a new one. Members
// who do not get the new message cannot decrypt anything sent afterwards. The record must
// be empty or the device's own (ErrNotSender).
func (r *Record) Rotate(rnd io.Reader) (*DistributionMessage, error) {
	if len(r.states) > 0 && r.states[0].signing == nil {
		return nil, ErrNotSender
	}
	s, err := newOwnState(rnd)
	if err != nil {
		return nil, err
	}
	r.states = []*state{s}
	return newDistributionMessage(r.id, s.chainID, s.chain.iteration, &s.chain.key, s.signingKey), nil
}

// Encrypt seals plaintext as the next message of the device's own chain (libsignal
// group_encrypt): AES-256-CBC under the chain's current message key, signed with the
// chain's signing key, after which the chain steps on. rnd supplies the signature's
// randomness (nil: crypto/rand). It returns the serialized Message.
func (r *Record) Encrypt(plaintext []byte, rnd io.Reader) ([]byte, error) {
	if len(r.states) == 0 {
		return nil, ErrNoSenderKeyState
	}
	s := r.states[0]
	if s.signing == nil {
		return nil, ErrNotSender
	}
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessageTooLarge, len(plaintext))
	}
	next, ok := s.chain.next()
	if !ok {
		return nil, ErrChainExhausted
	}
	seed := s.chain.seed()
	mk := deriveMessageKeys(&seed)
	ctLen := (len(plaintext)/aes.BlockSize + 1) * aes.BlockSize
	b := make([]byte, 0, 48+ctLen+signatureSize)
	b = appendMessagePrefix(b, r.id, s.chainID, s.chain.iteration, ctLen)
	b = cbc.Encrypt(b, &mk.key, &mk.iv, plaintext)
	clear(mk.key[:])
	sig, err := s.signing.Sign(rnd, b)
	if err != nil {
		return nil, fmt.Errorf("senderkey: %w", err)
	}
	s.chain = next
	return append(b, sig...), nil
}

// Process adds the chain of a sender's distribution message to the record (libsignal
// process_sender_key_distribution_message). A chain the record already has, with the
// same signing key, is kept as it is (it may be further along) and becomes the newest;
// a chain of the same id with another signing key is replaced. Beyond MaxStates chains
// the oldest is dropped. The caller must have received m from the sender over an
// authenticated session.
func (r *Record) Process(m *DistributionMessage) error {
	if m.distributionID != r.id {
		return fmt.Errorf("%w: distribution message for %s, record of %s", ErrDistributionMismatch, m.distributionID, r.id)
	}
	var existing *state
	rest := make([]*state, 0, MaxStates)
	for _, s := range r.states {
		if s.chainID != m.chainID {
			rest = append(rest, s)
		} else if existing == nil && s.signingKey.Equal(m.signingKey) {
			existing = s
		}
	}
	if existing == nil {
		existing = &state{
			chainID:    m.chainID,
			chain:      chainKey{iteration: m.iteration, key: m.chainKey},
			signingKey: m.signingKey,
		}
	}
	if len(rest) >= MaxStates {
		rest = rest[:MaxStates-1]
	}
	r.states = append([]*state{existing}, rest...)
	return nil
}

// Decrypt opens a message from the record's sender (libsignal group_decrypt): it finds
// the message's chain, checks the signature, and decrypts with the message key of its
// iteration, keeping the keys of iterations skipped on the way (at most MaxMessageKeys)
// for messages that arrive late. Any failure leaves the record unchanged.
func (r *Record) Decrypt(m *Message) ([]byte, error) {
	if m.distributionID != r.id {
		return nil, fmt.Errorf("%w: message for %s, record of %s", ErrDistributionMismatch, m.distributionID, r.id)
	}
	var s *state
	for _, st := range r.states {
		if st.chainID == m.chainID {
			s = st
			break
		}
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no chain %d in distribution %s", ErrNoSenderKeyState, m.chainID, r.id)
	}
	n := len(m.serialized) - signatureSize
	if !s.signingKey.Verify(m.serialized[n:], m.serialized[:n]) {
		return nil, ErrInvalidSignature
	}

	if m.iteration < s.chain.iteration {
		for i := range s.skipped {
			if s.skipped[i].iteration != m.iteration {
				continue
			}
			pt, err := open(&s.skipped[i].seed, m.ciphertext)
			if err != nil {
				return nil, err
			}
			clear(s.skipped[i].seed[:])
			s.skipped = append(s.skipped[:i], s.skipped[i+1:]...)
			return pt, nil
		}
		return nil, fmt.Errorf("%w: iteration %d, chain at %d", ErrDuplicateMessage, m.iteration, s.chain.iteration)
	}
	if jump := m.iteration - s.chain.iteration; jump > MaxForwardJumps {
		return nil, fmt.Errorf("%w: iteration %d, chain at %d", ErrTooFarAhead, m.iteration, s.chain.iteration)
	}

	// Step to the message's iteration, keeping the seeds of the iterations passed; only
	// the last MaxMessageKeys of all the seeds kept survive, so older ones are not made.
	c := s.chain
	jump := int(m.iteration - c.iteration)
	var skipped []skippedKey
	if jump > 0 {
		skipped = make([]skippedKey, 0, min(jump, MaxMessageKeys))
	}
	for k := 0; c.iteration < m.iteration; k++ {
		if k >= jump-MaxMessageKeys {
			skipped = append(skipped, skippedKey{iteration: c.iteration, seed: c.seed()})
		}
		c, _ = c.next() // c.iteration < m.iteration, so there is a next
	}
	next, ok := c.next()
	if !ok {
		return nil, ErrChainExhausted
	}
	seed := c.seed()
	pt, err := open(&seed, m.ciphertext)
	if err != nil {
		return nil, err
	}
	s.skipped = keepNewest(s.skipped, skipped)
	s.chain = next
	return pt, nil
}

// keepNewest returns old followed by added, trimmed to its newest MaxMessageKeys.
func keepNewest(old, added []skippedKey) []skippedKey {
	all := append(old, added...)
	if over := len(all) - MaxMessageKeys; over > 0 {
		for i := range all[:over] {
			clear(all[i].seed[:])
		}
		all = append(all[:0], all[over:]...)
	}
	return all
}

// open decrypts one message's ciphertext with the keys of a message-key seed.
func open(seed *[chainKeySize]byte, ciphertext []byte) ([]byte, error) {
	mk := deriveMessageKeys(seed)
	pt, err := cbc.Decrypt(&mk.key, &mk.iv, ciphertext)
	clear(mk.key[:])
	if err != nil {
		return nil, fmt.Errorf("%w: decryption failed: %v", ErrInvalidMessage, err)
	}
	return pt, nil
}
