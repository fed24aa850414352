package session

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// Message versions and sizes, as libsignal's protocol.rs defines them.
const (
	// CurrentVersion is the message version of PQXDH sessions
	// (CIPHERTEXT_MESSAGE_CURRENT_VERSION).
	CurrentVersion = 4
	// preKyberVersion is the X3DH message version, which libsignal no longer accepts.
	preKyberVersion = 3
	// versionByte starts every message: the message version in the high nibble and the
	// current version in the low nibble.
	versionByte = CurrentVersion<<4 | CurrentVersion
	// macSize is the length of the truncated HMAC-SHA256 that ends a SignalMessage.
	macSize = 8
	// MaxMessageSize bounds the messages this package parses: far above what any client
	// sends (a PreKeySignalMessage with a Kyber ciphertext and an SPQR chunk is under
	// 4 KiB plus the body), it keeps a hostile input from costing unbounded work.
	MaxMessageSize = 1 << 20
)

// MessageType is the type of a ciphertext message, as libsignal numbers them
// (CiphertextMessageType).
type MessageType uint8

const (
	// TypeWhisper is a SignalMessage, sent within an established session.
	TypeWhisper MessageType = 2
	// TypePreKey is a PreKeySignalMessage, which also starts the session.
	TypePreKey MessageType = 3
)

