package auditor

import (
	"bytes"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/fsutil"
	"github.com/doorless/doorless/kt"
)

// The state directory's files.
const (
	// keyFile holds the cosigner's private note key (mode 0600).
	keyFile = "cosigner.key"
	// vkeyFile holds its verifier key, which the server's operator
	// configures (doorlessd --kt-auditor VKEY).
	vkeyFile = "cosigner.vkey"
	// pinFile holds the log's identity as first seen: origin, checkpoint
	// key and VRF key.
	pinFile = "log.json"
	// cosignedFile holds the last head this auditor cosigned, which the
	// log must keep extending, across restarts too.
	cosignedFile = "cosigned.json"
	// failureFile records an audit failure. While it exists the auditor
	// refuses to run.
	failureFile = "failure.json"
)

// pin is the log's identity, pinned on the first run.
type pin struct {
	Server   string    `json:"server"` // where it was first seen (not compared)
	Origin   string    `json:"origin"`
	LogKey   string    `json:"log_key"`
	VRFKey   []byte    `json:"vrf_key"`
	PinnedAt time.Time `json:"pinned_at"`
}

// cosignedHead is the last head the auditor cosigned, and when it first
// did (later passes cosign it again without writing it).
type cosignedHead struct {
	Size uint64    `json:"size"`
	Root []byte    `json:"root"`
	At   time.Time `json:"at"`
}

// failureRecord is failure.json.
type failureRecord struct {
	At     time.Time `json:"at"`
	Server string    `json:"server"`
	Origin string    `json:"origin,omitempty"`
	// Epoch is the log index of the epoch that failed; absent when the
	// failure is not one epoch's (a checkpoint, a rollback).
	Epoch  *uint64 `json:"epoch,omitempty"`
	Reason string  `json:"reason"`
}

// LoadOrCreateKey returns the verifier key of the cosigner key in dir,
// making the key pair (named name, with randomness from rand, crypto/rand
// when nil) first when dir holds none. The private key's file is readable
// by its owner only.
func LoadOrCreateKey(dir, name string, rand io.Reader) (vkey string, created bool, err error) {
	_, vkey, created, err = loadOrCreateKey(dir, name, rand, time.Now)
	return vkey, created, err
}

// loadOrCreateKey is LoadOrCreateKey, and returns the cosigner too, timed
// by now.
func loadOrCreateKey(dir, name string, rand io.Reader, now func() time.Time) (signer note.Signer, vkey string, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", false, fmt.Errorf("auditor: %v", err)
	}
	signer, vkey, err = loadKey(dir, now)
	if err == nil {
		return signer, vkey, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", false, err
	}
	if name == "" {
		return nil, "", false, errors.New("auditor: a new cosigner key needs a name")
	}
	if rand == nil {
		rand = cryptorand.Reader
	}
	skey, vkey, err := kt.GenerateCosignerKey(rand, name)
	if err != nil {
		return nil, "", false, fmt.Errorf("auditor: make cosigner key: %v", err)
	}
	if signer, err = kt.NewCosigner(skey, now); err != nil {
		return nil, "", false, fmt.Errorf("auditor: make cosigner key: %v", err)
	}
	// The verifier key first: a key file without it would not load.
	if err := writeNew(filepath.Join(dir, vkeyFile), []byte(vkey+"\n"), 0o644); err != nil {
		return nil, "", false, err
	}
	if err := writeNew(filepath.Join(dir, keyFile), []byte(skey+"\n"), 0o600); err != nil {
		return nil, "", false, err
	}
	return signer, vkey, true, nil
}

// loadKey reads the cosigner key pair, checks that the two halves belong
// together and returns the cosigner, timed by now, and the verifier key.
// fs.ErrNotExist (wrapped) when dir holds no key.
func loadKey(dir string, now func() time.Time) (signer note.Signer, vkey string, err error) {
	sb, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, "", fmt.Errorf("auditor: %w", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, keyFile)); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, "", fmt.Errorf("auditor: %s is readable by others (mode %v); make it 0600", keyFile, fi.Mode().Perm())
	}
	vb, err := os.ReadFile(filepath.Join(dir, vkeyFile))
	if err != nil {
		return nil, "", fmt.Errorf("auditor: cosigner key without its verifier key: %v", err)
	}
	vkey = strings.TrimSpace(string(vb))
	signer, err = kt.NewCosigner(strings.TrimSpace(string(sb)), now)
	if err != nil {
		// The error may quote the key; say only which file is bad.
		return nil, "", fmt.Errorf("auditor: %s does not hold a cosigner key", keyFile)
	}
	v, err := kt.NewCosignatureVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("auditor: %s does not hold a cosigner verifier key: %v", vkeyFile, err)
	}
	if signer.Name() != v.Name() || signer.KeyHash() != v.KeyHash() {
		return nil, "", fmt.Errorf("auditor: %s and %s are not one key pair", keyFile, vkeyFile)
	}
	return signer, vkey, nil
}

// readJSON reads one of the state's JSON files into v; found is false when
// the file does not exist.
func readJSON(dir, name string, v any) (found bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("auditor: %v", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return false, fmt.Errorf("auditor: %s: %v", name, err)
	}
	return true, nil
}

// writeJSON replaces one of the state's JSON files atomically.
func writeJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("auditor: %v", err)
	}
	return writeAtomic(filepath.Join(dir, name), append(b, '\n'), 0o600)
}

// writeNew writes a new file (never over an existing one), durably.
func writeNew(path string, b []byte, mode os.FileMode) error {
	if err := fsutil.WriteNew(path, b, mode); err != nil {
		return fmt.Errorf("auditor: %v", err)
	}
	return nil
}

// writeAtomic replaces path with b, durably (a crash leaves the old file or
// the new one).
func writeAtomic(path string, b []byte, mode os.FileMode) error {
	if err := fsutil.WriteAtomic(path, b, mode); err != nil {
		return fmt.Errorf("auditor: %v", err)
	}
	return nil
}
