package senderkey

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/uuid"
	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// Message versions and sizes, as libsignal's protocol.rs defines them.
const (
	// MessageVersion is the version of sender-key messages and distribution messages
	// (SENDERKEY_MESSAGE_CURRENT_VERSION); libsignal accepts no other.
	MessageVersion = 3
	// versionByte starts every message: the message version in the high nibble and the
	// current version in the low nibble. Parsers read only the high nibble, as libsignal.
	versionByte = MessageVersion<<4 | MessageVersion
	// signatureSize is the XEdDSA signature that ends a Message.
	signatureSize = keys.SignatureSize
	// minDistributionSize is libsignal's lower bound on a distribution message: a version
	// byte, a chain key and a key's worth of bytes.
	minDistributionSize = 1 + 32 + 32
	// chainKeySize is the size of a chain key and of a message-key seed.
	chainKeySize = 32
	// MaxMessageSize bounds the messages this package parses and therefore the messages
	// Encrypt makes: far above a group text message, it keeps a hostile input from
	// costing unbounded work.
	MaxMessageSize = 1 << 20
)

// Protobuf field numbers of SenderKeyMessage (libsignal wire.proto).
const (
	skmDistributionID = 1
	skmChainID        = 2
	skmIteration      = 3
	skmCiphertext     = 4
)

// Protobuf field numbers of SenderKeyDistributionMessage (libsignal wire.proto).
const (
	skdmDistributionID = 1
	skdmChainID        = 2
	skdmIteration      = 3
	skdmChainKey       = 4
	skdmSigningKey     = 5
)

// DistributionID names one sender key of a group: a UUID, carried as its 16 bytes in
// network order. The zero value is the nil UUID.
type DistributionID [16]byte

// NewDistributionID returns a random (version 4) UUID, reading r (crypto/rand when nil).
func NewDistributionID(r io.Reader) (DistributionID, error) {
	var d DistributionID
	if _, err := io.ReadFull(randReader(r), d[:]); err != nil {
		return DistributionID{}, fmt.Errorf("senderkey: reading randomness: %w", err)
	}
	d[6] = d[6]&0x0f | 0x40 // version 4
	d[8] = d[8]&0x3f | 0x80 // RFC 4122 variant
	return d, nil
}

// ParseDistributionID reads a UUID in its hyphenated form (8-4-4-4-12 hex digits, any case).
func ParseDistributionID(s string) (DistributionID, error) {
	d, ok := uuid.Parse(s)
	if !ok {
		return DistributionID{}, fmt.Errorf("senderkey: distribution id %q is not a hyphenated UUID", s)
	}
	return d, nil
}

// String returns the UUID in lower-case hyphenated form.
func (d DistributionID) String() string { return uuid.Format(d) }

// Message is a parsed sender-key message (libsignal SenderKeyMessage): the version
// byte, a protobuf with the distribution id, chain id, iteration and ciphertext, and an
// XEdDSA signature over everything before it. Its fields alias the bytes it was parsed
// from, which the caller must not modify while it is in use.
type Message struct {
	distributionID DistributionID
	chainID        uint32
	iteration      uint32
	ciphertext     []byte
	serialized     []byte
}

