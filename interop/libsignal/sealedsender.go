package libsignal

import "time"

// Typed wrappers over the harness's sealed-sender commands. Certificates and contents
// travel serialized; a service id is libsignal's string form (a UUID for an ACI).

// Kinds of sealed-sender failures, beyond those in errors.go.
const (
	// KindInvalidSealedSenderMessage: a sealed message that does not decrypt, or whose
	// sender key does not match its certificate.
	KindInvalidSealedSenderMessage Kind = "InvalidSealedSenderMessage"
	// KindUnknownSealedSenderVersion: a sealed message of a version libsignal does not
	// read.
	KindUnknownSealedSenderVersion Kind = "UnknownSealedSenderVersion"
	// KindInvalidRegistrationID: a registration id that does not fit in 14 bits.
	KindInvalidRegistrationID Kind = "InvalidRegistrationId"
	// KindSealedSenderSelfSend: a sealed message from this very device.
	KindSealedSenderSelfSend Kind = "SealedSenderSelfSend"
)

// ServerCertificateInfo is what libsignal reads from a ServerCertificate.
type ServerCertificateInfo struct {
	KeyID uint32 `json:"keyId"`
	// Key is the serialized server public key (0x05 and 32 bytes).
	Key []byte `json:"key"`
	// Certificate is the signed inner certificate, Signature its signature.
	Certificate []byte `json:"certificate"`
	Signature   []byte `json:"signature"`
	Serialized  []byte `json:"serialized"`
}

// SenderCertificateParams are the parameters of NewSenderCertificate, as libsignal's
// SenderCertificate.new takes them.
type SenderCertificateParams struct {
	SenderUUID string `json:"senderUuid"`
	// SenderE164 is a phone number; nil for none.
	SenderE164 *string `json:"senderE164,omitempty"`
	DeviceID   uint32  `json:"deviceId"`
	// SenderKey is the serialized identity key.
	SenderKey []byte `json:"senderKey"`
	// Expiration is in milliseconds since 1970.
	Expiration int64 `json:"expiration"`
	// ServerCertificate is the serialized signer; ServerPrivate its 32-byte private key.
	ServerCertificate []byte `json:"serverCertificate"`
	ServerPrivate     []byte `json:"serverPrivate"`
}

// SenderCertificateInfo is what libsignal reads from a SenderCertificate.
type SenderCertificateInfo struct {
	SenderUUID        string  `json:"senderUuid"`
	SenderE164        *string `json:"senderE164"`
	DeviceID          uint32  `json:"deviceId"`
	Key               []byte  `json:"key"`
	Expiration        int64   `json:"expiration"`
	ServerCertificate []byte  `json:"serverCertificate"`
	Certificate       []byte  `json:"certificate"`
	Signature         []byte  `json:"signature"`
	Serialized        []byte  `json:"serialized"`
}

// USMCParams are the parameters of CreateUSMC: the plaintext is encrypted for Peer
// (a session message) or, when DistributionID is set, with this peer's own sender key
// (a group message), then wrapped with the sender certificate.
type USMCParams struct {
	SenderCertificate []byte   `json:"senderCertificate"`
	Plaintext         []byte   `json:"plaintext"`
	Peer              *Address `json:"peer,omitempty"`
	DistributionID    string   `json:"distributionId,omitempty"`
	ContentHint       uint32   `json:"contentHint"`
	// GroupID is nil for none.
	GroupID []byte `json:"groupId,omitempty"`
}

// USMCInfo is what libsignal reads from an UnidentifiedSenderMessageContent.
type USMCInfo struct {
	// Type is libsignal's CiphertextMessageType: 2, 3, 7 or 8.
	Type              int    `json:"type"`
	Contents          []byte `json:"contents"`
	SenderCertificate []byte `json:"senderCertificate"`
	ContentHint       uint32 `json:"contentHint"`
	// GroupID is nil when the content has none.
	GroupID    []byte `json:"groupId"`
	Serialized []byte `json:"serialized"`
}

