package libsignal

import "time"

// Typed wrappers over the harness commands. Byte fields travel as base64 (encoding/json
// does that for []byte); field names are those of harness.mjs.

// Address is a libsignal ProtocolAddress: a name (any string; a service id such as an ACI
// UUID in Signal) and a device id in 1..127.
type Address struct {
	Name     string `json:"name"`
	DeviceID uint32 `json:"deviceId"`
}

// InitParams are the parameters of Init.
type InitParams struct {
	// Name and DeviceID make this peer's own (local) address.
	Name     string `json:"name"`
	DeviceID uint32 `json:"deviceId"`
	// RegistrationID is the 14-bit registration id; 0 picks a random one.
	RegistrationID uint32 `json:"registrationId,omitempty"`
	// IdentityPrivate, if set, is a 32-byte Curve25519 private key to use as the
	// identity key instead of a fresh one.
	IdentityPrivate []byte `json:"identityPrivate,omitempty"`
}

// Identity describes a peer after Init or ImportState.
type Identity struct {
	Name           string `json:"name"`
	DeviceID       uint32 `json:"deviceId"`
	RegistrationID uint32 `json:"registrationId"`
	// IdentityKey is the serialized identity public key: 0x05 and 32 bytes.
	IdentityKey []byte `json:"identityKey"`
}

// Address returns the peer's own address.
func (id Identity) Address() Address { return Address{Name: id.Name, DeviceID: id.DeviceID} }

// BundleParams are the parameters of NewBundle. Zero ids are allocated by the harness.
type BundleParams struct {
	WithOneTimePreKey bool   `json:"withOneTimePreKey"`
	PreKeyID          uint32 `json:"preKeyId,omitempty"`
	SignedPreKeyID    uint32 `json:"signedPreKeyId,omitempty"`
	KyberPreKeyID     uint32 `json:"kyberPreKeyId,omitempty"`
	// KyberLastResort keeps the Kyber prekey after use (a last-resort key); the harness
	// then rejects a second use with the same signed prekey id and base key.
	KyberLastResort bool `json:"kyberLastResort,omitempty"`
}

// Bundle is every public field of a libsignal PreKeyBundle. PreKeyPublic is nil when the
// bundle has no one-time EC prekey (PreKeyID is then ignored).
type Bundle struct {
	RegistrationID        uint32 `json:"registrationId"`
	DeviceID              uint32 `json:"deviceId"`
	PreKeyID              uint32 `json:"preKeyId"`
	PreKeyPublic          []byte `json:"preKeyPublic,omitempty"`
	SignedPreKeyID        uint32 `json:"signedPreKeyId"`
	SignedPreKeyPublic    []byte `json:"signedPreKeyPublic"`
	SignedPreKeySignature []byte `json:"signedPreKeySignature"`
	KyberPreKeyID         uint32 `json:"kyberPreKeyId"`
	// KyberPreKeyPublic is libsignal's KEM encoding: type byte 0x08 (Kyber-1024) and
	// 1568 bytes.
	KyberPreKeyPublic    []byte `json:"kyberPreKeyPublic"`
	KyberPreKeySignature []byte `json:"kyberPreKeySignature"`
	IdentityKey          []byte `json:"identityKey"`
}

// Ciphertext is a serialized libsignal message with its type (TypeSignal or TypePreKey).
type Ciphertext struct {
	Type int    `json:"type"`
	Body []byte `json:"body"`
}

// SessionInfo describes the stored session with a peer.
type SessionInfo struct {
	Exists bool `json:"exists"`
	// HasCurrentState reports whether the session can be used to send.
	HasCurrentState      bool   `json:"hasCurrentState"`
	RemoteRegistrationID uint32 `json:"remoteRegistrationId"`
	LocalRegistrationID  uint32 `json:"localRegistrationId"`
	// SessionVersion is the current state's session_version (4 for PQXDH sessions).
	SessionVersion int `json:"sessionVersion"`
	// PreviousSessions counts the archived states kept in the record.
	PreviousSessions int `json:"previousSessions"`
	// PendingPreKey reports an unacknowledged prekey message: the peer has not replied
	// yet, so encrypt still yields PreKeySignalMessages.
	PendingPreKey bool `json:"pendingPreKey"`
	// Record is the serialized SessionRecord (nil when Exists is false).
	Record []byte `json:"record"`
}

// FingerprintParams are the parameters of Fingerprint, as libsignal's Fingerprint.new
// takes them (the keys are serialized identity public keys).
type FingerprintParams struct {
	Version    uint32 `json:"version"`
	Iterations uint32 `json:"iterations"`
	LocalID    []byte `json:"localId"`
	LocalKey   []byte `json:"localKey"`
	RemoteID   []byte `json:"remoteId"`
	RemoteKey  []byte `json:"remoteKey"`
}

