package sealedsender

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/uuid"
	"github.com/doorless/doorless/protocol/internal/wire"
	"github.com/doorless/doorless/protocol/keys"
)

// Protobuf field numbers of ServerCertificate and its inner Certificate
// (libsignal sealed_sender.proto).
const (
	certCertificate = 1 // both outer messages: the signed inner certificate bytes
	certSignature   = 2 // both outer messages: the XEdDSA signature over them

	serverCertID  = 1
	serverCertKey = 2
)

// Protobuf field numbers of SenderCertificate.Certificate (libsignal
// sealed_sender.proto). senderUuid is a oneof of uuidString and uuidBytes; signer is a
// oneof of certificate and id.
const (
	senderCertE164        = 1
	senderCertDevice      = 2
	senderCertExpires     = 3 // fixed64, milliseconds since 1970
	senderCertIdentityKey = 4
	senderCertSigner      = 5 // an embedded, serialized ServerCertificate
	senderCertUUIDString  = 6
	senderCertUUIDBytes   = 7
	senderCertSignerID    = 8 // a server certificate named by id (refused)
)

// revokedServerKeyIDs are the server certificate key ids libsignal refuses
// (REVOKED_SERVER_CERTIFICATE_KEY_IDS in sealed_sender.rs): 0xDEADC357 is its test id
// for the revocation logic; no production certificate has been revoked.
var revokedServerKeyIDs = []uint32{0xDEADC357}

// Device ids, as libsignal's DeviceId allows them (rust/core/src/address.rs).
const (
	minDeviceID = 1
	// MaxDeviceID is the largest device id libsignal accepts (MAX_VALID_DEVICE_ID).
	MaxDeviceID = 127
)

// ServerCertificate is a server's sealed-sender signing key, signed by a trust root.
// It is immutable and safe for concurrent use.
type ServerCertificate struct {
	keyID       uint32
	key         keys.PublicKey
	certificate []byte // the signed inner Certificate
	signature   []byte
	serialized  []byte
}

// NewServerCertificate makes a server certificate for key under keyID, signed by the
// trust root's private key with randomness from r (crypto/rand when nil).
func NewServerCertificate(keyID uint32, key keys.PublicKey, trustRoot *keys.PrivateKey, r io.Reader) (*ServerCertificate, error) {
	if trustRoot == nil {
		return nil, fmt.Errorf("%w: no trust root key", ErrInvalidArgument)
	}
	// Fields in number order, as libsignal (prost) encodes them.
	cert := wire.AppendVarintField(nil, serverCertID, uint64(keyID))
	cert = wire.AppendBytesField(cert, serverCertKey, key.Bytes())
	sig, err := trustRoot.Sign(r, cert)
	if err != nil {
		return nil, fmt.Errorf("sealedsender: signing server certificate: %w", err)
	}
	return &ServerCertificate{
		keyID:       keyID,
		key:         key,
		certificate: cert,
		signature:   sig,
		serialized:  signedMessage(cert, sig),
	}, nil
}

// signedMessage encodes the outer message shared by both certificate types.
func signedMessage(cert, sig []byte) []byte {
	b := make([]byte, 0, len(cert)+len(sig)+8)
	b = wire.AppendBytesField(b, certCertificate, cert)
	return wire.AppendBytesField(b, certSignature, sig)
}

// parseSigned reads the outer message of either certificate type: the inner
// certificate bytes and the signature, both required. They alias b.
func parseSigned(b []byte) (cert, sig []byte, err error) {
	var hasCert, hasSig bool
	err = wire.Walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, bs []byte) error {
		switch num {
		case certCertificate:
			cert, hasCert = bs, true
			return wantType(typ, protowire.BytesType)
		case certSignature:
			sig, hasSig = bs, true
			return wantType(typ, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidCertificate, err)
	}
	if !hasCert || !hasSig {
		return nil, nil, fmt.Errorf("%w: missing certificate or signature", ErrInvalidCertificate)
	}
	return cert, sig, nil
}