// SealedSenderResult is what libsignal's sealedSenderDecryptMessage returns.
type SealedSenderResult struct {
	SenderUUID string  `json:"senderUuid"`
	SenderE164 *string `json:"senderE164"`
	DeviceID   uint32  `json:"deviceId"`
	Plaintext  []byte  `json:"plaintext"`
}

// MultiRecipientInfo is libsignal's reading of a sealed sender v2 SentMessage.
type MultiRecipientInfo struct {
	Recipients []MultiRecipient `json:"recipients"`
	// Excluded are the excluded recipients' service ids.
	Excluded []string `json:"excluded"`
}

// MultiRecipient is one recipient of a SentMessage as libsignal reads it.
type MultiRecipient struct {
	ServiceID       string   `json:"serviceId"`
	DeviceIDs       []uint32 `json:"deviceIds"`
	RegistrationIDs []uint32 `json:"registrationIds"`
	// Message is the ReceivedMessage libsignal makes for this recipient.
	Message []byte `json:"message"`
}

// NewServerCertificate makes a server certificate with libsignal (ServerCertificate.new).
func (p *Peer) NewServerCertificate(keyID uint32, serverKey, trustRootPrivate []byte) (ServerCertificateInfo, error) {
	var c ServerCertificateInfo
	err := p.Call("serverCertificateNew", struct {
		KeyID            uint32 `json:"keyId"`
		ServerKey        []byte `json:"serverKey"`
		TrustRootPrivate []byte `json:"trustRootPrivate"`
	}{keyID, nonNil(serverKey), nonNil(trustRootPrivate)}, &c)
	return c, err
}

// ParseServerCertificate runs libsignal's deserializer on a server certificate.
func (p *Peer) ParseServerCertificate(serialized []byte) (ServerCertificateInfo, error) {
	var c ServerCertificateInfo
	err := p.Call("serverCertificateParse", struct {
		Serialized []byte `json:"serialized"`
	}{nonNil(serialized)}, &c)
	return c, err
}

// NewSenderCertificate makes a sender certificate with libsignal (SenderCertificate.new).
func (p *Peer) NewSenderCertificate(params SenderCertificateParams) (SenderCertificateInfo, error) {
	params.SenderKey, params.ServerCertificate = nonNil(params.SenderKey), nonNil(params.ServerCertificate)
	params.ServerPrivate = nonNil(params.ServerPrivate)
	var c SenderCertificateInfo
	err := p.Call("senderCertificateNew", params, &c)
	return c, err
}

// ParseSenderCertificate runs libsignal's deserializer on a sender certificate.
func (p *Peer) ParseSenderCertificate(serialized []byte) (SenderCertificateInfo, error) {
	var c SenderCertificateInfo
	err := p.Call("senderCertificateParse", struct {
		Serialized []byte `json:"serialized"`
	}{nonNil(serialized)}, &c)
	return c, err
}

// ValidateSenderCertificate runs libsignal's validateWithTrustRoots at now on a sender
// certificate, with serialized trust root public keys.
func (p *Peer) ValidateSenderCertificate(serialized []byte, trustRoots [][]byte, now time.Time) (bool, error) {
	roots := make([][]byte, len(trustRoots))
	for i, r := range trustRoots {
		roots[i] = nonNil(r)
	}
	var r struct {
		Valid bool `json:"valid"`
	}
	err := p.Call("senderCertificateValidate", struct {
		Serialized []byte   `json:"serialized"`
		TrustRoots [][]byte `json:"trustRoots"`
		Time       int64    `json:"time"`
	}{nonNil(serialized), roots, now.UnixMilli()}, &r)
	return r.Valid, err
}

// CreateUSMC encrypts a message and wraps it in an UnidentifiedSenderMessageContent.
func (p *Peer) CreateUSMC(params USMCParams) (USMCInfo, error) {
	params.SenderCertificate, params.Plaintext = nonNil(params.SenderCertificate), nonNil(params.Plaintext)
	var u USMCInfo
	err := p.Call("usmcCreate", params, &u)
	return u, err
}

