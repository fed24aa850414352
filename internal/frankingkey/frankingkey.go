// Package frankingkey keeps doorlessd's franking secret in its data
// directory: one file, "franking.key", holding franking.SecretSize random
// bytes (mode 0600), from which internal/franking derives the server's
// delivery key and every account's franking key.
//
// Init makes the file once, at a server's first start, and reads it at
// every start; it never changes after, since every delivery tag handed out
// and every account key given to a device derive from it (a new secret
// would make every message delivered before unreportable, and every
// device's account key wrong). Load only reads it. The functions are safe
// for concurrent use; the *franking.Server they return is immutable.
package frankingkey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/doorless/doorless/internal/franking"
	"github.com/doorless/doorless/internal/fsutil"
)

// File is the secret's file name in the data directory.
const File = "franking.key"

// ErrMalformed: the file does not hold a secret of the right size.
var ErrMalformed = errors.New("frankingkey: the franking secret file is malformed")

// Init returns the franking keys derived from the secret at path, making
// the secret first when the file does not exist; it also returns whether
// it made it. The file is written once (fsutil.WriteNew: synced, never over
// an existing file), then read back.
func Init(path string) (*franking.Server, bool, error) {
	if _, err := os.Stat(path); err == nil {
		s, err := Load(path)
		return s, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("frankingkey: %v", err)
	}
	secret, err := franking.NewSecret(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	made := true
	if err := fsutil.WriteNew(path, secret, 0o600); errors.Is(err, fs.ErrExist) {
		made = false // another process made it first: use theirs
	} else if err != nil {
		return nil, false, fmt.Errorf("frankingkey: %v", err)
	}
	clear(secret)
	s, err := Load(path)
	if err != nil {
		return nil, false, err
	}
	return s, made, nil
}

// Load reads the secret at path and derives the franking keys from it.
func Load(path string) (*franking.Server, error) {
	secret, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("frankingkey: %v", err)
	}
	defer clear(secret)
	if len(secret) != franking.SecretSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(secret), franking.SecretSize)
	}
	return franking.NewServer(secret)
}
