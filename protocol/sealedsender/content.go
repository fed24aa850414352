package sealedsender

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// MessageType is the type of the ciphertext a Content carries, numbered as libsignal's
// CiphertextMessageType (so TypeWhisper and TypePreKey equal session.TypeWhisper and
// session.TypePreKey). On the wire, UnidentifiedSenderMessage.Message.Type numbers a
// prekey message 1; the encoding maps it.
type MessageType uint8

const (
	// TypeWhisper is a session's SignalMessage ("MESSAGE" on the wire).
	TypeWhisper MessageType = 2
	// TypePreKey is a PreKeySignalMessage ("PREKEY_MESSAGE", 1 on the wire).
	TypePreKey MessageType = 3
	// TypeSenderKey is a sender-key (group) message ("SENDERKEY_MESSAGE").
	TypeSenderKey MessageType = 7
	// TypePlaintext is unencrypted content ("PLAINTEXT_CONTENT"), which libsignal uses
	// for decryption-error messages.
	TypePlaintext MessageType = 8
)

// Wire values of UnidentifiedSenderMessage.Message.Type (sealed_sender.proto).
const (
	protoPreKey    = 1
	protoWhisper   = 2
	protoSenderKey = 7
	protoPlaintext = 8
)

func (t MessageType) String() string {
	switch t {
	case TypeWhisper:
		return "whisper"
	case TypePreKey:
		return "prekey"
	case TypeSenderKey:
		return "senderkey"
	case TypePlaintext:
		return "plaintext"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// proto returns the wire value of t, or false for a type that has none.
func (t MessageType) proto() (uint64, bool) {
	switch t {
	case TypePreKey:
		return protoPreKey, true
	case TypeWhisper, TypeSenderKey, TypePlaintext:
		return uint64(t), true
	}
	return 0, false
}

func messageTypeFromProto(v uint64) (MessageType, bool) {
	switch v {
	case protoPreKey:
		return TypePreKey, true
	case protoWhisper:
		return TypeWhisper, true
	case protoSenderKey:
		return TypeSenderKey, true
	case protoPlaintext:
		return TypePlaintext, true
	}
	return 0, false
}

// ContentHint tells the recipient what to do when the content fails to decrypt
// (UnidentifiedSenderMessage.Message.ContentHint). Values other than the named ones are
// kept as they are, as libsignal does.
type ContentHint uint32

const (
	// HintDefault: the sender will not resend; show an error at once. It is the
	// absence of the field on the wire.
	HintDefault ContentHint = 0
	// HintResendable: the sender will try to resend; delay any error.
	HintResendable ContentHint = 1
	// HintImplicit: show no error at all (a typing indicator, a receipt).
	HintImplicit ContentHint = 2
)

// Protobuf field numbers of UnidentifiedSenderMessage.Message (sealed_sender.proto).
const (
	contentType        = 1
	contentSenderCert  = 2
	contentContents    = 3
	contentContentHint = 4
	contentGroupID     = 5
)

// Content is what a sealed message carries (libsignal's
// UnidentifiedSenderMessageContent): one ciphertext of the inner protocol and the
// certificate of its sender.
type Content struct {
	Type MessageType
	// Sender is the sender's certificate. It must be set; Decrypt does not validate it.
	Sender *SenderCertificate
	// Contents is the serialized inner message (a session, sender-key or plaintext
	// message, as Type says).
	Contents []byte
	Hint     ContentHint
	// GroupID identifies the group of a group message; empty otherwise.
	GroupID []byte
}

// Bytes returns the serialized content, encoded as libsignal encodes it: the content
// hint only when it is not HintDefault, the group id only when it is not empty. A
// Content that Encrypt would refuse (no certificate, an unknown type) is encoded as far
// as it goes.
func (c *Content) Bytes() []byte {
	var cert []byte
	if c.Sender != nil {
		cert = c.Sender.serialized
	}
	b := make([]byte, 0, len(cert)+len(c.Contents)+len(c.GroupID)+24)
	typ, ok := c.Type.proto()
	if !ok {
		typ = uint64(c.Type)
	}
	b = wire.AppendVarintField(b, contentType, typ)
	if c.Sender != nil {
		b = wire.AppendBytesField(b, contentSenderCert, cert)
	}
	b = wire.AppendBytesField(b, contentContents, c.Contents)
	if c.Hint != HintDefault {
		b = wire.AppendVarintField(b, contentContentHint, uint64(c.Hint))
	}
	if len(c.GroupID) > 0 {
		b = wire.AppendBytesField(b, contentGroupID, c.GroupID)
	}
	return b
}

// check reports what keeps c from being sealed by sender (nil for no check of the key).
func (c *Content) check(sender *keys.PrivateKey) error {
	if c == nil || c.Sender == nil {
		return fmt.Errorf("%w: content without a sender certificate", ErrInvalidArgument)
	}
	if _, ok := c.Type.proto(); !ok {
		return fmt.Errorf("%w: unknown message type %d", ErrInvalidArgument, c.Type)
	}
	if sender == nil {
		return fmt.Errorf("%w: no sender key", ErrInvalidArgument)
	}
	if !sender.PublicKey().Equal(c.Sender.sender.IdentityKey) {
		// The recipient would refuse it: the sealing binds the sender's identity key,
		// which must be the certificate's.
		return fmt.Errorf("%w: sender key is not the certificate's identity key", ErrInvalidArgument)
	}
	return nil
}

// ParseContent decodes a serialized content with its sender certificate, which it does
// not validate. The type, the certificate and the contents are required, as libsignal
// requires them. The result does not alias b.
func ParseContent(b []byte) (*Content, error) {
	b = bytes.Clone(b)
	c := &Content{}
	var hasType, hasContents bool
	var typ uint64
	var cert []byte
	err := wire.Walk(b, func(num protowire.Number, t protowire.Type, v uint64, bs []byte) error {
		switch num {
		case contentType:
			typ, hasType = v, true
			return wantType(t, protowire.VarintType)
		case contentSenderCert:
			cert = bs
			return wantType(t, protowire.BytesType)
		case contentContents:
			c.Contents, hasContents = bs, true
			return wantType(t, protowire.BytesType)
		case contentContentHint:
			// An enum: libsignal reads it as an int32 and keeps its bits as a u32.
			c.Hint = ContentHint(uint32(v))
			return wantType(t, protowire.VarintType)
		case contentGroupID:
			c.GroupID = bs
			return wantType(t, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: content: %v", ErrMalformed, err)
	}
	if !hasType || cert == nil || !hasContents {
		return nil, fmt.Errorf("%w: content lacks a required field", ErrMalformed)
	}
	var ok bool
	if c.Type, ok = messageTypeFromProto(typ); !ok {
		return nil, fmt.Errorf("%w: content of unknown type %d", ErrMalformed, typ)
	}
	if c.Sender, err = ParseSenderCertificate(cert); err != nil {
		return nil, err
	}
	return c, nil
}
