// Package ktkeys keeps doorlessd's key-transparency keys in a directory
// (doorlessd: the data directory's "kt", 0700):
//
//	origin    the log's origin line (its name in checkpoints)
//	log.key   the checkpoint signer's note signer key (0600)
//	log.pub   its note verifier key, which clients pin
//	vrf.key   the VRF private key's 32-byte seed (0600)
//
// Init makes them once, at a server's first start, and reads them at every
// start; they never change after, since clients pin the log's keys and
// origin. Load only reads them. Generate makes keys in memory only (Init's,
// and tests'). Keys is immutable and safe for concurrent use.
package ktkeys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/fsutil"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/kt/vrf"
)

// Files in the directory.
const (
	originFile    = "origin"
	logKeyFile    = "log.key"
	logPublicFile = "log.pub"
	vrfKeyFile    = "vrf.key"
)

// ErrOriginFixed: Init was asked for another origin than the one the
// directory holds.
var ErrOriginFixed = errors.New("ktkeys: the log's origin is fixed at its first start")

// DefaultOriginPrefix starts the origin Init makes when none is given: a
// random suffix keeps two servers' logs apart.
const DefaultOriginPrefix = "doorless.localhost/kt/"

// Keys are a log's keys.
type Keys struct {
	Origin string
	Signer note.Signer // signs checkpoints; named Origin
	LogKey string      // Signer's note verifier key
	VRF    *vrf.PrivateKey

	signerKey string // Signer's note signer key, as Generate made it (Init writes it)
}

// LogConfig returns the kt.LogConfig of the keys.
func (k *Keys) LogConfig() kt.LogConfig {
	return kt.LogConfig{Origin: k.Origin, Signer: k.Signer, VRF: k.VRF}
}

// String does not print the private keys.
func (k *Keys) String() string { return "ktkeys.Keys{" + k.Origin + ", [redacted]}" }

// Init returns the keys in dir, making them first, for origin (empty:
// DefaultOriginPrefix and a random suffix), when dir does not exist; it
// also returns whether it made them. When dir holds keys for another origin
// than a non-empty origin, it answers ErrOriginFixed. The files are written
// in a fresh directory beside dir and renamed to dir when complete, so that
// a crash leaves no half-made keys behind; the keys returned are then the
// ones read back from dir.
func Init(dir, origin string) (*Keys, bool, error) {
	if _, err := os.Stat(dir); err == nil {
		k, err := Load(dir)
		if err != nil {
			return nil, false, err
		}
		if origin != "" && k.Origin != origin {
			return nil, false, fmt.Errorf("%w: it is %q, not %q", ErrOriginFixed, k.Origin, origin)
		}
		return k, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("ktkeys: %v", err)
	}
	if origin == "" {
		var b [8]byte
		rand.Read(b[:]) // never fails (crypto/rand)
		origin = DefaultOriginPrefix + hex.EncodeToString(b[:])
	}
	k, err := Generate(rand.Reader, origin)
	if err != nil {
		return nil, false, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, false, fmt.Errorf("ktkeys: %v", err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dir)+".new-")
	if err != nil {
		return nil, false, fmt.Errorf("ktkeys: %v", err)
	}
	defer os.RemoveAll(tmp) // gone after the rename
	for _, f := range []struct {
		name string
		b    []byte
		mode os.FileMode
	}{
		{vrfKeyFile, k.VRF.Seed(), 0o600},
		{logKeyFile, []byte(k.signerKey + "\n"), 0o600},
		{logPublicFile, []byte(k.LogKey + "\n"), 0o644},
		{originFile, []byte(origin + "\n"), 0o644},
	} {
		if err := writeFile(filepath.Join(tmp, f.name), f.b, f.mode); err != nil {
			return nil, false, err
		}
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, false, fmt.Errorf("ktkeys: %v", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, false, fmt.Errorf("ktkeys: %v", err)
	}
	if err := fsutil.SyncDir(parent); err != nil {
		return nil, false, fmt.Errorf("ktkeys: %v", err)
	}
	if k, err = Load(dir); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// Generate makes fresh keys for a log named origin, from rand (use
// crypto/rand.Reader), in memory only: Init keeps them in a directory, and
// tests use them as they are.
func Generate(rand io.Reader, origin string) (*Keys, error) {
	if origin == "" || strings.ContainsAny(origin, "\n") {
		return nil, errors.New("ktkeys: an origin is one line, not empty")
	}
	skey, vkey, err := note.GenerateKey(rand, origin)
	if err != nil {
		return nil, fmt.Errorf("ktkeys: origin %q cannot name a key: %v", origin, err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("ktkeys: %v", err)
	}
	vk, err := vrf.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("ktkeys: %v", err)
	}
	return &Keys{Origin: origin, Signer: signer, LogKey: vkey, VRF: vk, signerKey: skey}, nil
}

// Load reads the keys in dir and checks that they belong together.
func Load(dir string) (*Keys, error) {
	origin, err := readOrigin(dir)
	if err != nil {
		return nil, err
	}
	skey, err := readLine(dir, logKeyFile)
	if err != nil {
		return nil, err
	}
	vkey, err := readLine(dir, logPublicFile)
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("ktkeys: %s is malformed", logKeyFile)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("ktkeys: %s is malformed", logPublicFile)
	}
	msg := []byte("doorless: key check\n")
	sig, err := signer.Sign(msg)
	if err != nil || signer.Name() != origin || v.Name() != origin || v.KeyHash() != signer.KeyHash() || !v.Verify(msg, sig) {
		return nil, fmt.Errorf("ktkeys: %s, %s and %s do not belong together", originFile, logKeyFile, logPublicFile)
	}
	seed, err := os.ReadFile(filepath.Join(dir, vrfKeyFile))
	if err != nil {
		return nil, fmt.Errorf("ktkeys: %v", err)
	}
	vk, err := vrf.NewKeyFromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("ktkeys: %s is malformed", vrfKeyFile)
	}
	return &Keys{Origin: origin, Signer: signer, LogKey: vkey, VRF: vk}, nil
}

func readOrigin(dir string) (string, error) {
	o, err := readLine(dir, originFile)
	if err != nil {
		return "", err
	}
	if o == "" {
		return "", fmt.Errorf("ktkeys: %s is empty", originFile)
	}
	return o, nil
}

// readLine reads a file of one line.
func readLine(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("ktkeys: %v", err)
	}
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok || bytes.ContainsAny(line, "\r\n") {
		return "", fmt.Errorf("ktkeys: %s is not one line", name)
	}
	return string(line), nil
}

// writeFile writes a new file, durably.
func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := fsutil.WriteNew(path, b, mode); err != nil {
		return fmt.Errorf("ktkeys: %v", err)
	}
	return nil
}