func (t MessageType) String() string {
	switch t {
	case TypeWhisper:
		return "whisper"
	case TypePreKey:
		return "prekey"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Address names one device of one user, as libsignal's ProtocolAddress. When the name is
// a service id (a hyphenated UUID, or "PNI:" and a UUID) and the device id fits in a
// byte, the first message of a session binds both addresses into its MAC, as libsignal
// does.
type Address struct {
	Name     string
	DeviceID uint32
}

func (a Address) String() string { return fmt.Sprintf("%s.%d", a.Name, a.DeviceID) }

// serviceIDBinary returns the 17-byte fixed-width encoding of a service id string: a
// kind byte (0 ACI, 1 PNI) and the UUID (libsignal ServiceId::service_id_fixed_width_binary).
func serviceIDBinary(name string) ([17]byte, bool) {
	var out [17]byte
	if rest, ok := strings.CutPrefix(name, "PNI:"); ok {
		out[0] = 1
		name = rest
	}
	// Only the hyphenated form, as libsignal: 8-4-4-4-12 hex digits, any case.
	if len(name) != 36 || name[8] != '-' || name[13] != '-' || name[18] != '-' || name[23] != '-' {
		return out, false
	}
	hexDigits := name[0:8] + name[9:13] + name[14:18] + name[19:23] + name[24:36]
	if _, err := hex.Decode(out[1:], []byte(hexDigits)); err != nil {
		return out, false
	}
	return out, true
}

// addressesSize is the length of two encoded addresses: two 17-byte service ids, each
// followed by a one-byte device id.
const addressesSize = 2 * (17 + 1)

// encodeAddresses is SignalMessage::serialize_addresses: both service ids and device
// ids, or false when either address is not of that form.
func encodeAddresses(sender, recipient Address) ([]byte, bool) {
	s, ok1 := serviceIDBinary(sender.Name)
	r, ok2 := serviceIDBinary(recipient.Name)
	if !ok1 || !ok2 || sender.DeviceID > 0xff || recipient.DeviceID > 0xff {
		return nil, false
	}
	b := make([]byte, 0, addressesSize)
	b = append(b, s[:]...)
	b = append(b, byte(sender.DeviceID))
	b = append(b, r[:]...)
	b = append(b, byte(recipient.DeviceID))
	return b, true
}

// SignalMessage is a parsed Double Ratchet message. Its fields alias the bytes it was
// parsed from, which the caller must not modify while it is in use.
type SignalMessage struct {
	version    uint8
	ratchetKey keys.PublicKey
	body       wire.SignalMessage
	serialized []byte
}

// ParseSignalMessage decodes a SignalMessage: the version byte, the protobuf and the MAC.
// The MAC is checked later, by decryption.
func ParseSignalMessage(b []byte) (*SignalMessage, error) {
	m := new(SignalMessage)
	if err := m.parse(b); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *SignalMessage) parse(b []byte) error {
	if len(b) < 1+macSize {
		return fmt.Errorf("%w: signal message of %d bytes", ErrInvalidMessage, len(b))
	}
	if len(b) > MaxMessageSize {
		return fmt.Errorf("%w: signal message of %d bytes", ErrInvalidMessage, len(b))
	}
	if err := checkVersion(b[0]); err != nil {
		return err
	}
	m.version = b[0] >> 4
	if err := m.body.Unmarshal(b[1 : len(b)-macSize]); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if !m.body.HasRatchetKey || !m.body.HasCounter || !m.body.HasCiphertext {
		return fmt.Errorf("%w: signal message is missing a field", ErrInvalidMessage)
	}
	k, err := keys.ParsePublicKey(m.body.RatchetKey)
	if err != nil {
		return fmt.Errorf("%w: ratchet key: %v", ErrInvalidMessage, err)
	}
	m.ratchetKey = k
	m.serialized = b
	return nil
}

func checkVersion(b byte) error {
	switch v := b >> 4; {
	case v < preKyberVersion:
		return fmt.Errorf("%w: legacy version %d", ErrUnsupportedVersion, v)
	case v == preKyberVersion:
		return fmt.Errorf("%w: X3DH (version 3) is no longer supported", ErrUnsupportedVersion)
	case v > CurrentVersion:
		return fmt.Errorf("%w: unknown version %d", ErrUnsupportedVersion, v)
	}
	return nil
}

// Counter returns the message's index in its sending chain.
func (m *SignalMessage) Counter() uint32 { return m.body.Counter }

// RatchetKey returns the sender's current ratchet public key.
func (m *SignalMessage) RatchetKey() keys.PublicKey { return m.ratchetKey }

// Bytes returns the serialized message.
func (m *SignalMessage) Bytes() []byte { return m.serialized }

// computeMAC is SignalMessage::compute_mac: HMAC-SHA256 over both identity keys and the
// message, truncated to eight bytes.
func computeMAC(m *macState, macKey *[32]byte, sender, receiver keys.PublicKey, message []byte) [macSize]byte {
	sender.AppendBytes(m.id1[:0])
	receiver.AppendBytes(m.id2[:0])
	var sum [32]byte
	m.hmac(&sum, macKey, m.id1[:], m.id2[:], message)
	var mac [macSize]byte
	copy(mac[:], sum[:])
	return mac
}

// verifyMAC checks the message's MAC and, when the message names its addresses, that
// they are the ones expected (verify_mac_with_addresses).
func (m *SignalMessage) verifyMAC(k *macState, macKey *[32]byte, sender, receiver keys.PublicKey, addrs *addressPair) bool {
	n := len(m.serialized) - macSize
	want := computeMAC(k, macKey, sender, receiver, m.serialized[:n])
	if subtle.ConstantTimeCompare(want[:], m.serialized[n:]) != 1 {
		return false
	}
	if m.body.Addresses == nil || addrs == nil {
		return true
	}
	expected, ok := encodeAddresses(addrs.sender, addrs.recipient)
	return ok && subtle.ConstantTimeCompare(expected, m.body.Addresses) == 1
}

// addressPair is the sender and the recipient of a message.
type addressPair struct{ sender, recipient Address }

// PreKeySignalMessage is a parsed session-starting message. Its fields alias the bytes it
// was parsed from.
type PreKeySignalMessage struct {
	version     uint8
	body        wire.PreKeySignalMessage
	baseKey     keys.PublicKey
	identityKey keys.PublicKey
	message     SignalMessage
	serialized  []byte
}

// ParsePreKeySignalMessage decodes a PreKeySignalMessage and the SignalMessage inside.
// A message without a Kyber prekey id and ciphertext is rejected: libsignal requires
// PQXDH for version 4.
func ParsePreKeySignalMessage(b []byte) (*PreKeySignalMessage, error) {
	if len(b) == 0 || len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: prekey message of %d bytes", ErrInvalidMessage, len(b))
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	m := &PreKeySignalMessage{version: b[0] >> 4, serialized: b}
	if err := m.body.Unmarshal(b[1:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if !m.body.HasBaseKey || !m.body.HasIdentityKey || !m.body.HasMessage || !m.body.HasSignedPreKeyID {
		return nil, fmt.Errorf("%w: prekey message is missing a field", ErrInvalidMessage)
	}
	if !m.body.HasKyberPreKeyID || !m.body.HasKyberCiphertext {
		return nil, fmt.Errorf("%w: prekey message without a Kyber prekey", ErrInvalidMessage)
	}
	var err error
	if m.baseKey, err = keys.ParsePublicKey(m.body.BaseKey); err != nil {
		return nil, fmt.Errorf("%w: base key: %v", ErrInvalidMessage, err)
	}
	if m.identityKey, err = keys.ParsePublicKey(m.body.IdentityKey); err != nil {
		return nil, fmt.Errorf("%w: identity key: %v", ErrInvalidMessage, err)
	}
	if err := m.message.parse(m.body.Message); err != nil {
		return nil, err
	}
	return m, nil
}

// IdentityKey returns the sender's identity key. The caller decides whether to trust it
// before decrypting.
func (m *PreKeySignalMessage) IdentityKey() keys.PublicKey { return m.identityKey }

// BaseKey returns the sender's PQXDH base key.
func (m *PreKeySignalMessage) BaseKey() keys.PublicKey { return m.baseKey }

// RegistrationID returns the sender's registration id.
func (m *PreKeySignalMessage) RegistrationID() uint32 { return m.body.RegistrationID }

// PreKeyID returns the one-time prekey id the sender used, if any.
func (m *PreKeySignalMessage) PreKeyID() (uint32, bool) { return m.body.PreKeyID, m.body.HasPreKeyID }

// SignedPreKeyID returns the signed prekey id the sender used.
func (m *PreKeySignalMessage) SignedPreKeyID() uint32 { return m.body.SignedPreKeyID }

// KyberPreKeyID returns the Kyber prekey id the sender used.
func (m *PreKeySignalMessage) KyberPreKeyID() uint32 { return m.body.KyberPreKeyID }

// Message returns the SignalMessage inside.
func (m *PreKeySignalMessage) Message() *SignalMessage { return &m.message }

// Bytes returns the serialized message.
func (m *PreKeySignalMessage) Bytes() []byte { return m.serialized }