// ParseUSMC runs libsignal's deserializer on an UnidentifiedSenderMessageContent.
func (p *Peer) ParseUSMC(usmc []byte) (USMCInfo, error) {
	var u USMCInfo
	err := p.Call("usmcParse", struct {
		USMC []byte `json:"usmc"`
	}{nonNil(usmc)}, &u)
	return u, err
}

// SealedSenderEncrypt seals a serialized content to peer's stored identity key with
// sealed sender v1 (sealedSenderEncrypt).
func (p *Peer) SealedSenderEncrypt(peer Address, usmc []byte) ([]byte, error) {
	var r struct {
		Body []byte `json:"body"`
	}
	err := p.Call("sealedSenderEncrypt", struct {
		Peer Address `json:"peer"`
		USMC []byte  `json:"usmc"`
	}{peer, nonNil(usmc)}, &r)
	return r.Body, err
}

// SealedSenderMultiRecipientEncrypt seals a serialized content to every recipient
// address with sealed sender v2 and returns the SentMessage. The peer needs a session
// with each address; excluded are service id strings.
func (p *Peer) SealedSenderMultiRecipientEncrypt(recipients []Address, excluded []string, usmc []byte) ([]byte, error) {
	if excluded == nil {
		excluded = []string{}
	}
	var r struct {
		Body []byte `json:"body"`
	}
	err := p.Call("sealedSenderMultiRecipientEncrypt", struct {
		Recipients []Address `json:"recipients"`
		Excluded   []string  `json:"excludedRecipients"`
		USMC       []byte    `json:"usmc"`
	}{recipients, excluded, nonNil(usmc)}, &r)
	return r.Body, err
}

// SealedSenderDecryptToUSMC opens a sealed message (v1, or a v2 ReceivedMessage) with
// the peer's identity key (sealedSenderDecryptToUsmc).
func (p *Peer) SealedSenderDecryptToUSMC(body []byte) (USMCInfo, error) {
	var u USMCInfo
	err := p.Call("sealedSenderDecryptToUsmc", struct {
		Body []byte `json:"body"`
	}{nonNil(body)}, &u)
	return u, err
}

// SealedSenderDecrypt is libsignal's whole receive path (sealedSenderDecryptMessage) as
// this peer: it opens the message, validates the certificate with trustRoot at now and
// decrypts the session message inside.
func (p *Peer) SealedSenderDecrypt(body, trustRoot []byte, now time.Time) (SealedSenderResult, error) {
	var r SealedSenderResult
	err := p.Call("sealedSenderDecrypt", struct {
		Body      []byte `json:"body"`
		TrustRoot []byte `json:"trustRoot"`
		Time      int64  `json:"time"`
	}{nonNil(body), nonNil(trustRoot), now.UnixMilli()}, &r)
	return r, err
}

// ParseMultiRecipient runs libsignal's SealedSenderMultiRecipientMessage on a
// SentMessage: the recipients, their devices and ReceivedMessages, and the excluded.
func (p *Peer) ParseMultiRecipient(body []byte) (MultiRecipientInfo, error) {
	var m MultiRecipientInfo
	err := p.Call("multiRecipientParse", struct {
		Body []byte `json:"body"`
	}{nonNil(body)}, &m)
	return m, err
}

// MultiRecipientForSingleRecipient is libsignal's
// sealedSenderMultiRecipientMessageForSingleRecipient: the ReceivedMessage of a
// SentMessage with one recipient.
func (p *Peer) MultiRecipientForSingleRecipient(body []byte) ([]byte, error) {
	var r struct {
		Message []byte `json:"message"`
	}
	err := p.Call("multiRecipientForSingleRecipient", struct {
		Body []byte `json:"body"`
	}{nonNil(body)}, &r)
	return r.Message, err
}
