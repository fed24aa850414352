package session

import (
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/doorless/doorless/protocol/internal/cbc"
	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/spqr"
)

// Limits, as libsignal's consts.rs sets them.
const (
	// MaxForwardJumps is how far ahead of its chain a message may be (MAX_FORWARD_JUMPS).
	MaxForwardJumps = 25_000
	// MaxMessageKeys is how many skipped message keys a receiving chain keeps
	// (MAX_MESSAGE_KEYS); the oldest are dropped first.
	MaxMessageKeys = 2000
	// MaxReceiverChains is how many receiving chains a session keeps (MAX_RECEIVER_CHAINS).
	MaxReceiverChains = 5
	// MaxArchivedStates is how many archived sessions a record keeps
	// (ARCHIVED_STATES_MAX_LENGTH).
	MaxArchivedStates = 40
	// MaxUnacknowledgedSessionAge is how long an initiated session may go without a
	// reply before it can no longer send (MAX_UNACKNOWLEDGED_SESSION_AGE).
	MaxUnacknowledgedSessionAge = 30 * 24 * time.Hour
)

var (
	// ErrInvalidMessage is returned for a message that is malformed or does not
	// authenticate. Nothing was changed.
	ErrInvalidMessage = errors.New("session: invalid message")
	// ErrUnsupportedVersion is returned for a message of a version other than 4.
	ErrUnsupportedVersion = errors.New("session: unsupported message version")
	// ErrNoSession is returned when there is no usable session to encrypt or decrypt with.
	ErrNoSession = errors.New("session: no session")
	// ErrStaleSession is returned by Encrypt for an initiated session that has had no
	// reply for MaxUnacknowledgedSessionAge: fetch a new bundle.
	ErrStaleSession = errors.New("session: unacknowledged session is too old")
	// ErrBadSignature is returned for a bundle whose prekey signatures do not verify.
	ErrBadSignature = errors.New("session: bundle signature does not verify")
	// ErrMissingPreKey is returned when a PreKeySignalMessage names a prekey the
	// PreKeyStore does not have.
	ErrMissingPreKey = errors.New("session: prekey not found")
	// ErrCorruptState is returned by ParseRecord for bytes that are not a record.
	ErrCorruptState = errors.New("session: corrupt session state")
)

// DuplicateMessageError is returned for a message whose keys have already been used: a
// replay, or a message delivered twice. The session is unchanged.
type DuplicateMessageError struct {
	ChainIndex, Counter uint32
}

func (e *DuplicateMessageError) Error() string {
	return fmt.Sprintf("session: duplicate message (counter %d, chain at %d)", e.Counter, e.ChainIndex)
}

// TooFarAheadError is returned for a message further ahead of its chain than the
// session allows.
type TooFarAheadError struct {
	ChainIndex, Counter uint32
}

func (e *TooFarAheadError) Error() string {
	return fmt.Sprintf("session: message %d is too far ahead of the chain at %d", e.Counter, e.ChainIndex)
}

// Is makes errors.Is(err, ErrInvalidMessage) true, as for every message-level failure.
func (e *TooFarAheadError) Is(target error) bool { return target == ErrInvalidMessage }

// chain is one sending or receiving chain of the Double Ratchet.
type chain struct {
	ratchetKey keys.PublicKey
	key        [32]byte
	index      uint32
	skipped    []skippedKey // receiving chains only; oldest first
}

// skippedKey is the message-key seed of a message that has not arrived yet. Seeds, not
// keys, are kept: the SPQR key that salts the message keys is only known on arrival.
type skippedKey struct {
	index uint32
	seed  [32]byte
}

// pendingPreKey is what an initiator puts in every message until the peer replies.
type pendingPreKey struct {
	preKeyID        uint32
	hasPreKeyID     bool
	signedPreKeyID  uint32
	kyberPreKeyID   uint32
	kyberCiphertext []byte
	baseKey         keys.PublicKey
	createdAt       time.Time
	addresses       []byte // both addresses, bound into the MAC; nil unless service ids
}

// state is one session: the Double Ratchet, SPQR, and what identifies the session.
type state struct {
	version        uint8
	localIdentity  keys.PublicKey
	remoteIdentity keys.PublicKey
	localRegID     uint32
	remoteRegID    uint32
	aliceBaseKey   keys.PublicKey // identifies the session across repeated prekey messages
	selfSession    bool           // a session between two devices of one account

	root            [32]byte
	sender          chain
	senderPrivate   *keys.PrivateKey
	receivers       []chain // oldest first, at most MaxReceiverChains
	previousCounter uint32

	pqr     *spqr.State
	noPQR   bool // a session without SPQR, made only by tests (see testWithoutPQR)
	pending *pendingPreKey

	mac macState // scratch; not part of the state
}

func (s *state) maxJump() uint32 {
	if s.selfSession {
		return math.MaxUint32
	}
	return MaxForwardJumps
}

