package profile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// cheapKDF keeps the tests fast; the parameters are stored, so Open uses them.
var cheapKDF = KDFParams{Time: 1, Memory: 64, Threads: 1}

type fixture struct {
	identity   keys.KeyPair
	prekey     *keys.PreKey
	signed     *keys.SignedPreKey
	kyber      *keys.KyberPreKey
	record     []byte
	password   string
	inbox      []byte
	profileKey []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	id, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f := &fixture{identity: id, password: "pw-0123456789abcdef0123456789abcdef", inbox: []byte("a secret message body 4c5d"),
		profileKey: []byte("a profile key of 32 bytes, 0x5ec")}
	if f.prekey, err = keys.GeneratePreKey(7, nil); err != nil {
		t.Fatal(err)
	}
	if f.signed, err = keys.GenerateSignedPreKey(id.Private, 8, now, nil); err != nil {
		t.Fatal(err)
	}
	if f.kyber, err = keys.GenerateKyberPreKey(id.Private, 9, keys.KEMKyber1024, true, now, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// populate fills a new store with every kind of secret, including a real
// session record (a session initiated with the fixture's own bundle).
func (f *fixture) populate(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.InitAccount(f.identity, 1234, now); err != nil {
			return err
		}
		if err := tx.SetCredentials("http://x", "0b2c2c1e-6a9e-4a53-9f63-3c7f1d2e8a11", "alice", 1, f.password); err != nil {
			return err
		}
		if err := tx.AddPreKey(f.prekey, now); err != nil {
			return err
		}
		if err := tx.AddSignedPreKey(f.signed); err != nil {
			return err
		}
		if err := tx.AddKyberPreKey(f.kyber); err != nil {
			return err
		}
		var rec session.Record
		b := &session.Bundle{
			RegistrationID: 1, DeviceID: 1,
			HasPreKey: true, PreKeyID: f.prekey.ID, PreKey: f.prekey.KeyPair.Public,
			SignedPreKeyID: f.signed.ID, SignedPreKey: f.signed.KeyPair.Public, SignedPreKeySignature: f.signed.Signature,
			KyberPreKeyID: f.kyber.ID, KyberPreKey: f.kyber.KeyPair.Public, KyberPreKeySignature: f.kyber.Signature,
			IdentityKey: f.identity.Public,
		}
		local := &session.Identity{KeyPair: f.identity, RegistrationID: 1234}
		addr := session.Address{Name: "0b2c2c1e-6a9e-4a53-9f63-3c7f1d2e8a11", DeviceID: 1}
		if err := rec.InitiateSession(local, addr, addr, b, now, nil); err != nil {
			return err
		}
		var err error
		if f.record, err = rec.MarshalBinary(); err != nil {
			return err
		}
		if err := tx.PutSession("peer", 2, &rec, now); err != nil {
			return err
		}
		if err := tx.PutProfileKey("peer", &ProfileKey{Key: f.profileKey}, now); err != nil {
			return err
		}
		return tx.AddInbox(&InboxItem{EnvelopeID: "env", Kind: 1, Data: f.inbox})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) check(t *testing.T, s *Store) {
	t.Helper()
	err := s.View(context.Background(), func(tx *Tx) error {
		a, err := tx.Account()
		if err != nil {
			return err
		}
		if a.Password != f.password || !bytes.Equal(a.Identity.Private.Bytes(), f.identity.Private.Bytes()) || a.Username != "alice" {
			t.Error("account does not round-trip")
		}
		pk, err := tx.PreKey(f.prekey.ID)
		if err != nil {
			return err
		}
		if !pk.KeyPair.Public.Equal(f.prekey.KeyPair.Public) {
			t.Error("prekey does not round-trip")
		}
		spk, err := tx.SignedPreKey(f.signed.ID)
		if err != nil {
			return err
		}
		if !spk.KeyPair.Public.Equal(f.signed.KeyPair.Public) || !bytes.Equal(spk.Signature, f.signed.Signature) {
			t.Error("signed prekey does not round-trip")
		}
		kpk, err := tx.KyberPreKey(f.kyber.ID)
		if err != nil {
			return err
		}
		if !kpk.KeyPair.Public.Equal(f.kyber.KeyPair.Public) || !kpk.LastResort {
			t.Error("kyber prekey does not round-trip")
		}
		rec, err := tx.Session("peer", 2)
		if err != nil {
			return err
		}
		b, _ := rec.MarshalBinary()
		if !bytes.Equal(b, f.record) {
			t.Error("session record does not round-trip")
		}
		it, err := tx.FirstInbox(0)
		if err != nil {
			return err
		}
		if it == nil || !bytes.Equal(it.Data, f.inbox) {
			t.Error("inbox does not round-trip")
		}
		if _, err := tx.PreKey(99); !errors.Is(err, session.ErrMissingPreKey) {
			t.Errorf("missing prekey: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFileModes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	s, err := Create(path, "", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	newFixture(t).populate(t, s)
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), m)
		}
	}
	if _, err := Create(path, "", cheapKDF); !errors.Is(err, ErrProfileExists) {
		t.Errorf("Create over an existing profile: %v", err)
	}
}

func TestRoundTripPlainAndSealed(t *testing.T) {
	for _, pass := range []string{"", "correct horse battery staple"} {
		path := filepath.Join(t.TempDir(), FileName)
		s, err := Create(path, pass, cheapKDF)
		if err != nil {
			t.Fatal(err)
		}
		if s.Sealed() != (pass != "") {
			t.Errorf("Sealed() = %v with passphrase %q", s.Sealed(), pass)
		}
		f := newFixture(t)
		f.populate(t, s)
		f.check(t, s)
		s.Close()
		s, err = Open(path, pass)
		if err != nil {
			t.Fatal(err)
		}
		f.check(t, s)
		s.Close()
	}
}

func TestWrongPassphrase(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Create(path, "right", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	newFixture(t).populate(t, s)
	s.Close()
	for _, pass := range []string{"wrong", "", "right "} {
		if s, err := Open(path, pass); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("Open with %q: %v", pass, err)
			if s != nil {
				s.Close()
			}
		}
	}
	plain := filepath.Join(t.TempDir(), FileName)
	s, err = Create(plain, "", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(plain, "unneeded"); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Open of a plain profile with a passphrase: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), FileName), ""); !errors.Is(err, ErrNoProfile) {
		t.Errorf("Open of nothing: %v", err)
	}
}

