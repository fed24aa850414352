package ktkeys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt"
)

func TestInitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kt")
	k, made, err := Init(dir, "")
	if err != nil || !made {
		t.Fatalf("Init = %v, %v", made, err)
	}
	if loaded, err := Load(dir); err != nil || loaded.LogKey != k.LogKey || loaded.Origin != k.Origin ||
		string(loaded.VRF.Seed()) != string(k.VRF.Seed()) {
		t.Fatalf("Load does not read the keys Init made: %v", err)
	}
	if !strings.HasPrefix(k.Origin, DefaultOriginPrefix) || len(k.Origin) != len(DefaultOriginPrefix)+16 {
		t.Fatalf("default origin %q", k.Origin)
	}
	// Private files are 0600, the directory 0700, and nothing else is
	// left beside it.
	for name, want := range map[string]os.FileMode{logKeyFile: 0o600, vrfKeyFile: 0o600, logPublicFile: 0o644, originFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", name, fi.Mode(), err, want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
		t.Errorf("the parent holds %d entries, want the directory alone", len(ents))
	}
	// The keys sign and verify; the log config is theirs.
	v, err := note.NewVerifier(k.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: "hello\n"}, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	if cfg := k.LogConfig(); cfg.Origin != k.Origin || cfg.VRF != k.VRF {
		t.Fatal("LogConfig is not the keys'")
	}
	if strings.Contains(k.String(), "PRIVATE") {
		t.Fatal("String prints the private key")
	}

	// A second Init keeps them, with no origin or the same one; another
	// origin is refused.
	for _, o := range []string{"", k.Origin} {
		again, made, err := Init(dir, o)
		if err != nil || made || again.LogKey != k.LogKey || string(again.VRF.Seed()) != string(k.VRF.Seed()) {
			t.Fatalf("Init(%q) again = %v, %v", o, made, err)
		}
	}
	if _, _, err := Init(dir, "other.example/log"); !errors.Is(err, ErrOriginFixed) {
		t.Fatalf("Init with another origin: %v", err)
	}
	k2, err := Load(dir)
	if err != nil || k2.LogKey != k.LogKey || string(k2.VRF.Seed()) != string(k.VRF.Seed()) {
		t.Fatalf("reloaded keys differ: %v", err)
	}
}

func TestInitOrigin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kt")
	if _, _, err := Init(dir, "example.com/log"); err != nil {
		t.Fatal(err)
	}
	k, err := Load(dir)
	if err != nil || k.Origin != "example.com/log" {
		t.Fatalf("origin %v, %v", k, err)
	}
	for _, bad := range []string{"two\nlines", "with space", "a+b"} {
		if _, _, err := Init(filepath.Join(t.TempDir(), "kt"), bad); err == nil {
			t.Errorf("Init(%q) accepted", bad)
		}
	}
}

func TestLoadRefusesMismatch(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if _, _, err := Init(d, "example.com/log"); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(b, logPublicFile))
	if err := os.WriteFile(filepath.Join(a, logPublicFile), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(a); err == nil {
		t.Fatal("Load accepted another log's public key")
	}
	if err := os.WriteFile(filepath.Join(b, vrfKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(b); err == nil {
		t.Fatal("Load accepted a short VRF seed")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Load of nothing succeeded")
	}
}

// TestGenerate: keys made in memory make a log, its checkpoints verify with
// LogKey, two calls make different keys, and a bad origin is refused.
func TestGenerate(t *testing.T) {
	k, err := Generate(rand.Reader, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	l, err := kt.NewLog(k.LogConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(nil, time.Now(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(k.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := note.Open(l.Checkpoint(), note.VerifierList(v)); err != nil || !strings.HasPrefix(n.Text, "example.com/log\n") {
		t.Fatalf("the log's checkpoint under LogKey: %v", err)
	}
	if strings.Contains(fmt.Sprint(k), "PRIVATE") {
		t.Fatal("String prints the private key")
	}
	k2, err := Generate(rand.Reader, "example.com/log")
	if err != nil || k2.LogKey == k.LogKey || string(k2.VRF.Seed()) == string(k.VRF.Seed()) {
		t.Fatalf("two calls made the same keys: %v", err)
	}
	for _, bad := range []string{"", "two\nlines", "with space", "a+b"} {
		if _, err := Generate(rand.Reader, bad); err == nil {
			t.Errorf("Generate(%q) accepted", bad)
		}
	}
}