func spqrParams(authKey *[32]byte, dir spqr.Direction, self bool) spqr.Params {
	p := spqr.Params{AuthKey: authKey[:], Direction: dir, MaxJump: MaxForwardJumps, MaxOOOKeys: MaxMessageKeys}
	if self {
		p.MaxJump = math.MaxUint32
	}
	return p
}

func randReader(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// testWithoutPQR makes new sessions behave as a peer without SPQR: no pq_ratchet field
// is sent, a received one is ignored (an unknown field to such a peer), and message keys
// are derived without the SPQR salt. Only tests set it, to show that libsignal 0.103
// does not interoperate with such a peer.
var testWithoutPQR bool

func (s *state) pqrSend(r io.Reader) (*spqr.State, []byte, []byte, error) {
	if s.noPQR {
		return nil, nil, nil, nil
	}
	return s.pqr.Send(r)
}

func (s *state) pqrRecv(msg []byte) (*spqr.State, []byte, error) {
	if s.noPQR {
		return nil, nil, nil
	}
	return s.pqr.Recv(msg)
}

// encrypt seals plaintext as the next message of the sending chain.
func (s *state) encrypt(plaintext []byte, now time.Time, r io.Reader) (MessageType, []byte, error) {
	if s.pending != nil && now.After(s.pending.createdAt.Add(MaxUnacknowledgedSessionAge)) {
		return 0, nil, ErrStaleSession
	}
	if s.sender.index == math.MaxUint32 {
		// The counter would wrap and reuse keys; the peer has not replied in 2^32
		// messages, so the session is spent.
		return 0, nil, ErrNoSession
	}
	nextPQR, pqrKey, pqrMsg, err := s.pqrSend(r)
	if err != nil {
		return 0, nil, fmt.Errorf("session: post-quantum ratchet: %w", err)
	}
	seed, nextChain := chainStep(&s.sender.key)
	mk := deriveMessageKeys(&seed, pqrKey)

	var msgAddresses []byte
	if s.pending != nil {
		msgAddresses = s.pending.addresses
	}
	var ratchetKey [keys.PublicKeySize]byte
	body := wire.SignalMessage{
		RatchetKey:      s.sender.ratchetKey.AppendBytes(ratchetKey[:0]),
		Counter:         s.sender.index,
		PreviousCounter: s.previousCounter,
		PQRatchet:       pqrMsg,
		Addresses:       msgAddresses,
	}
	// One buffer holds the version byte, the protobuf, and the MAC; the ciphertext is
	// encrypted in place, in the middle of the protobuf.
	ctLen := (len(plaintext)/aes.BlockSize + 1) * aes.BlockSize
	buf := make([]byte, 0, 1+body.Size()+binary.MaxVarintLen32+ctLen+macSize)
	buf = append(buf, versionByte)
	buf = body.AppendPrefix(buf, ctLen)
	buf = cbc.Encrypt(buf, &mk.cipher, &mk.iv, plaintext)
	buf = body.AppendSuffix(buf)
	mac := computeMAC(&s.mac, &mk.mac, s.localIdentity, s.remoteIdentity, buf)
	buf = append(buf, mac[:]...)

	out, typ := buf, TypeWhisper
	if s.pending != nil {
		out, typ = s.wrapPreKey(buf), TypePreKey
	}
	s.sender.key, s.sender.index = nextChain, s.sender.index+1
	s.pqr = nextPQR
	return typ, out, nil
}

func (s *state) wrapPreKey(signalMessage []byte) []byte {
	p := s.pending
	m := wire.PreKeySignalMessage{
		RegistrationID:     s.localRegID,
		PreKeyID:           p.preKeyID,
		HasPreKeyID:        p.hasPreKeyID,
		SignedPreKeyID:     p.signedPreKeyID,
		KyberPreKeyID:      p.kyberPreKeyID,
		HasKyberPreKeyID:   true,
		KyberCiphertext:    p.kyberCiphertext,
		HasKyberCiphertext: true,
		BaseKey:            p.baseKey.Bytes(),
		IdentityKey:        s.localIdentity.Bytes(),
		Message:            signalMessage,
	}
	out := make([]byte, 0, 64+len(p.kyberCiphertext)+len(signalMessage))
	out = append(out, versionByte)
	return m.Append(out)
}

// receiveUpdate is everything a successful decryption changes, computed before anything
// is changed so that a failure leaves the state as it was.
type receiveUpdate struct {
	chainIdx int // index into receivers, or -1 for a new chain from a ratchet step

	// ratchet step
	newRoot         [32]byte
	newChain        chain
	newSender       chain
	newSenderKey    *keys.PrivateKey
	previousCounter uint32

	skippedUsed  int // index of the skipped key used, or -1
	newSkipped   []skippedKey
	nextChainKey [32]byte
	nextIndex    uint32
	advance      bool // whether the chain key moves on

	nextPQR *spqr.State
}

// decrypt opens a SignalMessage under this session, or returns an error and changes
// nothing.
func (s *state) decrypt(m *SignalMessage, addrs *addressPair, r io.Reader) ([]byte, error) {
	if m.version != s.version {
		return nil, fmt.Errorf("%w: message version %d, session version %d", ErrUnsupportedVersion, m.version, s.version)
	}
	u := receiveUpdate{chainIdx: -1, skippedUsed: -1}
	var rc *chain
	for i := range s.receivers {
		if s.receivers[i].ratchetKey.Equal(m.ratchetKey) {
			u.chainIdx, rc = i, &s.receivers[i]
			break
		}
	}
	if rc == nil {
		if s.senderPrivate == nil {
			return nil, fmt.Errorf("%w: session has no sending chain", ErrCorruptState)
		}
		if err := s.prepareRatchetStep(&u, m.ratchetKey, r); err != nil {
			return nil, err
		}
		rc = &u.newChain
	}

	counter := m.body.Counter
	var seed [32]byte
	switch {
	case counter < rc.index:
		for i := len(rc.skipped) - 1; i >= 0; i-- {
			if rc.skipped[i].index == counter {
				u.skippedUsed, seed = i, rc.skipped[i].seed
				break
			}
		}
		if u.skippedUsed < 0 {
			return nil, &DuplicateMessageError{ChainIndex: rc.index, Counter: counter}
		}
	default:
		// The last counter is refused too: the chain index after it would wrap to 0.
		if counter-rc.index > s.maxJump() || counter == math.MaxUint32 {
			return nil, &TooFarAheadError{ChainIndex: rc.index, Counter: counter}
		}
		key, index := rc.key, rc.index
		if jump := int(counter - index); jump > 0 {
			u.newSkipped = make([]skippedKey, 0, min(jump, MaxMessageKeys))
		}
		for index < counter {
			sk, next := chainStep(&key)
			u.newSkipped = appendSkipped(u.newSkipped, skippedKey{index: index, seed: sk})
			key, index = next, index+1
		}
		seed, u.nextChainKey = chainStep(&key)
		u.nextIndex, u.advance = index+1, true
	}

	nextPQR, pqrKey, err := s.pqrRecv(m.body.PQRatchet)
	if err != nil {
		return nil, fmt.Errorf("%w: post-quantum ratchet: %v", ErrInvalidMessage, err)
	}
	u.nextPQR = nextPQR
	mk := deriveMessageKeys(&seed, pqrKey)
	if !m.verifyMAC(&s.mac, &mk.mac, s.remoteIdentity, s.localIdentity, addrs) {
		return nil, fmt.Errorf("%w: bad MAC", ErrInvalidMessage)
	}
	plaintext, err := cbc.Decrypt(&mk.cipher, &mk.iv, m.body.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	s.apply(&u)
	return plaintext, nil
}

// appendSkipped appends k, keeping at most MaxMessageKeys of the newest keys.
func appendSkipped(ks []skippedKey, k skippedKey) []skippedKey {
	if len(ks) == MaxMessageKeys {
		copy(ks, ks[1:])
		ks = ks[:len(ks)-1]
	}
	return append(ks, k)
}

// prepareRatchetStep computes a DH ratchet step for a new ratchet key from the peer
// (DoubleRatchet::dh_ratchet_step), without applying it.
func (s *state) prepareRatchetStep(u *receiveUpdate, theirs keys.PublicKey, r io.Reader) error {
	dh, err := s.senderPrivate.Agree(theirs)
	if err != nil {
		return fmt.Errorf("%w: ratchet key: %v", ErrInvalidMessage, err)
	}
	root, recvChain := rootStep(&s.root, &dh)
	newKey, err := keys.GeneratePrivateKey(r)
	if err != nil {
		return err
	}
	dh2, err := newKey.Agree(theirs)
	if err != nil {
		return fmt.Errorf("%w: ratchet key: %v", ErrInvalidMessage, err)
	}
	finalRoot, sendChain := rootStep(&root, &dh2)
	u.newRoot = finalRoot
	u.newChain = chain{ratchetKey: theirs, key: recvChain}
	u.newSender = chain{ratchetKey: newKey.PublicKey(), key: sendChain}
	u.newSenderKey = newKey
	if s.sender.index > 0 {
		u.previousCounter = s.sender.index - 1
	}
	return nil
}

// apply commits a successful decryption.
func (s *state) apply(u *receiveUpdate) {
	if u.chainIdx < 0 {
		s.root = u.newRoot
		s.sender, s.senderPrivate = u.newSender, u.newSenderKey
		s.previousCounter = u.previousCounter
		if len(s.receivers) == MaxReceiverChains {
			s.receivers = append(s.receivers[:0], s.receivers[1:]...)
		}
		s.receivers = append(s.receivers, u.newChain)
		u.chainIdx = len(s.receivers) - 1
	}
	rc := &s.receivers[u.chainIdx]
	if u.skippedUsed >= 0 {
		rc.skipped = append(rc.skipped[:u.skippedUsed], rc.skipped[u.skippedUsed+1:]...)
	}
	for _, k := range u.newSkipped {
		rc.skipped = appendSkipped(rc.skipped, k)
	}
	if u.advance {
		rc.key, rc.index = u.nextChainKey, u.nextIndex
	}
	s.pqr = u.nextPQR
	s.pending = nil // a reply acknowledges the session
}
