// Package certs keeps doorlessd's sealed-sender keys and issues sender
// certificates.
//
// Three keys make the chain libsignal's sealed sender expects:
//
//	trust root  --signs-->  server certificate (key id, server key)  --signs-->  sender certificates
//
// Clients pin the trust root's public key. The server key signs the
// short-lived sender certificates that a device puts inside every sealed
// message; it is rotated (Rotate) by making a new server key with a new key
// id, signed by the trust root, and issuing with it from then on. Certificates
// made under an older server key stay valid until they expire, since clients
// check the chain to the root, not the server key.
//
// On disk, in a directory (doorlessd: the data directory's "certs", 0700):
//
//	trust-root.pub        the trust root's public key (33 bytes, 0x05 and the key)
//	trust-root.key        its private key (32 bytes); absent when the operator
//	                      keeps the root offline (see Rotate)
//	server-N.cert         the server certificate with key id N (libsignal's encoding)
//	server-N.key          its private key (32 bytes)
//
// The newest server certificate (highest N) issues. Private key files are
// 0600. An Issuer is immutable and safe for concurrent use; Load a new one
// after a rotation.
package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/doorless/doorless/internal/fsutil"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

// Files in the directory.
const (
	rootPublicFile  = "trust-root.pub"
	rootPrivateFile = "trust-root.key"
	serverPrefix    = "server-"
	certSuffix      = ".cert"
	keySuffix       = ".key"
)

// Lifetime is how long a sender certificate is valid. Clients fetch a new one
// well before it runs out; a day bounds how long a removed device can still
// make messages that look sealed by a current member of the account.
const Lifetime = 24 * time.Hour

// ErrNoKeys: the directory holds no trust root or no server certificate.
var ErrNoKeys = errors.New("certs: no sealed-sender keys (run doorlessd certs init)")

// Issuer issues sender certificates under the newest server certificate.
type Issuer struct {
	root   keys.PublicKey
	cert   *sealedsender.ServerCertificate
	key    *keys.PrivateKey
	expiry time.Duration
}

// TrustRoot is the public key clients pin.
func (is *Issuer) TrustRoot() keys.PublicKey { return is.root }

// ServerCertificate is the certificate that issues.
func (is *Issuer) ServerCertificate() *sealedsender.ServerCertificate { return is.cert }

// Issue makes a sender certificate for s, valid for Lifetime from now.
func (is *Issuer) Issue(s sealedsender.Sender, now time.Time) (*sealedsender.SenderCertificate, error) {
	return sealedsender.NewSenderCertificate(s, now.Add(is.expiry), is.cert, is.key, nil)
}

// Init makes a trust root and a first server certificate in dir, unless dir
// already holds a trust root; it returns whether it made them.
func Init(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, rootPublicFile)); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("certs: %v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("certs: %v", err)
	}
	root, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		return false, fmt.Errorf("certs: %v", err)
	}
	// The private half first: a public key without it would stop the next
	// Init from making a root, and Rotate from using one.
	if err := writeFile(filepath.Join(dir, rootPrivateFile), root.Bytes(), 0o600); err != nil {
		return false, err
	}
	pub := root.PublicKey()
	if err := writeFile(filepath.Join(dir, rootPublicFile), pub.Bytes(), 0o644); err != nil {
		return false, err
	}
	if _, err := Rotate(dir, root); err != nil {
		return false, err
	}
	return true, nil
}