// TestSecretsNotInFile looks for every secret's bytes in the database and its
// WAL: absent when sealed, present (the control) when not.
func TestSecretsNotInFile(t *testing.T) {
	for _, pass := range []string{"passphrase", ""} {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		s, err := Create(path, pass, cheapKDF)
		if err != nil {
			t.Fatal(err)
		}
		f := newFixture(t)
		f.populate(t, s)
		secrets := map[string][]byte{
			"identity private key": f.identity.Private.Bytes(),
			"prekey private key":   f.prekey.KeyPair.Private.Bytes(),
			"signed prekey":        f.signed.KeyPair.Private.Bytes(),
			"kyber private key":    f.kyber.KeyPair.Private.Bytes()[1:33],
			"password":             []byte(f.password),
			"session record":       f.record[len(f.record)-48:],
			"inbox":                f.inbox,
			"profile key":          f.profileKey,
		}
		var files [][]byte
		for _, p := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, b)
		}
		// And after a checkpoint, in the main file alone.
		s.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
		for name, secret := range secrets {
			found := false
			for _, b := range files {
				found = found || bytes.Contains(b, secret)
			}
			if pass != "" && found {
				t.Errorf("sealed profile: %s found in the file", name)
			}
			if pass == "" && !found {
				t.Errorf("plain profile: %s not found in the file (the test does not look where it should)", name)
			}
		}
	}
}

