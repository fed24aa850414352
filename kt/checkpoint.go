package kt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a C2SP tlog-checkpoint of the log.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
}

// Marshal returns the checkpoint's note body (C2SP tlog-checkpoint: the
// origin line, the tree size in decimal, the root hash in base64, each
// ending in a newline; no extension lines).
func (c *Checkpoint) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(c.Origin)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatUint(c.Size, 10))
	b.WriteByte('\n')
	b.WriteString(base64.StdEncoding.EncodeToString(c.Root[:]))
	b.WriteByte('\n')
	return b.Bytes()
}

// ParseCheckpoint parses a checkpoint's note body strictly: exactly the
// three lines Marshal writes, a non-empty origin, a size without leading
// zeros and at most math.MaxInt64, a canonical base64 root of HashSize
// bytes (ErrMalformed). The bound on the size lets every user of a
// checkpoint hold its size in an int64 (SQL integers, time-like
// arithmetic); no log reaches it.
func ParseCheckpoint(body []byte) (*Checkpoint, error) {
	lines := strings.SplitAfter(string(body), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return nil, fmt.Errorf("%w: checkpoint is not three lines", ErrMalformed)
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeStr := strings.TrimSuffix(lines[1], "\n")
	rootStr := strings.TrimSuffix(lines[2], "\n")
	if origin == "" || !utf8.ValidString(origin) || strings.ContainsFunc(origin, unicode.IsControl) {
		return nil, fmt.Errorf("%w: checkpoint origin", ErrMalformed)
	}
	size, err := strconv.ParseUint(sizeStr, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeStr {
		return nil, fmt.Errorf("%w: checkpoint size", ErrMalformed)
	}
	if size > math.MaxInt64 {
		return nil, fmt.Errorf("%w: checkpoint size above 2^63-1", ErrMalformed)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootStr)
	if err != nil || len(root) != HashSize {
		return nil, fmt.Errorf("%w: checkpoint root", ErrMalformed)
	}
	c := &Checkpoint{Origin: origin, Size: size}
	copy(c.Root[:], root)
	return c, nil
}

// C2SP tlog-cosignature, "cosignature/v1" with Ed25519: the note key type
// (the signed-note signature type byte), the header line of the signed
// message, and the sizes of a timestamped signature (u64 timestamp and the
// 64-byte signature).
const (
	cosignatureAlg        = 0x04
	cosignatureHeader     = "cosignature/v1\n"
	cosignatureTimePrefix = "time "
	cosignatureSize       = 8 + ed25519.SignatureSize
	privateKeyPrefix      = "PRIVATE+KEY+" // signed-note's private key strings
)

// cosignedMessage returns what a cosignature/v1 signs at time t over a
// checkpoint's note body.
func cosignedMessage(t uint64, body []byte) []byte {
	m := make([]byte, 0, len(cosignatureHeader)+len(cosignatureTimePrefix)+21+len(body))
	m = append(m, cosignatureHeader...)
	m = append(m, cosignatureTimePrefix...)
	m = strconv.AppendUint(m, t, 10)
	m = append(m, '\n')
	return append(m, body...)
}

// cosignatureKeyHash is the key ID of a cosigner: SHA-256(name || "\n" ||
// 0x04 || public key), first four bytes big-endian (C2SP tlog-cosignature).
func cosignatureKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', cosignatureAlg})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// validKeyName is signed-note's rule for key names: non-empty, valid
// UTF-8, no Unicode spaces and no plus signs.
func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && !strings.ContainsFunc(name, unicode.IsSpace) && !strings.Contains(name, "+")
}

// GenerateCosignerKey makes a cosigner's key pair, as note key strings:
// "PRIVATE+KEY+<name>+<key hash>+<base64(0x04 || seed)>" and
// "<name>+<key hash>+<base64(0x04 || public key)>".
func GenerateCosignerKey(rand io.Reader, name string) (skey, vkey string, err error) {
	if !validKeyName(name) {
		return "", "", errors.New("kt: invalid cosigner name")
	}
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return "", "", fmt.Errorf("kt: cosigner key: %v", err)
	}
	hash := cosignatureKeyHash(name, pub)
	skey = fmt.Sprintf("%s%s+%08x+%s", privateKeyPrefix, name, hash,
		base64.StdEncoding.EncodeToString(append([]byte{cosignatureAlg}, priv.Seed()...)))
	vkey = fmt.Sprintf("%s+%08x+%s", name, hash,
		base64.StdEncoding.EncodeToString(append([]byte{cosignatureAlg}, pub...)))
	return skey, vkey, nil
}