// ParseServerCertificate decodes a serialized server certificate. It does not check the
// signature: Validate does.
func ParseServerCertificate(b []byte) (*ServerCertificate, error) {
	b = bytes.Clone(b)
	cert, sig, err := parseSigned(b)
	if err != nil {
		return nil, err
	}
	c := &ServerCertificate{certificate: cert, signature: sig, serialized: b}
	var hasID, hasKey bool
	var key []byte
	err = wire.Walk(cert, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case serverCertID:
			c.keyID, hasID = uint32(v), true
			return wantType(typ, protowire.VarintType)
		case serverCertKey:
			key, hasKey = bs, true
			return wantType(typ, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: server certificate: %v", ErrInvalidCertificate, err)
	}
	if !hasID || !hasKey {
		return nil, fmt.Errorf("%w: server certificate without key id or key", ErrInvalidCertificate)
	}
	if c.key, err = keys.ParsePublicKey(key); err != nil {
		return nil, fmt.Errorf("%w: server certificate key: %v", ErrInvalidCertificate, err)
	}
	return c, nil
}

// KeyID returns the id of the server's key.
func (c *ServerCertificate) KeyID() uint32 { return c.keyID }

// Key returns the server's public signing key.
func (c *ServerCertificate) Key() keys.PublicKey { return c.key }

// Bytes returns the serialized certificate. The caller must not modify it.
func (c *ServerCertificate) Bytes() []byte { return c.serialized }

// Validate checks that the certificate is signed by trustRoot and that its key id is
// not one libsignal lists as revoked (ErrRevokedCertificate). A bad signature is
// ErrUntrustedCertificate.
func (c *ServerCertificate) Validate(trustRoot keys.PublicKey) error {
	if slices.Contains(revokedServerKeyIDs, c.keyID) {
		return fmt.Errorf("%w: key id %#x", ErrRevokedCertificate, c.keyID)
	}
	if !trustRoot.Verify(c.signature, c.certificate) {
		return ErrUntrustedCertificate
	}
	return nil
}

// Sender is who a sender certificate vouches for.
type Sender struct {
	// UUID is the sender's account (ACI), a hyphenated lower-case UUID.
	UUID string
	// DeviceID is the sending device, 1 to MaxDeviceID.
	DeviceID uint32
	// IdentityKey is the account's identity key.
	IdentityKey keys.PublicKey
	// Name is the account's human-readable name as the server vouches for
	// it, or "". It travels in the field where libsignal carries a phone
	// number (senderE164, a free-form string there): Doorless accounts are
	// usernames, and a recipient who does not know the sender yet needs
	// the name without asking the server (which would tell it who wrote).
	// At most MaxNameSize bytes of UTF-8.
	Name string
}

// MaxNameSize bounds Sender.Name.
const MaxNameSize = 64

// SenderCertificate is a server's statement, valid until an expiry, that a device of an
// account holds an identity key. It is immutable and safe for concurrent use.
type SenderCertificate struct {
	sender      Sender
	e164        string
	expires     uint64 // milliseconds since 1970, as on the wire
	signer      *ServerCertificate
	certificate []byte
	signature   []byte
	serialized  []byte
}

// NewSenderCertificate makes a certificate for s, valid until expires (kept to the
// millisecond), signed by the server key signerKey, whose certificate signer is embedded.
// The UUID may be given in any case; it is stored in lower case. Randomness comes from r
// (crypto/rand when nil). The sender's Name, when set, goes where libsignal puts a phone number.
func NewSenderCertificate(s Sender, expires time.Time, signer *ServerCertificate, signerKey *keys.PrivateKey, r io.Reader) (*SenderCertificate, error) {
	u, ok := uuid.Parse(s.UUID)
	if !ok {
		return nil, fmt.Errorf("%w: sender UUID is not a hyphenated UUID", ErrInvalidArgument)
	}
	s.UUID = uuid.Format(u)
	if s.DeviceID < minDeviceID || s.DeviceID > MaxDeviceID {
		return nil, fmt.Errorf("%w: device id %d out of range", ErrInvalidArgument, s.DeviceID)
	}
	ms := expires.UnixMilli()
	if ms < 0 {
		return nil, fmt.Errorf("%w: expiry before 1970", ErrInvalidArgument)
	}
	if signer == nil || signerKey == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidArgument)
	}
	if !signerKey.PublicKey().Equal(signer.key) {
		return nil, fmt.Errorf("%w: signing key is not the server certificate's key", ErrInvalidArgument)
	}
	// Fields in number order, as libsignal (prost) encodes them; the uuidString member of
	// the senderUuid oneof (field 6) sorts after the signer (field 5).
	if len(s.Name) > MaxNameSize || !utf8.ValidString(s.Name) {
		return nil, fmt.Errorf("%w: sender name", ErrInvalidArgument)
	}
	var cert []byte
	if s.Name != "" {
		cert = wire.AppendBytesField(cert, senderCertE164, []byte(s.Name))
	}
	cert = wire.AppendVarintField(cert, senderCertDevice, uint64(s.DeviceID))
	cert = protowire.AppendTag(cert, senderCertExpires, protowire.Fixed64Type)
	cert = protowire.AppendFixed64(cert, uint64(ms))
	cert = wire.AppendBytesField(cert, senderCertIdentityKey, s.IdentityKey.Bytes())
	cert = wire.AppendBytesField(cert, senderCertSigner, signer.serialized)
	cert = wire.AppendBytesField(cert, senderCertUUIDString, []byte(s.UUID))
	sig, err := signerKey.Sign(r, cert)
	if err != nil {
		return nil, fmt.Errorf("sealedsender: signing sender certificate: %w", err)
	}
	return &SenderCertificate{
		sender:      s,
		e164:        s.Name,
		expires:     uint64(ms),
		signer:      signer,
		certificate: cert,
		signature:   sig,
		serialized:  signedMessage(cert, sig),
	}, nil
}

