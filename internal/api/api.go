// Package api is the contract between doorlessd and its clients: the JSON
// bodies of the HTTP API under /v1/, the error body every 4xx and 5xx carries,
// and the frames of the delivery WebSocket. docs/api.md describes the same
// contract for people; this package is it for code. The server and the client
// SDK both import it, so that they cannot drift apart.
//
// Byte fields ([]byte) travel as standard base64 with padding, which is how
// encoding/json encodes them. Times travel as Unix milliseconds.
//
// The package holds types and pure functions only; everything is safe for
// concurrent use.
package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
)

// Paths of the HTTP API. {username} and {device} are path parameters.
const (
	PathAccounts  = "/v1/accounts"                 // POST: register
	PathAccount   = "/v1/accounts/{username}"      // GET: look up a user (authenticated)
	PathDevices   = "/v1/devices"                  // GET: the caller's devices; POST: link a device
	PathDevice    = "/v1/devices/{device}"         // DELETE: revoke one of the caller's devices
	PathKeys      = "/v1/keys"                     // PUT: upload prekeys
	PathKeyStatus = "/v1/keys/status"              // GET: how many one-time prekeys the server holds
	PathBundle    = "/v1/keys/{username}/{device}" // GET: prekey bundles; {device} is a number or "*"
	PathMessages  = "/v1/messages/{username}"      // PUT: send to every device of a user
	PathWebSocket = "/v1/websocket"                // GET: the delivery WebSocket
	PathHealth    = "/healthz"
	PathMetrics   = "/metrics"
)

// Registration policies (doorlessd --registration).
const (
	RegistrationOpen   = "open"
	RegistrationInvite = "invite"
	RegistrationClosed = "closed"
)

// Limits every implementation agrees on. The server may be configured
// stricter, never looser.
const (
	// MaxPreKeysPerUpload bounds the one-time prekeys (and, separately, the
	// one-time Kyber prekeys) in one upload.
	MaxPreKeysPerUpload = 100
	// MaxStoredPreKeys bounds the one-time prekeys (and, separately, the
	// one-time Kyber prekeys) the server holds for one device: an upload
	// that could take the device over it is refused.
	MaxStoredPreKeys = 1000
	// MaxDevicesPerAccount bounds a user's devices; device ids are 1..127, so
	// that they fit the byte libsignal binds into a session's first messages.
	MaxDevicesPerAccount = 127
	// PrimaryDeviceID is the device an account is registered with.
	PrimaryDeviceID = 1
	// MaxRegistrationID is the largest registration id (14 bits, as libsignal).
	MaxRegistrationID = 0x3FFF
	// RefillThreshold: when a device has fewer one-time prekeys (or one-time
	// Kyber prekeys) than this on the server, the server asks it to refill.
	RefillThreshold = 10
)

// Basic authentication: every authenticated request, and the WebSocket
// upgrade, carries "Authorization: Basic base64(login ":" password)" where
// login is Login(accountID, deviceID) and password is what registration (or
// device linking) returned.

// Login is the user part of a device's Basic credentials.
func Login(accountID string, deviceID uint32) string {
	return fmt.Sprintf("%s.%d", accountID, deviceID)
}

var usernameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{2,31}$`)

// ValidUsername reports whether name is an acceptable username: 3 to 32
// characters of lower-case ASCII letters, digits and underscores, starting
// with a letter. Usernames are compared exactly; clients lower-case what a
// person types before sending it.
func ValidUsername(name string) bool { return usernameRE.MatchString(name) }

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// ValidUUID reports whether s is a lower-case hyphenated version-4 UUID, the
// form account ids, envelope ids and send ids take.
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// NewUUID returns a random version-4 UUID in lower-case hyphenated form.
// Account ids are UUIDs so that libsignal's address binding (which applies to
// service ids) covers Doorless sessions too.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return FormatUUID(b)
}

// FormatUUID writes 16 bytes as a lower-case hyphenated UUID.
func FormatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ---- Keys ----

// PreKey is a one-time Curve25519 prekey: its id and its public key in
// libsignal's 33-byte encoding (0x05 and the key).
type PreKey struct {
	ID        uint32 `json:"id"`
	PublicKey []byte `json:"public_key"`
}

// SignedPreKey is a Curve25519 prekey signed by the identity key (XEdDSA over
// the 33-byte public key).
type SignedPreKey struct {
	ID        uint32 `json:"id"`
	PublicKey []byte `json:"public_key"`
	Signature []byte `json:"signature"`
}

// KyberPreKey is a KEM prekey (type byte 0x08 Kyber-1024 or 0x0A ML-KEM-1024,
// then the key) signed by the identity key over those bytes.
type KyberPreKey struct {
	ID        uint32 `json:"id"`
	PublicKey []byte `json:"public_key"`
	Signature []byte `json:"signature"`
}

// KeyUpload is the body of PUT /v1/keys and part of registration. Every field
// is optional in PUT /v1/keys: a signed prekey or last-resort Kyber prekey
// replaces the one held; one-time keys are added to those held. Registration
// requires SignedPreKey and LastResortKyberPreKey. The server verifies every
// signature against the account's identity key and refuses the whole upload
// if one fails.
type KeyUpload struct {
	SignedPreKey          *SignedPreKey `json:"signed_pre_key,omitempty"`
	LastResortKyberPreKey *KyberPreKey  `json:"last_resort_kyber_pre_key,omitempty"`
	PreKeys               []PreKey      `json:"pre_keys,omitempty"`
	KyberPreKeys          []KyberPreKey `json:"kyber_pre_keys,omitempty"`
}

// KeyStatus is how many one-time keys the server holds for a device: the body
// of GET /v1/keys/status and of the "refill" frame.
type KeyStatus struct {
	PreKeys      int `json:"pre_keys"`
	KyberPreKeys int `json:"kyber_pre_keys"`
}

// DeviceBundle is one device's prekey bundle. PreKey is absent when the
// device has no one-time prekey left; KyberPreKey is a one-time Kyber prekey
// or, when those have run out, the device's last-resort Kyber prekey. Each
// one-time key is handed out once, to one caller.
type DeviceBundle struct {
	DeviceID       uint32       `json:"device_id"`
	RegistrationID uint32       `json:"registration_id"`
	SignedPreKey   SignedPreKey `json:"signed_pre_key"`
	PreKey         *PreKey      `json:"pre_key,omitempty"`
	KyberPreKey    KyberPreKey  `json:"kyber_pre_key"`
}

// BundleResponse is the body of GET /v1/keys/{username}/{device}.
type BundleResponse struct {
	AccountID   string         `json:"account_id"`
	IdentityKey []byte         `json:"identity_key"`
	Devices     []DeviceBundle `json:"devices"`
	// DeviceList is the account's signed device list (absent for an
	// account from before device lists): verify the bundles against it.
	DeviceList []byte `json:"device_list,omitempty"`
	// UnrestrictedUnidentifiedAccess: the account takes sealed messages
	// from anyone, so a sender without its access key may seal too.
	UnrestrictedUnidentifiedAccess bool `json:"unrestricted_unidentified_access,omitempty"`
	// Transparency is a kt.LookupProof (binary) for the username's entry,
	// as PathTransparencyLookup answers, for the QueryKnownSize the
	// request gave: the account id, identity key and DeviceList above
	// must be the kt.AccountValue it proves.
	Transparency []byte `json:"transparency,omitempty"`
}

// ---- Accounts and devices ----

// RegisterRequest is the body of POST /v1/accounts. It creates the account
// and its primary device (device 1) in one step. InviteCode is required when
// the server's policy is "invite".
type RegisterRequest struct {
	Username       string    `json:"username"`
	InviteCode     string    `json:"invite_code,omitempty"`
	IdentityKey    []byte    `json:"identity_key"`
	RegistrationID uint32    `json:"registration_id"`
	Keys           KeyUpload `json:"keys"`
	// DeviceList is the account's first device list, version 1 listing
	// device 1, signed by IdentityKey.
	DeviceList []byte `json:"device_list"`
	// UnidentifiedAccessKey, when present, is the account's unidentified
	// access key (UnidentifiedAccessKeySize bytes), which lets senders
	// who hold it send sealed-sender messages to the account.
	UnidentifiedAccessKey []byte `json:"unidentified_access_key,omitempty"`
}

// RegisterResponse answers a registration with the device's credentials. The
// password is shown this once; the server keeps only its hash.
type RegisterResponse struct {
	AccountID string `json:"account_id"`
	DeviceID  uint32 `json:"device_id"`
	Password  string `json:"password"`
}

// Account is the public part of an account: GET /v1/accounts/{username}.
// UnrestrictedUnidentifiedAccess tells that the account accepts
// sealed-sender messages from anyone, whatever Unidentified-Access-Key they
// carry (Signal's profile field of that name), so a sender without the
// account's key may still send sealed.
type Account struct {
	ID                             string `json:"id"`
	Username                       string `json:"username"`
	IdentityKey                    []byte `json:"identity_key"`
	UnrestrictedUnidentifiedAccess bool   `json:"unrestricted_unidentified_access,omitempty"`
}

// Device is one of the caller's devices: GET /v1/devices.
type Device struct {
	ID             uint32 `json:"id"`
	RegistrationID uint32 `json:"registration_id"`
	Created        int64  `json:"created"` // Unix milliseconds
}

// DevicesResponse is the body of GET /v1/devices.
type DevicesResponse struct {
	Devices []Device `json:"devices"`
	// DeviceList is the account's current signed device list (absent for
	// an account from before device lists), to sign the next version from.
	DeviceList []byte `json:"device_list,omitempty"`
}

// ---- Messages ----

// Envelope types: the Signal ciphertext message types (libsignal's
// CiphertextMessageType values), and Signal's envelope type for a
// sealed-sender message.
const (
	EnvelopeWhisper = 2 // SignalMessage
	EnvelopePreKey  = 3 // PreKeySignalMessage
	// EnvelopeUnidentifiedSender is a sealed-sender message: the content is
	// the opaque sealed-sender ciphertext, and the envelope names no
	// sender. 6 is UNIDENTIFIED_SENDER of Signal's Envelope.Type (what
	// libsignal's sealed-sender messages travel as).
	EnvelopeUnidentifiedSender = 6
	EnvelopeSenderKey          = 7 // SenderKeyMessage: a group message under the sender's sender key
)

// ValidEnvelopeType reports whether t is an envelope type the server relays
// (and so a delivered envelope may carry): 2, 3, 6 or 7.
func ValidEnvelopeType(t int) bool {
	return t == EnvelopeWhisper || t == EnvelopePreKey || t == EnvelopeUnidentifiedSender || t == EnvelopeSenderKey
}

// ValidSendType reports whether a send may carry messages of type t: an
// unidentified (sealed-sender) send only EnvelopeUnidentifiedSender, an
// authenticated send only the other types, whose envelopes name their
// sender.
func ValidSendType(t int, unidentified bool) bool {
	if unidentified {
		return t == EnvelopeUnidentifiedSender
	}
	return t != EnvelopeUnidentifiedSender && ValidEnvelopeType(t)
}

// OutgoingMessage is the ciphertext for one device of the recipient.
type OutgoingMessage struct {
	DeviceID       uint32 `json:"device_id"`
	RegistrationID uint32 `json:"registration_id"`
	Type           int    `json:"type"`
	Content        []byte `json:"content"`
}

// SendRequest is the body of PUT /v1/messages/{username}: one ciphertext for
// every current device of the recipient. ID is chosen by the sender (a UUID)
// and makes the request idempotent: the server refuses a second request with
// the same ID from the same device with 409 and code "duplicate", so a sender
// that retries after a lost answer knows the first attempt landed.
type SendRequest struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"` // sender's clock, Unix milliseconds
	// Franking is the message's franking commitment (FrankingSize bytes,
	// internal/franking), the same for every device's copy: every send
	// carries one.
	Franking []byte            `json:"franking"`
	Messages []OutgoingMessage `json:"messages"`
}

