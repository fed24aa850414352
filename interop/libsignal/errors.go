package libsignal

import (
	"errors"
	"fmt"
)

// Kind names the libsignal error behind a RemoteError: the ErrorCode name for errors that
// libsignal's Node bridge gives a code of their own (DuplicatedMessage, UntrustedIdentity,
// ...), and for its Generic errors the Rust SignalProtocolError (or fingerprint error)
// variant, recognized by harness.mjs from the message. Failures of the harness itself are
// KindBadRequest, KindUnknownCommand or KindHarnessError.
type Kind string

// Kinds that tests branch on. The harness may report others (every ErrorCode name and
// every variant listed in harness.mjs); compare RemoteError.Kind with a string for those.
const (
	// KindDuplicatedMessage: a message whose counter was already used (a replay).
	KindDuplicatedMessage Kind = "DuplicatedMessage"
	// KindUntrustedIdentity: the IdentityKeyStore does not trust the peer's identity key.
	KindUntrustedIdentity Kind = "UntrustedIdentity"
	// KindInvalidMessage: a message that does not decrypt or authenticate (bad MAC, no
	// matching session state, missing PQ fields, ...).
	KindInvalidMessage Kind = "InvalidMessage"
	// KindSignatureValidationFailed: a bundle whose signed prekey or Kyber prekey
	// signature does not verify with its identity key.
	KindSignatureValidationFailed Kind = "SignatureValidationFailed"
	// KindSessionNotFound: no session with the peer.
	KindSessionNotFound Kind = "SessionNotFound"
	// KindInvalidSession: a session record that cannot be used (InvalidSessionStructure).
	KindInvalidSession Kind = "InvalidSession"
	// KindInvalidProtobufEncoding: bytes that do not parse as the expected protobuf.
	KindInvalidProtobufEncoding Kind = "InvalidProtobufEncoding"
	// KindInvalidKyberPreKeyID: a PreKeySignalMessage naming a Kyber prekey the
	// recipient does not hold.
	KindInvalidKyberPreKeyID Kind = "InvalidKyberPreKeyId"
	// KindInvalidProtocolAddress: a device id outside 1..127.
	KindInvalidProtocolAddress Kind = "InvalidProtocolAddress"
	// KindApplicationCallbackError: one of the harness's stores refused the operation
	// (for example a missing prekey, or a last-resort Kyber prekey reused).
	KindApplicationCallbackError Kind = "ApplicationCallbackError"
	// KindFingerprintVersionMismatch: a scanned fingerprint of another version.
	KindFingerprintVersionMismatch Kind = "FingerprintVersionMismatch"
	// KindFingerprintParsingError: a scanned fingerprint that does not parse.
	KindFingerprintParsingError Kind = "FingerprintParsingError"
	// KindFingerprintInvalidIterations: an iteration count outside 2..1000000.
	KindFingerprintInvalidIterations Kind = "FingerprintInvalidIterations"
	// KindGeneric: a libsignal error the harness could not name more precisely.
	KindGeneric Kind = "Generic"

	// KindBadRequest: the request's parameters were wrong (the harness's own check).
	KindBadRequest Kind = "BadRequest"
	// KindUnknownCommand: the harness has no such command.
	KindUnknownCommand Kind = "UnknownCommand"
	// KindHarnessError: any other failure inside the harness.
	KindHarnessError Kind = "HarnessError"
)

// Sentinels matched by errors.Is on a *RemoteError of the corresponding Kind.
var (
	ErrDuplicatedMessage         = errors.New("libsignal: duplicated message")
	ErrUntrustedIdentity         = errors.New("libsignal: untrusted identity")
	ErrInvalidMessage            = errors.New("libsignal: invalid message")
	ErrSignatureValidationFailed = errors.New("libsignal: signature validation failed")
	ErrSessionNotFound           = errors.New("libsignal: session not found")
	ErrBadRequest                = errors.New("libsignal: bad request to harness")
)

var kindSentinels = map[Kind]error{
	KindDuplicatedMessage:         ErrDuplicatedMessage,
	KindUntrustedIdentity:         ErrUntrustedIdentity,
	KindInvalidMessage:            ErrInvalidMessage,
	KindSignatureValidationFailed: ErrSignatureValidationFailed,
	KindSessionNotFound:           ErrSessionNotFound,
	KindBadRequest:                ErrBadRequest,
	KindUnknownCommand:            ErrBadRequest,
}

// RemoteError is a failure reported by the harness: a libsignal error or a rejected
// request. Use errors.As to read it, or errors.Is with one of the sentinels above.
type RemoteError struct {
	// Method is the harness command that failed.
	Method string
	// Code is libsignal's ErrorCode number (0 is Generic), or -1 for a harness error.
	Code int
	// CodeName is the ErrorCode's name ("Generic" for 0), or the JavaScript error class
	// for a harness error.
	CodeName string
	// Kind refines CodeName; see Kind.
	Kind Kind
	// Operation is the libsignal bridge function that failed (e.g.
	// "SessionCipher_DecryptSignalMessage"), empty for harness errors.
	Operation string
	// Message is the harness's full error text.
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("libsignal: %s: [%s] %s", e.Method, e.Kind, e.Message)
}

// Unwrap returns the sentinel for e.Kind, if there is one.
func (e *RemoteError) Unwrap() error { return kindSentinels[e.Kind] }

// KindOf returns the Kind of err's *RemoteError, or "" if err has none.
func KindOf(err error) Kind {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Kind
	}
	return ""
}