// ParseSenderCertificate decodes a serialized sender certificate with its embedded
// server certificate. It checks no signature: Validate does.
//
// It reads every form libsignal writes, with one exception: a certificate that names its
// signer by id rather than embedding it is refused with ErrSignerByID. A sender given
// as UUID bytes is read as its string; a phone number (E164) is kept but has no use in
// Doorless. Unlike libsignal, which keeps any string, the sender must be a UUID.
func ParseSenderCertificate(b []byte) (*SenderCertificate, error) {
	b = bytes.Clone(b)
	cert, sig, err := parseSigned(b)
	if err != nil {
		return nil, err
	}
	c := &SenderCertificate{certificate: cert, signature: sig, serialized: b}
	var (
		hasDevice, hasExpires, hasKey bool
		device                        uint32
		key, signer, uuidStr, uuidRaw []byte
		uuidField, signerField        protowire.Number // the oneof member seen last
	)
	err = wire.Walk(cert, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case senderCertE164:
			if !utf8.Valid(bs) {
				return wire.ErrMalformed // a proto2 string must be UTF-8
			}
			c.e164 = string(bs)
			c.sender.Name = c.e164
			return wantType(typ, protowire.BytesType)
		case senderCertDevice:
			device, hasDevice = uint32(v), true
			return wantType(typ, protowire.VarintType)
		case senderCertExpires:
			c.expires, hasExpires = v, true
			return wantType(typ, protowire.Fixed64Type)
		case senderCertIdentityKey:
			key, hasKey = bs, true
			return wantType(typ, protowire.BytesType)
		case senderCertSigner:
			signer, signerField = bs, num
			return wantType(typ, protowire.BytesType)
		case senderCertSignerID:
			signerField = num
			return wantType(typ, protowire.VarintType)
		case senderCertUUIDString:
			uuidStr, uuidField = bs, num
			return wantType(typ, protowire.BytesType)
		case senderCertUUIDBytes:
			uuidRaw, uuidField = bs, num
			return wantType(typ, protowire.BytesType)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: sender certificate: %v", ErrInvalidCertificate, err)
	}
	if !hasDevice || !hasExpires || !hasKey || signerField == 0 || uuidField == 0 {
		return nil, fmt.Errorf("%w: sender certificate lacks a required field", ErrInvalidCertificate)
	}
	if device < minDeviceID || device > MaxDeviceID {
		return nil, fmt.Errorf("%w: device id %d out of range", ErrInvalidCertificate, device)
	}
	c.sender.DeviceID = device
	if c.sender.IdentityKey, err = keys.ParsePublicKey(key); err != nil {
		return nil, fmt.Errorf("%w: identity key: %v", ErrInvalidCertificate, err)
	}
	switch uuidField {
	case senderCertUUIDString:
		u, ok := uuid.Parse(string(uuidStr))
		if !ok {
			return nil, fmt.Errorf("%w: sender is not a UUID", ErrInvalidCertificate)
		}
		c.sender.UUID = uuid.Format(u)
	case senderCertUUIDBytes:
		if len(uuidRaw) != 16 {
			return nil, fmt.Errorf("%w: sender UUID is %d bytes", ErrInvalidCertificate, len(uuidRaw))
		}
		c.sender.UUID = uuid.Format([16]byte(uuidRaw))
	}
	if signerField == senderCertSignerID {
		return nil, ErrSignerByID
	}
	if c.signer, err = ParseServerCertificate(signer); err != nil {
		return nil, err
	}
	return c, nil
}