// FrankingSize is the size of a franking commitment and of a delivery tag.
const FrankingSize = 32

// SendResponse is the body of a successful send.
type SendResponse struct {
	// Delivered counts the devices the message was queued for.
	Delivered int `json:"delivered"`
}

// Envelope is a message as delivered to one device. A sealed-sender
// envelope (EnvelopeUnidentifiedSender) has no source: SourceAccount,
// SourceUsername and SourceDevice are empty (absent in JSON); every other
// envelope has all three.
type Envelope struct {
	ID              string `json:"id"` // server-assigned UUID; acknowledged by it
	Type            int    `json:"type"`
	SourceAccount   string `json:"source_account,omitempty"`
	SourceUsername  string `json:"source_username,omitempty"`
	SourceDevice    uint32 `json:"source_device,omitempty"`
	ClientTimestamp int64  `json:"client_timestamp"` // Unix milliseconds, the sender's claim
	ServerTimestamp int64  `json:"server_timestamp"` // Unix milliseconds, when the server queued it
	Content         []byte `json:"content"`
	// Franking is the send's franking commitment; FrankingTag the
	// server's delivery tag binding it to this envelope's recipient
	// device, source, type and server timestamp (internal/franking).
	Franking    []byte `json:"franking"`
	FrankingTag []byte `json:"franking_tag"`
}

