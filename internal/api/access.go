package api

import (
	"encoding/base64"
	"errors"
)

// Unidentified (sealed-sender) delivery and the caller's own account: paths,
// header, bodies and error code.
//
// An account may hold an unidentified access key: UnidentifiedAccessKeySize
// bytes its clients derive from their profile key and share with contacts
// inside end-to-end encrypted messages. The server only stores it and
// compares it. A send to the account that carries the key in the
// Unidentified-Access-Key header, instead of the device's credentials, is an
// unidentified send: the server delivers its envelopes (of type
// EnvelopeUnidentifiedSender) without learning or recording who sent them.
// An account may also accept unidentified sends from anyone
// (UnrestrictedUnidentifiedAccess), whatever key they carry.

// Paths of the caller's own account.
const (
	PathAccountMe  = "/v1/accounts/me"            // DELETE: delete the caller's account (authenticated)
	PathAttributes = "/v1/accounts/me/attributes" // PUT: set the account's unidentified access (authenticated)
)

// HeaderUnidentifiedAccessKey carries the recipient's unidentified access
// key, in standard base64 with padding, on an unidentified send (PUT
// /v1/messages/{username} without Authorization). The name is Signal's.
const HeaderUnidentifiedAccessKey = "Unidentified-Access-Key"

// UnidentifiedAccessKeySize is the size of an unidentified access key, in
// bytes: Signal derives it from the profile key as the first 16 bytes of
// AES-256-GCM over 16 zero bytes.
const UnidentifiedAccessKeySize = 16

// CodeUnidentifiedAccessDenied (401): an unidentified send whose
// Unidentified-Access-Key is missing, malformed or wrong, or whose recipient
// does not exist: the answer does not tell which.
const CodeUnidentifiedAccessDenied = "unidentified_access_denied"

// AccountAttributes is the body of PUT /v1/accounts/me/attributes.
// UnidentifiedAccessKey, when present (UnidentifiedAccessKeySize bytes),
// replaces the account's key; absent keeps it.
// UnrestrictedUnidentifiedAccess is set as given (absent: false).
type AccountAttributes struct {
	UnidentifiedAccessKey          []byte `json:"unidentified_access_key,omitempty"`
	UnrestrictedUnidentifiedAccess bool   `json:"unrestricted_unidentified_access"`
}

// ErrBadAccessKey is what ParseUnidentifiedAccessKey returns for anything
// but the standard base64 of UnidentifiedAccessKeySize bytes.
var ErrBadAccessKey = errors.New("api: malformed unidentified access key")

// encodedAccessKeySize is the length of a key in standard base64 with
// padding.
var encodedAccessKeySize = base64.StdEncoding.EncodedLen(UnidentifiedAccessKeySize)

// ParseUnidentifiedAccessKey decodes the value of an Unidentified-Access-Key
// header: exactly the standard base64, with padding, of
// UnidentifiedAccessKeySize bytes. Anything else (other lengths, the URL
// alphabet, missing padding, non-zero trailing bits, whitespace) is
// ErrBadAccessKey.
func ParseUnidentifiedAccessKey(s string) ([UnidentifiedAccessKeySize]byte, error) {
	var k [UnidentifiedAccessKeySize]byte
	if len(s) != encodedAccessKeySize {
		return k, ErrBadAccessKey
	}
	var b [UnidentifiedAccessKeySize + 2]byte // DecodedLen of 24 characters is 18
	n, err := base64.StdEncoding.Strict().Decode(b[:], []byte(s))
	if err != nil || n != UnidentifiedAccessKeySize {
		return k, ErrBadAccessKey
	}
	copy(k[:], b[:n])
	return k, nil
}

// FormatUnidentifiedAccessKey encodes a key for the Unidentified-Access-Key
// header.
func FormatUnidentifiedAccessKey(k [UnidentifiedAccessKeySize]byte) string {
	return base64.StdEncoding.EncodeToString(k[:])
}

// Multi-recipient (sealed sender v2) sends: one request carries a group
// message for every member's devices.
const (
	// PathMultiRecipient: PUT a sealed sender v2 message (libsignal's
	// SentMessage encoding) as the body, of type ContentTypeMultiRecipient,
	// with query parameters "id" (the send id, a UUID) and "timestamp"
	// (Unix milliseconds), QueryFranking, and the XOR of every recipient's
	// access key in the Unidentified-Access-Key header. No Authorization.
	// The hyphen keeps it apart from every username.
	PathMultiRecipient = "/v1/messages/multi-recipient"
	// QueryFranking is the multi-recipient send's franking commitment
	// (FrankingSize bytes, unpadded URL-safe base64), the same for every
	// recipient.
	QueryFranking = "franking"
	// ContentTypeMultiRecipient is the media type of its body.
	ContentTypeMultiRecipient = "application/vnd.doorless.multi-recipient"
	// MaxMultiRecipients bounds the recipients of one multi-recipient send.
	MaxMultiRecipients = 1000
)

// RecipientDevices is one recipient's part of a refused multi-recipient
// send: the devices missing and extra (with mismatched_devices, 409) or
// stale (with stale_devices, 410), as for a one-recipient send.
type RecipientDevices struct {
	AccountID      string   `json:"account_id"`
	MissingDevices []uint32 `json:"missing_devices,omitempty"`
	ExtraDevices   []uint32 `json:"extra_devices,omitempty"`
	StaleDevices   []uint32 `json:"stale_devices,omitempty"`
}

// CombineAccessKeys is the Unidentified-Access-Key of a multi-recipient
// send: the XOR of the recipients' keys. Every recipient must hold a key,
// or take sealed messages from anyone (then, without a key, it adds
// nothing).
func CombineAccessKeys(ks ...[UnidentifiedAccessKeySize]byte) [UnidentifiedAccessKeySize]byte {
	var out [UnidentifiedAccessKeySize]byte
	for _, k := range ks {
		for i := range out {
			out[i] ^= k[i]
		}
	}
	return out
}
