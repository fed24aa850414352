// Package fingerprint computes safety numbers as libsignal does: the 60-digit
// displayable fingerprint that two people read to each other, and the scannable
// fingerprint carried in a QR code and compared against the other side's.
//
// Each side's fingerprint is an iterated SHA-512 over its identity key and stable
// identifier (a phone number for version 1, a service id for version 2 in Signal). The
// output is byte-compatible with libsignal's Fingerprint (rust/protocol/src/fingerprint.rs
// in libsignal, as shipped in @signalapp/libsignal-client 0.103); the interop tests in
// interop/libsignal compare both for random inputs.
//
// Identity keys are passed serialized (the type byte 0x05 and 32 bytes) so that this
// package depends on no other. A Fingerprint is immutable and safe for concurrent use;
// the zero Fingerprint is not valid, make one with New.
package fingerprint

import (
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Parameters Signal uses.
const (
	// Iterations is the number of SHA-512 iterations Signal's clients use.
	Iterations = 5200
	// VersionPhoneNumber is the scannable version for fingerprints over phone numbers
	// (libsignal's "version 1" test vectors).
	VersionPhoneNumber = 1
	// VersionServiceID is the scannable version for fingerprints over service ids (ACI
	// bytes), the one Signal uses today.
	VersionServiceID = 2
)

// Constants of libsignal's algorithm (fingerprint.rs).
const (
	// maxIterations is the largest iteration count libsignal accepts; it refuses counts
	// of 1 or less too.
	maxIterations = 1_000_000
	// publicKeySize and keyTypeDJB describe a serialized Curve25519 identity key.
	publicKeySize = 33
	keyTypeDJB    = 0x05
	// displayBytes of each side's hash make its 30 displayed digits: six chunks of
	// chunkBytes, each read big-endian and reduced mod chunkModulus to chunkDigits digits.
	displayBytes = 30
	chunkBytes   = 5
	chunkModulus = 100_000
	chunkDigits  = 5
	// scannableBytes of each side's hash go into the scannable encoding.
	scannableBytes = 32
)

// hashVersion is the two-byte prefix of the first hash round: the fingerprint format's
// own version, 0, which is not the scannable version.
var hashVersion = [2]byte{0, 0}

// Field numbers of the scannable encoding (libsignal's fingerprint.proto: message
// CombinedFingerprints { uint32 version = 1; LogicalFingerprint local_fingerprint = 2;
// LogicalFingerprint remote_fingerprint = 3 } and LogicalFingerprint { bytes content = 1 }).
const (
	fieldVersion        = 1
	fieldLocal          = 2
	fieldRemote         = 3
	fieldLogicalContent = 1
)

var (
	// ErrInvalidIterations is returned by New for an iteration count libsignal refuses
	// (1 or less, or more than 1,000,000).
	ErrInvalidIterations = errors.New("fingerprint: invalid iteration count")
	// ErrInvalidVersion is returned by New for a version that does not fit in 32 bits.
	ErrInvalidVersion = errors.New("fingerprint: invalid version")
	// ErrInvalidKey is returned by New for an identity key that is not 33 bytes starting
	// with the type byte 0x05.
	ErrInvalidKey = errors.New("fingerprint: invalid identity key")
	// ErrMalformed is returned by CompareScanned for bytes that are not a scannable
	// fingerprint: not a valid encoding, or one without both sides' fingerprints.
	ErrMalformed = errors.New("fingerprint: malformed scanned fingerprint")
	// ErrVersionMismatch is matched (errors.Is) by the *VersionMismatchError that
	// CompareScanned returns for a scanned fingerprint of another version.
	ErrVersionMismatch = errors.New("fingerprint: version mismatch")
	// ErrMismatch is returned by CompareScanned when the scanned fingerprint is well
	// formed but its keys or identifiers differ from ours: the safety numbers do not
	// match, and the conversation may be intercepted.
	ErrMismatch = errors.New("fingerprint: safety numbers do not match")
)

// VersionMismatchError reports a scanned fingerprint whose version differs from ours
// (libsignal's VersionMismatch). A scanned encoding without a version has version 0.
type VersionMismatchError struct {
	Theirs, Ours uint32
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("fingerprint: version mismatch: theirs %d, ours %d", e.Theirs, e.Ours)
}

// Is makes errors.Is(err, ErrVersionMismatch) true.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }

// Fingerprint is the safety number of a conversation as seen from the local side.
type Fingerprint struct {
	version    uint32
	display    string
	localHash  [scannableBytes]byte
	remoteHash [scannableBytes]byte
	scannable  []byte
}

// New computes the fingerprint of a conversation between the local identity (localID,
// localKey) and the remote one. version is the scannable version (VersionServiceID in
// Signal today) and iterations the hash iteration count (Iterations); IDs are arbitrary
// bytes and keys serialized identity public keys (0x05 and 32 bytes). Swapping local and
// remote gives the same Displayable string and the Scannable bytes the other side shows.
func New(version, iterations int, localID, localKey, remoteID, remoteKey []byte) (*Fingerprint, error) {
	if version < 0 || version > math.MaxUint32 {
		return nil, ErrInvalidVersion
	}
	if iterations <= 1 || iterations > maxIterations {
		return nil, ErrInvalidIterations
	}
	if !validKey(localKey) || !validKey(remoteKey) {
		return nil, ErrInvalidKey
	}
	local := hash(iterations, localID, localKey)
	remote := hash(iterations, remoteID, remoteKey)
	f := &Fingerprint{version: uint32(version)}
	f.display = displayable(local[:displayBytes], remote[:displayBytes])
	copy(f.localHash[:], local[:scannableBytes])
	copy(f.remoteHash[:], remote[:scannableBytes])
	f.scannable = encodeScannable(f.version, f.localHash[:], f.remoteHash[:])
	return f, nil
}

func validKey(k []byte) bool { return len(k) == publicKeySize && k[0] == keyTypeDJB }

// hash is one side's fingerprint hash: SHA-512(0x0000 || key || id || key), then
// iterations-1 more rounds of SHA-512(previous || key).
func hash(iterations int, id, key []byte) [sha512.Size]byte {
	h := sha512.New()
	h.Write(hashVersion[:])
	h.Write(key)
	h.Write(id)
	h.Write(key)
	var sum [sha512.Size]byte
	h.Sum(sum[:0])
	for range iterations - 1 {
		h.Reset()
		h.Write(sum[:])
		h.Write(key)
		h.Sum(sum[:0])
	}
	return sum
}

// displayable renders both sides' 30 digits and orders them: the lesser string (as
// digit strings compare) comes first, so both sides show the same 60 digits.
func displayable(local, remote []byte) string {
	l, r := digits(local), digits(remote)
	if l < r {
		return l + r
	}
	return r + l
}

// digits renders six 5-byte big-endian chunks mod 100000 as zero-padded 5-digit groups.
func digits(b []byte) string {
	out := make([]byte, 0, displayBytes/chunkBytes*chunkDigits)
	for i := 0; i+chunkBytes <= displayBytes; i += chunkBytes {
		var n uint64
		for _, c := range b[i : i+chunkBytes] {
			n = n<<8 | uint64(c)
		}
		n %= chunkModulus
		s := strconv.FormatUint(n, 10)
		for range chunkDigits - len(s) {
			out = append(out, '0')
		}
		out = append(out, s...)
	}
	return string(out)
}

// Displayable returns the 60-digit safety number, the same on both sides.
func (f *Fingerprint) Displayable() string { return f.display }

// Version returns the scannable version the fingerprint was made with.
func (f *Fingerprint) Version() int { return int(f.version) }

// Scannable returns the bytes to show in a QR code: libsignal's CombinedFingerprints
// encoding of the version and both sides' first 32 hash bytes, local first. The caller
// may modify the returned slice.
func (f *Fingerprint) Scannable() []byte { return append([]byte(nil), f.scannable...) }

// CompareScanned compares the scannable fingerprint read from the other side's screen
// with ours, as libsignal's ScannableFingerprint.compare does: the other side's local
// hash must be our remote one and the other way round. It returns true and a nil error
// only for a match; otherwise false and an error saying why: a *VersionMismatchError
// (errors.Is ErrVersionMismatch) for another version, ErrMalformed for bytes that are no
// scannable fingerprint, ErrMismatch for different keys or identifiers.
func (f *Fingerprint) CompareScanned(scanned []byte) (bool, error) {
	s, err := decodeScannable(scanned)
	if err != nil {
		return false, err
	}
	if s.version != f.version {
		return false, &VersionMismatchError{Theirs: s.version, Ours: f.version}
	}
	if s.local == nil || s.remote == nil {
		return false, fmt.Errorf("%w: missing a side's fingerprint", ErrMalformed)
	}
	// Both comparisons always run, in constant time (lengths aside).
	same := subtle.ConstantTimeCompare(s.local, f.remoteHash[:]) &
		subtle.ConstantTimeCompare(s.remote, f.localHash[:])
	if same != 1 {
		return false, ErrMismatch
	}
	return true, nil
}

// String returns the displayable safety number.
func (f *Fingerprint) String() string { return f.display }
