// Package sealedsender implements Signal's sealed sender, byte-compatible with libsignal
// (the npm package @signalapp/libsignal-client 0.103: rust/protocol/src/sealed_sender.rs
// and sealed_sender.proto): messages whose envelope does not say who sent them.
//
// The sender's identity travels inside the encryption, as a SenderCertificate: the
// sender's account (an ACI UUID), device id and identity key, with an expiry, signed by
// a ServerCertificate, which is in turn signed by a trust root the clients know. The
// server issues sender certificates to its authenticated devices and otherwise never
// sees them again.
//
// A Content (libsignal's UnidentifiedSenderMessageContent) wraps one ciphertext of the
// inner protocol (a session message, a sender-key message or plaintext content) with
// the sender's certificate. It is then sealed:
//
//   - Version 1 (Encrypt) seals to one recipient identity key. The sealed message names
//     nobody: the server routes it by the envelope's recipient alone.
//   - Version 2 (EncryptMulti) seals one Content to many recipients at once, for group
//     messages: the content is encrypted once (AES-256-GCM-SIV) and a 48-byte key share
//     is added per recipient. The "SentMessage" a client uploads lists every recipient's
//     service id and devices with their registration ids, so that the server can split
//     it, without any key, into one "ReceivedMessage" per recipient (ParseSent and
//     SentMessage.ForRecipient). Recipients may also be listed as deliberately excluded.
//
// Decrypt opens both versions. What the server learns: for version 1, nothing beyond the
// envelope it already routes; for version 2, the list of recipients (service ids,
// device ids, registration ids) and which were excluded. In neither case does it learn
// the sender: the certificate and the sender's identity key are encrypted, and the only
// per-sender value in a message (the version 2 authentication tag) is keyed by the
// sender's and the recipient's identity keys.
//
// Decrypt checks what libsignal checks: the message authenticates, and the sender
// identity key bound into the sealing equals the identity key in the certificate. It
// does not validate the certificate: the caller does, with SenderCertificate.Validate,
// its trust roots and its clock, before it believes who sent the message.
//
// The package does no I/O and reads no clock: time and randomness are parameters (a nil
// io.Reader means crypto/rand). Certificates and SentMessages are immutable once made
// and safe for concurrent use (the exported fields of a SentMessage are for reading);
// the functions are safe for concurrent use. EncryptMulti spreads the per-recipient key
// agreements over up to GOMAXPROCS goroutines, as libsignal spreads them over its
// threads, and returns when they are done. A Content is a plain value that the caller
// owns.
package sealedsender

import "errors"

var (
	// ErrInvalidCertificate is returned for bytes that are not a certificate as
	// libsignal encodes it, or for a certificate with a field out of range.
	ErrInvalidCertificate = errors.New("sealedsender: invalid certificate")
	// ErrSignerByID is returned for a sender certificate that names its server
	// certificate by id (libsignal's newer compact form, which refers to certificates
	// built into Signal's apps) instead of embedding it. Doorless's certificates always
	// embed their signer; this form is refused when parsed.
	ErrSignerByID = errors.New("sealedsender: sender certificate names its signer by id (unsupported)")
	// ErrUntrustedCertificate is returned by Validate when a signature does not verify:
	// the server certificate is not signed by any trust root, or the sender certificate
	// not by its server certificate.
	ErrUntrustedCertificate = errors.New("sealedsender: certificate not signed by a trusted key")
	// ErrRevokedCertificate is returned by Validate for a server certificate whose key
	// id libsignal lists as revoked.
	ErrRevokedCertificate = errors.New("sealedsender: server certificate revoked")
	// ErrExpiredCertificate is returned by Validate for a sender certificate past its
	// expiry.
	ErrExpiredCertificate = errors.New("sealedsender: sender certificate expired")
	// ErrInvalidArgument is returned when a certificate, content or message cannot be
	// made from the values given.
	ErrInvalidArgument = errors.New("sealedsender: invalid argument")
	// ErrMalformed is returned for bytes that are not a sealed sender message, a
	// content or a multi-recipient message.
	ErrMalformed = errors.New("sealedsender: malformed message")
	// ErrUnknownVersion is returned for a sealed message of a version this package does
	// not read.
	ErrUnknownVersion = errors.New("sealedsender: unknown sealed sender version")
	// ErrDecryption is returned when a sealed message does not decrypt or authenticate
	// with the local identity key, or when the sender it was sealed by is not the
	// sender its certificate names.
	ErrDecryption = errors.New("sealedsender: message does not decrypt")
)