// ParseMessage decodes a Message. The signature is checked by Record.Decrypt, which
// knows the sender's public signing key.
func ParseMessage(b []byte) (*Message, error) {
	if len(b) < 1+signatureSize || len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: sender key message of %d bytes", ErrInvalidMessage, len(b))
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	m := &Message{serialized: b}
	var hasID, hasChain, hasIteration, hasCiphertext bool
	var id []byte
	err := wire.Walk(b[1:len(b)-signatureSize], func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case skmDistributionID:
			id, hasID = bs, true
			return wantType(typ, protowire.BytesType)
		case skmChainID:
			m.chainID, hasChain = uint32(v), true
			return wantType(typ, protowire.VarintType)
		case skmIteration:
			m.iteration, hasIteration = uint32(v), true
			return wantType(typ, protowire.VarintType)
		case skmCiphertext:
			m.ciphertext, hasCiphertext = bs, true
			return wantType(typ, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if !hasID || !hasChain || !hasIteration || !hasCiphertext {
		return nil, fmt.Errorf("%w: sender key message is missing a field", ErrInvalidMessage)
	}
	if len(id) != len(m.distributionID) {
		return nil, fmt.Errorf("%w: distribution id of %d bytes", ErrInvalidMessage, len(id))
	}
	copy(m.distributionID[:], id)
	return m, nil
}

// DistributionID returns the distribution the message belongs to: the caller loads the
// record of (sender, DistributionID) to decrypt it.
func (m *Message) DistributionID() DistributionID { return m.distributionID }

// ChainID returns the id of the sender's chain that encrypted the message.
func (m *Message) ChainID() uint32 { return m.chainID }

// Iteration returns the message's index in its chain.
func (m *Message) Iteration() uint32 { return m.iteration }

// Bytes returns the serialized message.
func (m *Message) Bytes() []byte { return m.serialized }

// appendMessagePrefix appends the unsigned part of a Message up to its ciphertext
// (version byte, then the protobuf in libsignal's field order, ending with the
// ciphertext's tag and length), so that the caller can encrypt straight into the buffer.
func appendMessagePrefix(b []byte, id DistributionID, chainID, iteration uint32, ctLen int) []byte {
	b = append(b, versionByte)
	b = protowire.AppendTag(b, skmDistributionID, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:])
	b = protowire.AppendTag(b, skmChainID, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(chainID))
	b = protowire.AppendTag(b, skmIteration, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(iteration))
	b = protowire.AppendTag(b, skmCiphertext, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(ctLen))
}

// DistributionMessage is a parsed sender-key distribution message (libsignal
// SenderKeyDistributionMessage): what a member needs to decrypt a sender's messages from
// one iteration of its chain on. It holds the chain key, a secret: send it only inside
// one-to-one sessions, and do not log it (it prints without the key).
type DistributionMessage struct {
	distributionID DistributionID
	chainID        uint32
	iteration      uint32
	chainKey       [chainKeySize]byte
	signingKey     keys.PublicKey
	serialized     []byte
}

// ParseDistributionMessage decodes a DistributionMessage. The result does not alias b.
func ParseDistributionMessage(b []byte) (*DistributionMessage, error) {
	if len(b) < minDistributionSize || len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: distribution message of %d bytes", ErrInvalidMessage, len(b))
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	m := &DistributionMessage{}
	var id, chainKey, signingKey []byte
	var hasChain, hasIteration bool
	err := wire.Walk(b[1:], func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case skdmDistributionID:
			id = bs
			return wantType(typ, protowire.BytesType)
		case skdmChainID:
			m.chainID, hasChain = uint32(v), true
			return wantType(typ, protowire.VarintType)
		case skdmIteration:
			m.iteration, hasIteration = uint32(v), true
			return wantType(typ, protowire.VarintType)
		case skdmChainKey:
			chainKey = bs
			return wantType(typ, protowire.BytesType)
		case skdmSigningKey:
			signingKey = bs
			return wantType(typ, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	// Walk gives a present bytes field a non-nil slice, so nil means absent.
	if id == nil || !hasChain || !hasIteration || chainKey == nil || signingKey == nil {
		return nil, fmt.Errorf("%w: distribution message is missing a field", ErrInvalidMessage)
	}
	if len(id) != len(m.distributionID) {
		return nil, fmt.Errorf("%w: distribution id of %d bytes", ErrInvalidMessage, len(id))
	}
	if len(chainKey) != chainKeySize {
		return nil, fmt.Errorf("%w: chain key of %d bytes", ErrInvalidMessage, len(chainKey))
	}
	if m.signingKey, err = keys.ParsePublicKey(signingKey); err != nil {
		return nil, fmt.Errorf("%w: signing key: %v", ErrInvalidMessage, err)
	}
	copy(m.distributionID[:], id)
	copy(m.chainKey[:], chainKey)
	m.serialized = append([]byte(nil), b...)
	return m, nil
}

// newDistributionMessage serializes a distribution message as libsignal does.
func newDistributionMessage(id DistributionID, chainID, iteration uint32, chainKey *[chainKeySize]byte, signingKey keys.PublicKey) *DistributionMessage {
	b := []byte{versionByte}
	b = protowire.AppendTag(b, skdmDistributionID, protowire.BytesType)
	b = protowire.AppendBytes(b, id[:])
	b = protowire.AppendTag(b, skdmChainID, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(chainID))
	b = protowire.AppendTag(b, skdmIteration, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(iteration))
	b = protowire.AppendTag(b, skdmChainKey, protowire.BytesType)
	b = protowire.AppendBytes(b, chainKey[:])
	b = protowire.AppendTag(b, skdmSigningKey, protowire.BytesType)
	b = signingKey.AppendBytes(protowire.AppendVarint(b, keys.PublicKeySize))
	return &DistributionMessage{
		distributionID: id,
		chainID:        chainID,
		iteration:      iteration,
		chainKey:       *chainKey,
		signingKey:     signingKey,
		serialized:     b,
	}
}

// DistributionID returns the distribution the message belongs to.
func (m *DistributionMessage) DistributionID() DistributionID { return m.distributionID }

// ChainID returns the id of the sender's chain.
func (m *DistributionMessage) ChainID() uint32 { return m.chainID }

// Iteration returns the first iteration of the chain a receiver can decrypt.
func (m *DistributionMessage) Iteration() uint32 { return m.iteration }

// SigningKey returns the sender's public signing key for the chain.
func (m *DistributionMessage) SigningKey() keys.PublicKey { return m.signingKey }

// Bytes returns the serialized message. It contains the chain key.
func (m *DistributionMessage) Bytes() []byte { return m.serialized }

// String describes the message without the chain key.
func (m *DistributionMessage) String() string {
	return fmt.Sprintf("senderkey.DistributionMessage{distribution: %s, chain: %d, iteration: %d}",
		m.distributionID, m.chainID, m.iteration)
}

// GoString hides the chain key from %#v.
func (m *DistributionMessage) GoString() string { return m.String() }

// LogValue hides the chain key from slog.
func (m *DistributionMessage) LogValue() slog.Value { return slog.StringValue(m.String()) }

func checkVersion(b byte) error {
	switch v := b >> 4; {
	case v < MessageVersion:
		return fmt.Errorf("%w: legacy version %d", ErrUnsupportedVersion, v)
	case v > MessageVersion:
		return fmt.Errorf("%w: unknown version %d", ErrUnsupportedVersion, v)
	}
	return nil
}

func wantType(got, want protowire.Type) error {
	if got != want {
		return wire.ErrMalformed
	}
	return nil
}

func randReader(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