// Sender returns who the certificate vouches for.
func (c *SenderCertificate) Sender() Sender { return c.sender }

// E164 returns the string in libsignal's phone number field, or "": a
// Doorless certificate's Sender.Name.
func (c *SenderCertificate) E164() string { return c.e164 }

// Expires returns the end of the certificate's validity.
func (c *SenderCertificate) Expires() time.Time {
	return time.UnixMilli(int64(min(c.expires, math.MaxInt64)))
}

// Signer returns the embedded server certificate.
func (c *SenderCertificate) Signer() *ServerCertificate { return c.signer }

// Bytes returns the serialized certificate. The caller must not modify it.
func (c *SenderCertificate) Bytes() []byte { return c.serialized }

// Validate checks the certificate as libsignal's validate_with_trust_roots does: its
// server certificate is signed by one of trustRoots (every root is tried, so that the
// time taken does not say which one signed) and not revoked, the certificate is signed
// by the server certificate's key, and now is not past its expiry (a certificate is
// still valid at the exact millisecond it expires).
func (c *SenderCertificate) Validate(trustRoots []keys.PublicKey, now time.Time) error {
	if slices.Contains(revokedServerKeyIDs, c.signer.keyID) {
		return fmt.Errorf("%w: key id %#x", ErrRevokedCertificate, c.signer.keyID)
	}
	anyValid := false
	for _, root := range trustRoots {
		ok := root.Verify(c.signer.signature, c.signer.certificate)
		anyValid = anyValid || ok
	}
	if !anyValid {
		return fmt.Errorf("%w: server certificate not signed by a trust root", ErrUntrustedCertificate)
	}
	if !c.signer.key.Verify(c.signature, c.certificate) {
		return fmt.Errorf("%w: sender certificate not signed by its server certificate", ErrUntrustedCertificate)
	}
	if ms := now.UnixMilli(); ms > 0 && uint64(ms) > c.expires {
		return ErrExpiredCertificate
	}
	return nil
}

// wantType reports a field whose wire type is not the schema's.
func wantType(got, want protowire.Type) error {
	if got != want {
		return wire.ErrMalformed
	}
	return nil
}