// TestSealedRowBinding: a sealed value moved to another row does not open.
func TestSealedRowBinding(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Create(path, "pass", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := newFixture(t)
	f.populate(t, s)
	ctx := context.Background()
	if _, err := s.db.Exec(`INSERT INTO sessions (account_id, device_id, record, updated) SELECT account_id, 3, record, updated FROM sessions`); err != nil {
		t.Fatal(err)
	}
	err = s.View(ctx, func(tx *Tx) error {
		_, err := tx.Session("peer", 3)
		return err
	})
	if err == nil {
		t.Error("a session record moved to another device opened")
	}
}

func TestComplete(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Create(path, "pass", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	if err := s.Update(context.Background(), func(tx *Tx) error { return tx.InitAccount(f.identity, 1, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if ok, err := Complete(path); err != nil || ok {
		t.Fatalf("Complete before credentials = %v, %v", ok, err)
	}
	if err := s.Update(context.Background(), func(tx *Tx) error {
		if _, err := tx.Account(); !errors.Is(err, ErrNoProfile) {
			t.Errorf("Account of an incomplete profile: %v", err)
		}
		return tx.SetCredentials("http://x", "id", "alice", 1, "pw")
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if ok, err := Complete(path); err != nil || !ok {
		t.Fatalf("Complete after credentials = %v, %v", ok, err)
	}
}

func TestKeyIDsWrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Create(path, "", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := newFixture(t)
	ctx := context.Background()
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.InitAccount(f.identity, 1, time.Now()); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE account SET next_prekey_id = ?`, MaxKeyID-1); err != nil {
			return err
		}
		ids, err := tx.AllocKeyIDs("prekey", 3)
		if err != nil {
			return err
		}
		if ids[0] != MaxKeyID-1 || ids[1] != MaxKeyID || ids[2] != 1 {
			t.Errorf("ids = %v", ids)
		}
		ids, err = tx.AllocKeyIDs("prekey", 1)
		if ids[0] != 2 {
			t.Errorf("next id = %v", ids)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentUpdates runs read-modify-write transactions from two stores
// on one file, as two processes would: none is lost.
func TestConcurrentUpdates(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s1, err := Create(path, "pass", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	f := newFixture(t)
	ctx := context.Background()
	if err := s1.Update(ctx, func(tx *Tx) error { return tx.InitAccount(f.identity, 1, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, "pass")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var before int64
	if err := s1.db.QueryRow(`SELECT next_kyber_id FROM account`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	for _, s := range []*Store{s1, s2, s1, s2} {
		wg.Go(func() {
			for range n {
				err := s.Update(ctx, func(tx *Tx) error {
					_, err := tx.AllocKeyIDs("kyber", 1)
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var after int64
	if err := s2.db.QueryRow(`SELECT next_kyber_id FROM account`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if want := (before-1+4*n)%MaxKeyID + 1; after != want {
		t.Errorf("counter went from %d to %d, want %d: an update was lost", before, after, want)
	}
}

// TestPutContactKeepsVerified: a contact stored under another username with
// a verified contact's account id does not remove the verified one.
func TestPutContactKeepsVerified(t *testing.T) {
	st := newTestStore(t, "")
	kp, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	const acct = "11111111-2222-4333-8444-555555555555"
	now := time.Now()
	err = st.Update(context.Background(), func(tx *Tx) error {
		if err := tx.PutContact(&Contact{Username: "bob", AccountID: acct, IdentityKey: kp.Public, Verified: true}, now); err != nil {
			return err
		}
		if err := tx.PutContact(&Contact{Username: "eve", AccountID: acct, IdentityKey: kp.Public}, now); !errors.Is(err, ErrVerifiedContact) {
			t.Errorf("PutContact over a verified contact's account: %v", err)
		}
		ct, err := tx.Contact("bob")
		if err != nil || ct == nil || !ct.Verified {
			t.Errorf("bob afterwards: %+v, %v", ct, err)
		}
		if ct, err := tx.Contact("eve"); err != nil || ct != nil {
			t.Errorf("eve afterwards: %+v, %v", ct, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newTestStore(t *testing.T, passphrase string) *Store {
	t.Helper()
	s, err := Create(filepath.Join(t.TempDir(), FileName), passphrase, cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCloseDuringOperations: Close while other goroutines use a sealed store
// is not a data race (go test -race), and nothing is written unsealed.
func TestCloseDuringOperations(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Create(path, "passphrase", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte("plaintext-canary-"), 4)
	var wg, running sync.WaitGroup
	for i := range 4 {
		running.Add(1)
		wg.Go(func() {
			started := sync.OnceFunc(running.Done)
			defer started()
			for j := 0; ; j++ {
				err := s.Update(context.Background(), func(tx *Tx) error {
					return tx.AddInbox(&InboxItem{EnvelopeID: "e", Kind: i*1000000 + j, Data: secret})
				})
				if err != nil {
					return // closed
				}
				started()
				if !s.Sealed() {
					t.Error("the store reports itself unsealed")
					return
				}
			}
		})
	}
	running.Wait() // every goroutine got one update through
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("plaintext-canary")) {
			t.Fatalf("a secret was written unsealed in %s", filepath.Base(p))
		}
	}
}

// TestKeyIDsWrapSkipsKeysInUse: a wrap of the Kyber id counter skips the
// ids still held, the last-resort key's above all, which stays as it was.
func TestKeyIDsWrapSkipsKeysInUse(t *testing.T) {
	s := newTestStore(t, "")
	f := newFixture(t)
	ctx := context.Background()
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.InitAccount(f.identity, 1, time.Now()); err != nil {
			return err
		}
		lr := *f.kyber
		lr.ID, lr.LastResort = 1, true
		if err := tx.AddKyberPreKey(&lr); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE account SET next_kyber_id = ?`, MaxKeyID); err != nil {
			return err
		}
		ids, err := tx.AllocKeyIDs("kyber", 2)
		if err != nil {
			return err
		}
		if ids[0] != MaxKeyID || ids[1] != 2 {
			t.Errorf("ids = %v, want [%d 2]: id 1 is the last-resort key's", ids, MaxKeyID)
		}
		one := *f.kyber
		one.ID, one.LastResort = 1, false
		if err := tx.AddKyberPreKey(&one); err == nil {
			t.Error("a one-time key stored over the last-resort key's id")
		}
		if lastResort, err := tx.IsLastResort(1); err != nil || !lastResort {
			t.Errorf("key 1 is last-resort: %v, %v", lastResort, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