// ---- Errors ----

// Error codes: the "code" of an ErrorBody. Clients branch on these, never on
// the message.
const (
	CodeBadRequest        = "bad_request"        // 400: malformed JSON, fields out of range
	CodeBadSignature      = "bad_signature"      // 400: a prekey signature does not verify
	CodeUnauthorized      = "unauthorized"       // 401: missing or wrong credentials
	CodeForbidden         = "forbidden"          // 403: registration closed, or not yours
	CodeInvalidInvite     = "invalid_invite"     // 403: unknown or used invite code
	CodeNotFound          = "not_found"          // 404: no such user or device
	CodeUsernameTaken     = "username_taken"     // 409
	CodeDuplicate         = "duplicate"          // 409: a send id already used
	CodeMismatchedDevices = "mismatched_devices" // 409: see MissingDevices and ExtraDevices
	CodeStaleDevices      = "stale_devices"      // 410: see StaleDevices
	CodeTooLarge          = "too_large"          // 413: body or envelope over the limit
	CodeUnsupportedMedia  = "unsupported_media"  // 415: not application/json
	CodeRateLimited       = "rate_limited"       // 429: retry after the Retry-After header
	CodeQueueFull         = "queue_full"         // 429: a recipient device's queue is full
	CodeTooManyDevices    = "too_many_devices"   // 409
	CodeInternal          = "internal"           // 500
	CodeUnavailable       = "unavailable"        // 503: shutting down
)

// Error is the body of every error answer:
//
//	{"error": {"code": "mismatched_devices", "message": "...", "missing_devices": [2]}}
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// MissingDevices and ExtraDevices come with mismatched_devices (409): the
	// sender left out current devices, or addressed devices that do not exist.
	MissingDevices []uint32 `json:"missing_devices,omitempty"`
	ExtraDevices   []uint32 `json:"extra_devices,omitempty"`
	// StaleDevices comes with stale_devices (410): the registration id the
	// sender used is not the device's current one; its session is stale.
	StaleDevices []uint32 `json:"stale_devices,omitempty"`
	// Recipients comes with either code for a multi-recipient send: the
	// recipients whose devices do not match, each with its devices.
	Recipients []RecipientDevices `json:"recipients,omitempty"`
}

func (e *Error) Error() string { return "server: " + e.Code + ": " + e.Message }

// ErrorBody wraps an Error, as the server sends it.
type ErrorBody struct {
	Error *Error `json:"error"`
}
