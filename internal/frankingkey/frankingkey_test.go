package frankingkey

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestInit(t *testing.T) {
	path := filepath.Join(t.TempDir(), File)
	s1, made, err := Init(path)
	if err != nil || !made {
		t.Fatalf("first Init: made %v, %v", made, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("the secret file: %v, %v; want 32 bytes, 0600", fi, err)
	}
	first, _ := os.ReadFile(path)
	// Every later start reads the same secret: the same keys.
	s2, made, err := Init(path)
	if err != nil || made {
		t.Fatalf("second Init: made %v, %v", made, err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("the second Init changed the secret")
	}
	s3, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	id := "0a5b2c8e-1f4d-4b6a-9c3e-7d8f9a0b1c2d"
	k1, k2, k3 := s1.AccountKey(id), s2.AccountKey(id), s3.AccountKey(id)
	if k1 != k2 || k1 != k3 {
		t.Fatal("the keys differ between starts")
	}
	// Another directory, another secret.
	other, _, err := Init(filepath.Join(t.TempDir(), File))
	if err != nil {
		t.Fatal(err)
	}
	if other.AccountKey(id) == k1 {
		t.Fatal("two servers derived the same account key")
	}
}

func TestLoadMalformed(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 31, 33} {
		path := filepath.Join(dir, "short")
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); !errors.Is(err, ErrMalformed) {
			t.Errorf("Load(%d bytes) = %v, want ErrMalformed", size, err)
		}
		if _, _, err := Init(path); !errors.Is(err, ErrMalformed) {
			t.Errorf("Init over %d bytes = %v, want ErrMalformed (and the file left alone)", size, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrMalformed) {
		t.Errorf("Load(missing) = %v", err)
	}
	if _, _, err := Init(filepath.Join(dir, "missing", File)); err == nil {
		t.Error("Init into a missing directory succeeded")
	}
}