// parseKey splits a key string "<name>+<hash>+<base64(0x04 || key)>".
func parseKey(s string, size int) (name string, hash uint32, key []byte, err error) {
	name, rest, ok1 := strings.Cut(s, "+")
	hashStr, b64, ok2 := strings.Cut(rest, "+")
	h, err1 := strconv.ParseUint(hashStr, 16, 32)
	raw, err2 := base64.StdEncoding.Strict().DecodeString(b64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || len(hashStr) != 8 || !validKeyName(name) ||
		len(raw) != 1+size || raw[0] != cosignatureAlg {
		return "", 0, nil, errors.New("kt: malformed cosigner key")
	}
	return name, uint32(h), raw[1:], nil
}

// cosigner signs cosignature/v1 signatures.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
	now  func() time.Time
}

// NewCosigner returns a signer of C2SP cosignature/v1 signatures, timed by
// now (Auditor.Cosign passes its own time instead).
func NewCosigner(skey string, now func() time.Time) (note.Signer, error) {
	rest, ok := strings.CutPrefix(skey, privateKeyPrefix)
	if !ok {
		return nil, errors.New("kt: malformed cosigner key")
	}
	name, hash, seed, err := parseKey(rest, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	if cosignatureKeyHash(name, key.Public().(ed25519.PublicKey)) != hash {
		return nil, errors.New("kt: cosigner key hash mismatch")
	}
	if now == nil {
		return nil, errors.New("kt: cosigner needs a clock")
	}
	return &cosigner{name: name, hash: hash, key: key, now: now}, nil
}

func (s *cosigner) Name() string    { return s.name }
func (s *cosigner) KeyHash() uint32 { return s.hash }
func (s *cosigner) String() string  { return "kt.cosigner(" + s.name + ", [redacted])" }

func (s *cosigner) Sign(msg []byte) ([]byte, error) { return s.signAt(msg, s.now()) }

func (s *cosigner) signAt(body []byte, now time.Time) ([]byte, error) {
	t := now.Unix()
	if t < 0 {
		return nil, errors.New("kt: cosignature time before 1970")
	}
	sig := make([]byte, 8, cosignatureSize)
	binary.BigEndian.PutUint64(sig, uint64(t))
	return append(sig, ed25519.Sign(s.key, cosignedMessage(uint64(t), body))...), nil
}

// cosignatureVerifier verifies cosignature/v1 signatures.
type cosignatureVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

// NewCosignatureVerifier returns a verifier of cosignature/v1 signatures.
// Verifier.Auditors must be such verifiers: others cannot tell when they
// signed.
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	name, hash, key, err := parseKey(vkey, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	if cosignatureKeyHash(name, key) != hash {
		return nil, errors.New("kt: cosigner key hash mismatch")
	}
	return &cosignatureVerifier{name: name, hash: hash, key: key}, nil
}

func (v *cosignatureVerifier) Name() string    { return v.name }
func (v *cosignatureVerifier) KeyHash() uint32 { return v.hash }

func (v *cosignatureVerifier) Verify(body, sig []byte) bool {
	if len(sig) != cosignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	return ed25519.Verify(v.key, cosignedMessage(t, body), sig[8:])
}

// cosignatureTime returns the timestamp of a note signature (as note.Open
// records it: base64 of the key hash and the signature) made by a
// cosignature/v1 signer.
func cosignatureTime(s note.Signature) (time.Time, bool) {
	raw, err := base64.StdEncoding.DecodeString(s.Base64)
	if err != nil || len(raw) != 4+cosignatureSize {
		return time.Time{}, false
	}
	t := binary.BigEndian.Uint64(raw[4:])
	if t > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.Unix(int64(t), 0), true
}

// openCheckpoint opens a checkpoint note, requiring a valid signature by
// key and the origin, and returns the note and its parsed body. The other
// verifiers' signatures are checked too (a bad one fails the note).
func openCheckpoint(msg []byte, origin string, key note.Verifier, others ...note.Verifier) (*note.Note, *Checkpoint, error) {
	if len(msg) > MaxCheckpointSize {
		return nil, nil, fmt.Errorf("%w: checkpoint too long", ErrMalformed)
	}
	n, err := note.Open(msg, note.VerifierList(append([]note.Verifier{key}, others...)...))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	if !signedBy(n, key) {
		return nil, nil, fmt.Errorf("%w: no signature by %s", ErrBadCheckpoint, key.Name())
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, nil, err
	}
	if c.Origin != origin {
		return nil, nil, fmt.Errorf("%w: origin %q, want %q", ErrBadCheckpoint, c.Origin, origin)
	}
	return n, c, nil
}

// signedBy finds v's verified signature in n.
func signedBy(n *note.Note, v note.Verifier) bool {
	_, ok := sigBy(n, v)
	return ok
}

func sigBy(n *note.Note, v note.Verifier) (note.Signature, bool) {
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return s, true
		}
	}
	return note.Signature{}, false
}

// encodeNote writes a note with the given (already made) signatures.
func encodeNote(text string, sigs ...note.Signature) ([]byte, error) {
	b, err := note.Sign(&note.Note{Text: text, Sigs: sigs})
	if err != nil {
		return nil, fmt.Errorf("kt: note: %v", err)
	}
	return b, nil
}
