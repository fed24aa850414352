package spqr

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Direction says which party of a session a State belongs to. The
// initiator, who sends the first ML-KEM header, is A2B; the responder is
// B2A (spqr pq_ratchet.proto enum Direction).
type Direction uint8

const (
	A2B Direction = iota // the session's initiator
	B2A                  // the session's responder
)

func (d Direction) String() string {
	switch d {
	case A2B:
		return "A2B"
	case B2A:
		return "B2A"
	default:
		return fmt.Sprintf("Direction(%d)", uint8(d))
	}
}

func (d Direction) other() Direction { return d ^ 1 }

// Params are the parameters of a new session's State, as libsignal passes
// them to spqr::initial_state with version = min_version = V1.
type Params struct {
	AuthKey   []byte // 32 bytes from PQXDH
	Direction Direction
	// MaxJump is the largest allowed gap between the newest received key
	// index of an epoch and a new one: 25000, or math.MaxUint32 for a
	// session with oneself. Zero means the crate's default, 25000.
	MaxJump uint32
	// MaxOOOKeys is how far back out-of-order keys are kept: 2000. Zero
	// means the crate's default, 2000.
	MaxOOOKeys uint32
}

// AuthKeySize is the size of Params.AuthKey.
const AuthKeySize = 32

// Errors returned by this package. Errors from Send and Recv wrap one of
// them; use errors.Is. No error text contains key material.
var (
	// ErrInvalidParams: NewState was given an auth key of the wrong size or
	// an unknown direction.
	ErrInvalidParams = errors.New("spqr: invalid parameters")
	// ErrUnsupportedVersion: the message carries no SPQR data (it is empty
	// or has version 0) or has a version other than V1.
	ErrUnsupportedVersion = errors.New("spqr: unsupported message version")
	// ErrMalformedMessage: the message could not be decoded.
	ErrMalformedMessage = errors.New("spqr: malformed message")
	// ErrEpochOutOfRange: the message belongs to an epoch that has not
	// started yet or whose keys have been discarded.
	ErrEpochOutOfRange = errors.New("spqr: message epoch out of range")
	// ErrKeyAlreadyUsed: the message key was already handed out (a replay).
	ErrKeyAlreadyUsed = errors.New("spqr: message key already used")
	// ErrKeyTooOld: the message key is older than MaxOOOKeys and was
	// discarded.
	ErrKeyTooOld = errors.New("spqr: message key too old")
	// ErrJumpTooLarge: the message index is more than MaxJump ahead.
	ErrJumpTooLarge = errors.New("spqr: message index jump too large")
	// ErrAuthentication: a MAC on the peer's ML-KEM header or ciphertext
	// did not verify.
	ErrAuthentication = errors.New("spqr: authentication failed")
	// ErrBadEncapsulationKey: the peer's ML-KEM encapsulation key does not
	// match its authenticated header or is not a valid key.
	ErrBadEncapsulationKey = errors.New("spqr: encapsulation key does not match header")
	// ErrChainExhausted: 2³²−1 messages were sent in one epoch.
	ErrChainExhausted = errors.New("spqr: message counter exhausted")
	// ErrMalformedState: ParseState was given bytes that are not a valid
	// state, or a State's fields are inconsistent.
	ErrMalformedState = errors.New("spqr: malformed state")
)

// State is one party's SPQR state for a session.
//
// A State is immutable from the caller's point of view: Send and Recv never
// modify the receiver; they return the next state, which shares unchanged
// data with it. A State is therefore safe for concurrent use. The zero State
// is not valid; create one with NewState or ParseState.
type State struct {
	dir   Direction
	scka  scka
	chain chain
	// key is the message key of the Send or Recv that made this state; the key
	// returned to the caller points here, which saves an allocation per message.
	// It is not part of the serialized state.
	key [keySize]byte
}

// NewState returns the initial state of a session, equivalent to
// spqr::initial_state with version V1 and min_version V1.
func NewState(p Params) (*State, error) {
	if len(p.AuthKey) != AuthKeySize {
		return nil, fmt.Errorf("%w: auth key must be %d bytes", ErrInvalidParams, AuthKeySize)
	}
	if p.Direction != A2B && p.Direction != B2A {
		return nil, fmt.Errorf("%w: unknown direction", ErrInvalidParams)
	}
	params := chainParams{maxJump: p.MaxJump, maxOOOKeys: p.MaxOOOKeys}
	if params.maxJump == 0 {
		params.maxJump = defaultMaxJump
	}
	if params.maxOOOKeys == 0 {
		params.maxOOOKeys = defaultMaxOOOKeys
	}
	return &State{
		dir:   p.Direction,
		scka:  newSCKA(p.Direction, p.AuthKey),
		chain: newChain(p.AuthKey, p.Direction, params),
	}, nil
}

// Send advances the state for one outgoing message. It returns the next
// state, the 32-byte message key to mix into the message's keys, and the
// bytes for the message's pq_ratchet field (spqr::send). rand is read only
// when a new ML-KEM key pair or encapsulation is needed.
func (s *State) Send(rand io.Reader) (next *State, key []byte, msg []byte, err error) {
	sc, m, secret, err := s.scka.send(rand)
	if err != nil {
		return nil, nil, nil, err
	}
	ch := s.chain
	if secret != nil {
		if ch, err = ch.addEpoch(secret); err != nil {
			return nil, nil, nil, err
		}
	}
	ch, index, k, err := ch.sendKey(m.epoch - 1)
	if err != nil {
		return nil, nil, nil, err
	}
	next = &State{dir: s.dir, scka: sc, chain: ch, key: k}
	return next, next.key[:], m.marshal(index), nil
}

// Recv advances the state for one incoming message's pq_ratchet bytes
// (spqr::recv). It returns the next state and the 32-byte message key. The
// key is nil only for a message of epoch 1 with index 0, which the crate
// accepts without a key; a V1 peer never sends one.
//
// The caller should keep the old state until the message as a whole has
// been authenticated, and discard the returned one otherwise.
func (s *State) Recv(msg []byte) (next *State, key []byte, err error) {
	if len(msg) == 0 || msg[0] == 0 {
		return nil, nil, fmt.Errorf("%w: message has no V1 data", ErrUnsupportedVersion)
	}
	if msg[0] != protocolVersionV1 {
		return nil, nil, fmt.Errorf("%w: version %d", ErrUnsupportedVersion, msg[0])
	}
	m, index, err := parseMessage(msg)
	if err != nil {
		return nil, nil, err
	}
	sc, secret, err := s.scka.recv(&m)
	if err != nil {
		return nil, nil, err
	}
	ch := s.chain
	if secret != nil {
		if ch, err = ch.addEpoch(secret); err != nil {
			return nil, nil, err
		}
	}
	next = &State{dir: s.dir, scka: sc}
	if keyEpoch := m.epoch - 1; keyEpoch != 0 || index != 0 {
		if ch, next.key, err = ch.recvKey(keyEpoch, index); err != nil {
			return nil, nil, err
		}
		key = next.key[:]
	}
	next.chain = ch
	return next, key, nil
}

// String describes the state without revealing key material.
func (s *State) String() string {
	return fmt.Sprintf("spqr.State{%v epoch=%d %v}", s.dir, s.scka.epoch, s.scka.kind)
}

// LogValue implements slog.LogValuer without revealing key material.
func (s *State) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("direction", s.dir.String()),
		slog.Uint64("epoch", s.scka.epoch),
		slog.String("state", s.scka.kind.String()),
	)
}