// FingerprintResult is libsignal's fingerprint: the 60-digit displayable string and the
// scannable encoding.
type FingerprintResult struct {
	Displayable string `json:"displayable"`
	Scannable   []byte `json:"scannable"`
}

// MessageInfo is what libsignal's deserializers read from a message (see ParseMessage).
type MessageInfo struct {
	Type    int `json:"type"`
	Version int `json:"version"`
	// For a SignalMessage: the counter, the encrypted body and the SPQR message.
	Counter   uint32 `json:"counter"`
	Body      []byte `json:"body"`
	PQRatchet []byte `json:"pqRatchet"`
	// For a PreKeySignalMessage: the envelope's fields. PreKeyID is nil without a
	// one-time prekey.
	RegistrationID uint32  `json:"registrationId"`
	PreKeyID       *uint32 `json:"preKeyId"`
	SignedPreKeyID uint32  `json:"signedPreKeyId"`
	// Serialized is the message as libsignal re-serializes it.
	Serialized []byte `json:"serialized"`
}

// Ping checks that the harness answers and returns the libsignal version it loaded.
func (p *Peer) Ping() (string, error) {
	var r struct {
		Version string `json:"libsignalVersion"`
	}
	err := p.Call("ping", nil, &r)
	return r.Version, err
}

// Init resets the peer's stores and gives it an identity and an address.
func (p *Peer) Init(params InitParams) (Identity, error) {
	var id Identity
	err := p.Call("init", params, &id)
	return id, err
}

// NewBundle generates and stores fresh prekeys and returns the public bundle.
func (p *Peer) NewBundle(params BundleParams) (Bundle, error) {
	var b Bundle
	err := p.Call("newBundle", params, &b)
	return b, err
}

// ProcessBundle builds a libsignal PreKeyBundle from b's fields and starts a session
// with peer (processPreKeyBundle). The bundle may come from any implementation, and may
// be corrupt: the error then says why libsignal refused it.
func (p *Peer) ProcessBundle(peer Address, b Bundle) error {
	return p.ProcessBundleAt(peer, b, time.Time{})
}

// ProcessBundleAt is ProcessBundle with libsignal's clock set to now (the zero Time
// means the real clock): the session's unacknowledged prekey message is stamped with it.
func (p *Peer) ProcessBundleAt(peer Address, b Bundle, now time.Time) error {
	return p.Call("processBundle", struct {
		Peer   Address `json:"peer"`
		Bundle Bundle  `json:"bundle"`
		Now    *int64  `json:"now,omitempty"`
	}{peer, b, millis(now)}, nil)
}

// Encrypt encrypts plaintext for peer (signalEncrypt).
func (p *Peer) Encrypt(peer Address, plaintext []byte) (Ciphertext, error) {
	return p.EncryptAt(peer, plaintext, time.Time{})
}

// EncryptAt is Encrypt with libsignal's clock set to now (the zero Time means the real
// clock). libsignal refuses to encrypt on a session whose prekey message has gone
// unacknowledged for more than 30 days (a session-not-found error).
func (p *Peer) EncryptAt(peer Address, plaintext []byte, now time.Time) (Ciphertext, error) {
	var c Ciphertext
	err := p.Call("encrypt", struct {
		Peer      Address `json:"peer"`
		Plaintext []byte  `json:"plaintext"`
		Now       *int64  `json:"now,omitempty"`
	}{peer, nonNil(plaintext), millis(now)}, &c)
	return c, err
}

// Decrypt decrypts a message from peer (signalDecrypt or signalDecryptPreKey by type).
func (p *Peer) Decrypt(peer Address, c Ciphertext) ([]byte, error) {
	var r struct {
		Plaintext []byte `json:"plaintext"`
	}
	err := p.Call("decrypt", struct {
		Peer Address `json:"peer"`
		Type int     `json:"type"`
		Body []byte  `json:"body"`
	}{peer, c.Type, nonNil(c.Body)}, &r)
	if err != nil {
		return nil, err
	}
	return nonNil(r.Plaintext), nil
}

// ExportState returns every store of the peer (sessions, identities, prekeys, identity
// key pair) as an opaque blob for ImportState.
func (p *Peer) ExportState() ([]byte, error) {
	var r struct {
		Blob []byte `json:"blob"`
	}
	err := p.Call("exportState", nil, &r)
	return r.Blob, err
}

// ImportState replaces the peer's stores with a blob from ExportState, typically in a
// fresh process, so that a conversation continues across a restart.
func (p *Peer) ImportState(blob []byte) (Identity, error) {
	var id Identity
	err := p.Call("importState", struct {
		Blob []byte `json:"blob"`
	}{nonNil(blob)}, &id)
	return id, err
}

// SessionInfo describes the stored session with peer.
func (p *Peer) SessionInfo(peer Address) (SessionInfo, error) {
	return p.SessionInfoAt(peer, time.Time{})
}