// Rotate makes a new server key with the next key id, signs its certificate
// with root (nil: the trust root's private key in dir, which an operator who
// keeps the root offline has removed; then pass it in) and stores both in
// dir. It returns the new key id. A running server issues with the new key
// once it loads it again (doorlessd: on restart).
func Rotate(dir string, root *keys.PrivateKey) (uint32, error) {
	pub, err := readRoot(dir)
	if err != nil {
		return 0, err
	}
	if root == nil {
		b, err := os.ReadFile(filepath.Join(dir, rootPrivateFile))
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errors.New("certs: the trust root's private key is not in the directory; pass it in")
		}
		if err != nil {
			return 0, fmt.Errorf("certs: %v", err)
		}
		if root, err = keys.NewPrivateKey(b); err != nil {
			return 0, errors.New("certs: the trust root's private key file is malformed")
		}
	}
	if !root.PublicKey().Equal(pub) {
		return 0, errors.New("certs: that private key is not the trust root's")
	}
	ids, err := serverIDs(dir)
	if err != nil {
		return 0, err
	}
	var id uint32 = 1
	if len(ids) > 0 {
		id = ids[len(ids)-1] + 1
	}
	key, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		return 0, fmt.Errorf("certs: %v", err)
	}
	cert, err := sealedsender.NewServerCertificate(id, key.PublicKey(), root, nil)
	if err != nil {
		return 0, fmt.Errorf("certs: %v", err)
	}
	// The key before the certificate: Load picks certificates, and one
	// without its key would fail it.
	name := serverPrefix + strconv.FormatUint(uint64(id), 10)
	if err := writeFile(filepath.Join(dir, name+keySuffix), key.Bytes(), 0o600); err != nil {
		return 0, err
	}
	if err := writeFile(filepath.Join(dir, name+certSuffix), cert.Bytes(), 0o644); err != nil {
		return 0, err
	}
	return id, nil
}

// Load reads the trust root's public key and the newest server certificate
// with its key, and checks that the root signed the certificate.
func Load(dir string) (*Issuer, error) {
	root, err := readRoot(dir)
	if err != nil {
		return nil, err
	}
	ids, err := serverIDs(dir)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, ErrNoKeys
	}
	name := filepath.Join(dir, serverPrefix+strconv.FormatUint(uint64(ids[len(ids)-1]), 10))
	cb, err := os.ReadFile(name + certSuffix)
	if err != nil {
		return nil, fmt.Errorf("certs: %v", err)
	}
	cert, err := sealedsender.ParseServerCertificate(cb)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %v", filepath.Base(name+certSuffix), err)
	}
	if err := cert.Validate(root); err != nil {
		return nil, fmt.Errorf("certs: %s is not signed by the trust root: %v", filepath.Base(name+certSuffix), err)
	}
	kb, err := os.ReadFile(name + keySuffix)
	if err != nil {
		return nil, fmt.Errorf("certs: %v", err)
	}
	key, err := keys.NewPrivateKey(kb)
	if err != nil || !key.PublicKey().Equal(cert.Key()) {
		return nil, fmt.Errorf("certs: %s does not hold the certificate's key", filepath.Base(name+keySuffix))
	}
	return &Issuer{root: root, cert: cert, key: key, expiry: Lifetime}, nil
}

func readRoot(dir string) (keys.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, rootPublicFile))
	if errors.Is(err, fs.ErrNotExist) {
		return keys.PublicKey{}, ErrNoKeys
	}
	if err != nil {
		return keys.PublicKey{}, fmt.Errorf("certs: %v", err)
	}
	pub, err := keys.ParsePublicKey(b)
	if err != nil {
		return keys.PublicKey{}, errors.New("certs: the trust root's public key file is malformed")
	}
	return pub, nil
}

// serverIDs lists the key ids of the server certificates in dir, ascending.
func serverIDs(dir string) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certs: %v", err)
	}
	var ids []uint32
	for _, e := range ents { // ReadDir sorts by name, not by number
		n, ok := strings.CutPrefix(e.Name(), serverPrefix)
		if !ok {
			continue
		}
		n, ok = strings.CutSuffix(n, certSuffix)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(n, 10, 32)
		if err != nil || id == 0 {
			continue
		}
		ids = append(ids, uint32(id))
	}
	slices.Sort(ids)
	return ids, nil
}

// writeFile writes a new file (never over an existing one), durably.
func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := fsutil.WriteNew(path, b, mode); err != nil {
		return fmt.Errorf("certs: %v", err)
	}
	return nil
}
