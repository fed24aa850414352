package certs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

func sender(t *testing.T) sealedsender.Sender {
	t.Helper()
	k, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return sealedsender.Sender{UUID: "0b2c2c1e-6a9e-4a53-9f63-3c7f1d2e8a11", DeviceID: 2, IdentityKey: k.PublicKey()}
}

func TestInitIssueRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := Load(dir); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Load of nothing = %v, want ErrNoKeys", err)
	}
	made, err := Init(dir)
	if err != nil || !made {
		t.Fatalf("Init = %v, %v", made, err)
	}
	if made, err := Init(dir); err != nil || made {
		t.Fatalf("second Init = %v, %v: it must keep the root", made, err)
	}
	for _, f := range []string{rootPrivateFile, "server-1.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v", f, fi, err)
		}
	}
	is, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_800_000_000_000)
	s := sender(t)
	c1, err := is.Issue(s, now)
	if err != nil {
		t.Fatal(err)
	}
	roots := []keys.PublicKey{is.TrustRoot()}
	if err := c1.Validate(roots, now.Add(Lifetime-time.Second)); err != nil {
		t.Fatalf("a fresh certificate does not validate: %v", err)
	}
	if err := c1.Validate(roots, now.Add(Lifetime+time.Second)); !errors.Is(err, sealedsender.ErrExpiredCertificate) {
		t.Fatalf("past its lifetime: %v", err)
	}
	if got := c1.Sender(); got.UUID != s.UUID || got.DeviceID != s.DeviceID || !got.IdentityKey.Equal(s.IdentityKey) {
		t.Fatalf("certificate names %+v", got)
	}

	// Rotation: a new key id issues; the old certificates still validate.
	id, err := Rotate(dir, nil)
	if err != nil || id != 2 {
		t.Fatalf("Rotate = %d, %v", id, err)
	}
	is2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if is2.ServerCertificate().KeyID() != 2 || !is2.TrustRoot().Equal(is.TrustRoot()) {
		t.Fatalf("after rotation: key id %d", is2.ServerCertificate().KeyID())
	}
	c2, err := is2.Issue(s, now)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Signer().KeyID() != 2 || c2.Validate(roots, now) != nil || c1.Validate(roots, now) != nil {
		t.Fatal("certificates of both server keys must validate under the root")
	}

	// Ten rotations: ids sort as numbers, not names.
	for range 9 {
		if _, err := Rotate(dir, nil); err != nil {
			t.Fatal(err)
		}
	}
	if is3, err := Load(dir); err != nil || is3.ServerCertificate().KeyID() != 11 {
		t.Fatalf("after 11 keys: %v", err)
	}
}

func TestOfflineRoot(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, rootPrivateFile))
	if err != nil {
		t.Fatal(err)
	}
	root, err := keys.NewPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, rootPrivateFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(dir, nil); err == nil {
		t.Fatal("Rotate without the root's private key succeeded")
	}
	other, _ := keys.GeneratePrivateKey(nil)
	if _, err := Rotate(dir, other); err == nil {
		t.Fatal("Rotate with another key succeeded")
	}
	if id, err := Rotate(dir, root); err != nil || id != 2 {
		t.Fatalf("Rotate with the offline root = %d, %v", id, err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("Load without the root's private key: %v", err)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	for name, spoil := range map[string]func(dir string) error{
		"certificate not signed by the root": func(dir string) error {
			other, _ := keys.GeneratePrivateKey(nil)
			key, _ := keys.GeneratePrivateKey(nil)
			c, err := sealedsender.NewServerCertificate(2, key.PublicKey(), other, nil)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "server-2.key"), key.Bytes(), 0o600); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "server-2.cert"), c.Bytes(), 0o644)
		},
		"key of another certificate": func(dir string) error {
			key, _ := keys.GeneratePrivateKey(nil)
			return os.WriteFile(filepath.Join(dir, "server-1.key"), key.Bytes(), 0o600)
		},
		"garbage certificate": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "server-1.cert"), []byte("junk"), 0o644)
		},
		"garbage root": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, rootPublicFile), []byte("junk"), 0o644)
		},
	} {
		dir := t.TempDir()
		if _, err := Init(dir); err != nil {
			t.Fatal(err)
		}
		if err := spoil(dir); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
	}
}