// SessionInfoAt is SessionInfo with HasCurrentState judged at now (the zero Time means
// the real clock).
func (p *Peer) SessionInfoAt(peer Address, now time.Time) (SessionInfo, error) {
	var s SessionInfo
	err := p.Call("sessionInfo", struct {
		Peer Address `json:"peer"`
		Now  *int64  `json:"now,omitempty"`
	}{peer, millis(now)}, &s)
	return s, err
}

// ArchiveSession archives the current session state with peer (archiveCurrentState).
func (p *Peer) ArchiveSession(peer Address) error {
	return p.Call("archiveSession", struct {
		Peer Address `json:"peer"`
	}{peer}, nil)
}

// DeleteSession forgets the session with peer.
func (p *Peer) DeleteSession(peer Address) error {
	return p.Call("deleteSession", struct {
		Peer Address `json:"peer"`
	}{peer}, nil)
}

// SaveIdentity stores identityKey as peer's identity and reports whether it replaced a
// different one. Storing a wrong key makes the next session with peer untrusted.
func (p *Peer) SaveIdentity(peer Address, identityKey []byte) (replaced bool, err error) {
	var r struct {
		Replaced bool `json:"replaced"`
	}
	err = p.Call("saveIdentity", struct {
		Peer        Address `json:"peer"`
		IdentityKey []byte  `json:"identityKey"`
	}{peer, nonNil(identityKey)}, &r)
	return r.Replaced, err
}

// GetIdentity returns the identity key stored for peer, or nil.
func (p *Peer) GetIdentity(peer Address) ([]byte, error) {
	var r struct {
		IdentityKey []byte `json:"identityKey"`
	}
	err := p.Call("getIdentity", struct {
		Peer Address `json:"peer"`
	}{peer}, &r)
	return r.IdentityKey, err
}

// Fingerprint computes libsignal's safety number (Fingerprint.new).
func (p *Peer) Fingerprint(params FingerprintParams) (FingerprintResult, error) {
	params.LocalID, params.RemoteID = nonNil(params.LocalID), nonNil(params.RemoteID)
	params.LocalKey, params.RemoteKey = nonNil(params.LocalKey), nonNil(params.RemoteKey)
	var f FingerprintResult
	err := p.Call("fingerprint", params, &f)
	return f, err
}

// CompareFingerprints runs libsignal's ScannableFingerprint compare: local is this side's
// scannable encoding, scanned the bytes read from the other side's QR code.
func (p *Peer) CompareFingerprints(local, scanned []byte) (bool, error) {
	var r struct {
		Match bool `json:"match"`
	}
	err := p.Call("fingerprintCompare", struct {
		Local   []byte `json:"local"`
		Scanned []byte `json:"scanned"`
	}{nonNil(local), nonNil(scanned)}, &r)
	return r.Match, err
}

// Sign signs message with the peer's identity private key (libsignal's XEdDSA).
func (p *Peer) Sign(message []byte) ([]byte, error) {
	var r struct {
		Signature []byte `json:"signature"`
	}
	err := p.Call("sign", struct {
		Message []byte `json:"message"`
	}{nonNil(message)}, &r)
	return r.Signature, err
}

// Verify checks signature over message with a serialized public key (PublicKey.verify).
func (p *Peer) Verify(publicKey, message, signature []byte) (bool, error) {
	var r struct {
		Valid bool `json:"valid"`
	}
	err := p.Call("verify", struct {
		PublicKey []byte `json:"publicKey"`
		Message   []byte `json:"message"`
		Signature []byte `json:"signature"`
	}{nonNil(publicKey), nonNil(message), nonNil(signature)}, &r)
	return r.Valid, err
}

// ParseMessage runs libsignal's deserializer on a message and reports its fields, so a
// test can check that libsignal reads bytes made elsewhere.
func (p *Peer) ParseMessage(c Ciphertext) (MessageInfo, error) {
	var m MessageInfo
	err := p.Call("parseMessage", struct {
		Type int    `json:"type"`
		Body []byte `json:"body"`
	}{c.Type, nonNil(c.Body)}, &m)
	return m, err
}

// HKDF runs libsignal's HKDF-SHA256 (salt nil means none).
func (p *Peer) HKDF(length int, ikm, info, salt []byte) ([]byte, error) {
	var r struct {
		OKM []byte `json:"okm"`
	}
	err := p.Call("hkdf", struct {
		Length int    `json:"length"`
		IKM    []byte `json:"ikm"`
		Info   []byte `json:"info"`
		Salt   []byte `json:"salt"`
	}{length, nonNil(ikm), nonNil(info), salt}, &r)
	return r.OKM, err
}

// millis returns t in milliseconds since 1970 for the harness, or nil for the zero Time.
func millis(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// nonNil turns a nil slice into an empty one, which encoding/json sends as "" rather
// than null (the harness reads null as a missing field).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
