package frontdoor

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/fsutil"
	"github.com/doorless/doorless/internal/legal"
)

// Files of the legal directory (doorlessd: DATA/legal, 0700).
const (
	// KeyFile holds the server's legal key, a note signer key (0600)
	// named after the request log's origin.
	KeyFile = "log.key"
	// AdminTokenFile holds the admin API's bearer token (0600).
	AdminTokenFile = "admin-token"
	// AuthoritiesFile is the operator's trust configuration (legal.Trust).
	AuthoritiesFile = "authorities"
	// LogDir is the request log's directory.
	LogDir = "log"
)

// DefaultOriginPrefix starts the origin InitKey makes when none is given.
const DefaultOriginPrefix = "doorless.localhost/legal/"

// ErrNoKey: LoadKey found no key file: the server never started with its
// front door on this data directory.
var ErrNoKey = errors.New("frontdoor: no legal key")

// ErrOriginFixed: InitKey was asked for another origin than its key's.
var ErrOriginFixed = errors.New("frontdoor: the request log's origin is fixed at its first start")

// Key is the server's legal key.
type Key struct {
	Signer   note.Signer
	Verifier note.Verifier
	// VerifierKey is the note verifier key, which verifiers pin.
	VerifierKey string
}

// String does not print the private key.
func (k *Key) String() string { return "frontdoor.Key{" + k.VerifierKey + ", [redacted]}" }

// InitKey returns the legal key in dir, making it first (for origin, or
// DefaultOriginPrefix and a random suffix when origin is empty) when the
// key file does not exist; it also returns whether it made it. A key for
// another origin than a non-empty origin is ErrOriginFixed.
func InitKey(dir, origin string) (*Key, bool, error) {
	path := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(path); err == nil {
		k, err := LoadKey(dir)
		if err != nil {
			return nil, false, err
		}
		if origin != "" && k.Signer.Name() != origin {
			return nil, false, fmt.Errorf("%w: it is %q, not %q", ErrOriginFixed, k.Signer.Name(), origin)
		}
		return k, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("frontdoor: %v", err)
	}
	if origin == "" {
		var b [8]byte
		rand.Read(b[:]) // never fails (crypto/rand)
		origin = DefaultOriginPrefix + hex.EncodeToString(b[:])
	}
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, false, fmt.Errorf("frontdoor: origin %q cannot name a key: %v", origin, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("frontdoor: %v", err)
	}
	if err := fsutil.WriteNew(path, []byte(skey+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("frontdoor: %v", err)
	}
	k, err := LoadKey(dir)
	if err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// LoadKey reads the legal key in dir; ErrNoKey when there is none.
func LoadKey(dir string) (*Key, error) {
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %v", err)
	}
	skey, ok := strings.CutSuffix(string(b), "\n")
	if !ok || strings.ContainsAny(skey, "\r\n") {
		return nil, fmt.Errorf("frontdoor: %s is not one line", KeyFile)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: %s is malformed", KeyFile)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil || v.KeyHash() != signer.KeyHash() {
		return nil, fmt.Errorf("frontdoor: %s is malformed", KeyFile)
	}
	return &Key{Signer: signer, Verifier: v, VerifierKey: vkey}, nil
}

// verifierKey derives the note verifier key of an Ed25519 note signer key
// ("PRIVATE+KEY+name+hash+base64(0x01 || seed)").
func verifierKey(skey string) (string, error) {
	f := strings.SplitN(skey, "+", 5)
	if len(f) != 5 {
		return "", fmt.Errorf("frontdoor: %s is malformed", KeyFile)
	}
	raw, err := base64.StdEncoding.DecodeString(f[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", fmt.Errorf("frontdoor: %s is not an Ed25519 key", KeyFile)
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	clear(raw)
	vkey, err := note.NewEd25519VerifierKey(f[2], pub)
	if err != nil {
		return "", fmt.Errorf("frontdoor: %v", err)
	}
	return vkey, nil
}

// AdminToken is the admin API's bearer token.
type AdminToken struct{ hash [sha256.Size]byte }

// Check reports, in constant time, whether token is the admin token.
func (t *AdminToken) Check(token string) bool {
	h := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1
}

// String does not print the token.
func (t *AdminToken) String() string { return "[redacted]" }

// InitAdminToken returns the admin token in dir, making a random one
// (0600) when there is none, and whether it made it.
func InitAdminToken(dir string) (*AdminToken, bool, error) {
	path := filepath.Join(dir, AdminTokenFile)
	made := false
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		var b [32]byte
		rand.Read(b[:]) // never fails (crypto/rand)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("frontdoor: %v", err)
		}
		if err := fsutil.WriteNew(path, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
			return nil, false, fmt.Errorf("frontdoor: %v", err)
		}
		made = true
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("frontdoor: %v", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < 16 {
		return nil, false, fmt.Errorf("frontdoor: %s holds no token", AdminTokenFile)
	}
	return &AdminToken{hash: sha256.Sum256(tok)}, made, nil
}

// authoritiesTemplate is the trust configuration InitTrust writes.
const authoritiesTemplate = `# Legal authorities this server trusts (docs/legal-requests.md), one line per
# jurisdiction and authority key:
#
#   <jurisdiction> <note verifier key of the authority>
#
# e.g. "us us.example-court+1a2b3c4d+AU...". No line: every request is refused.
`

// InitTrust makes the trust configuration file in dir (trusting no one,
// with comments on its format) when there is none.
func InitTrust(dir string) error {
	path := filepath.Join(dir, AuthoritiesFile)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("frontdoor: %v", err)
	}
	if err := fsutil.WriteNew(path, []byte(authoritiesTemplate), 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("frontdoor: %v", err)
	}
	return nil
}

// TrustFile returns a Config.Trust that reads the trust configuration in
// dir each time; no file trusts no one.
func TrustFile(dir string) func() (*legal.Trust, error) {
	return func() (*legal.Trust, error) {
		b, err := os.ReadFile(filepath.Join(dir, AuthoritiesFile))
		if errors.Is(err, fs.ErrNotExist) {
			return &legal.Trust{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("frontdoor: %v", err)
		}
		return legal.ParseTrust(b)
	}
}
