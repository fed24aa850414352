package sqlite

import (
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/audit"
	"github.com/doorless/doorless/internal/store"
)

// TestDeleteAccountLeavesNoBytes looks for the deleted account in the raw
// bytes of the database and its write-ahead log, not only in the rows: a
// deleted row's content must be overwritten (secure_delete) and the log's
// copies of the pages as they were must be gone (the checkpoint).
func TestDeleteAccountLeavesNoBytes(t *testing.T) {
	s, path := openTemp(t)
	ctx := t.Context()
	now := time.Now()
	id := newUUID()
	a := &store.Account{ID: id, Username: "zelda_deleted", IdentityKey: bytes.Repeat([]byte("IK!"), 11), Created: now,
		UnidentifiedAccessKey: []byte("ACCESS-KEY-16-BY")}
	d := &store.Device{AccountID: id, ID: 1, RegistrationID: 9, CredentialHash: bytes.Repeat([]byte("CRED"), 8), Created: now}
	k := &store.KeyUpload{
		SignedPreKey: &store.SignedPreKey{ID: 1, PublicKey: bytes.Repeat([]byte("SPK"), 11), Signature: bytes.Repeat([]byte("SIG!"), 16)},
		LastResort:   &store.KyberPreKey{ID: 2, PublicKey: bytes.Repeat([]byte("LASTRESORT"), 157), Signature: bytes.Repeat([]byte("LRSG"), 16)},
		PreKeys:      []store.PreKey{{ID: 3, PublicKey: bytes.Repeat([]byte("OTP"), 11)}},
		KyberPreKeys: []store.KyberPreKey{{ID: 4, PublicKey: bytes.Repeat([]byte("KYBERONE"), 196), Signature: bytes.Repeat([]byte("KYSG"), 16)}},
	}
	list := &store.DeviceList{Version: 1, Signed: bytes.Repeat([]byte("DEVLIST"), 10)}
	if err := s.CreateAccount(ctx, a, d, k, list, nil); err != nil {
		t.Fatal(err)
	}
	other := register(t, s, "carol")
	if err := s.Enqueue(ctx, envelopeTo(other, d, "CIPHERTEXT-FOR-ZELDA"), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, envelopeTo(d, other, "CIPHERTEXT-FROM-ZELDA"), 10); err != nil {
		t.Fatal(err)
	}
	needles := map[string][]byte{
		"account id": []byte(id), "username": []byte(a.Username), "identity key": a.IdentityKey,
		"access key": a.UnidentifiedAccessKey, "credential hash": d.CredentialHash,
		// Long keys spill over pages: any 40 bytes of their repeated
		// pattern find a fragment.
		"signed prekey": k.SignedPreKey.PublicKey, "last-resort key": k.LastResort.PublicKey[:40],
		"prekey": k.PreKeys[0].PublicKey, "kyber prekey": k.KyberPreKeys[0].PublicKey[:40],
		"device list": list.Signed, "envelope to it": []byte("CIPHERTEXT-FOR-ZELDA"), "envelope from it": []byte("CIPHERTEXT-FROM-ZELDA"),
	}
	dir := filepath.Dir(path)
	before, err := audit.ScanDir(dir, needles)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) < len(needles) {
		t.Fatalf("before deletion only %v are in the files: the test would prove nothing", before)
	}

	if err := s.DeleteAccount(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The deletion's pending update names the account until an epoch
	// publishes it; the sequencer then deletes it, and the log's copies
	// of its page go as the deletion's did.
	if found, err := audit.ScanDir(dir, needles); err != nil || len(found) == 0 {
		t.Fatalf("before the deletion is published the files hold %v, %v; want its pending update", found, err)
	}
	ups, err := s.PendingUpdates(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, u := range ups {
		seqs = append(seqs, u.Seq)
	}
	epoch := &store.Epoch{Number: 0, Timestamp: now.UnixMilli(), Changes: []byte("changes"), Checkpoint: []byte("checkpoint")}
	if err := s.AppendEpoch(ctx, epoch, nil, seqs); err != nil {
		t.Fatal(err)
	}
	after, err := audit.ScanDir(dir, needles)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) > 0 {
		t.Errorf("after deletion the files still hold: %v", after)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("the write-ahead log holds %d bytes after the deletion's checkpoint", fi.Size())
	}
	// The store works on, and its other account is whole.
	if n, err := s.QueueLen(ctx, other.AccountID, other.ID); err != nil || n != 0 {
		t.Errorf("carol's queue: %d, %v; want 0 (the envelope from the deleted account went with it)", n, err)
	}
	if err := s.Enqueue(ctx, envelopeTo(other, other, "after"), 10); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointBetweenBatches: the checkpoint runs on the writer between
// batches, and writes queued around it all commit.
func TestCheckpointBetweenBatches(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	a := register(t, s, "alice")
	resume := pauseWriter(t, s)
	errs := make(chan error, 5)
	for i := range 4 {
		go func() {
			if i == 2 {
				errs <- s.checkpoint(ctx)
				return
			}
			errs <- s.Enqueue(ctx, envelopeTo(a, a, "x"), 10)
		}()
	}
	waitQueued(s, 4)
	resume()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.QueueLen(ctx, a.AccountID, a.ID); err != nil || n != 3 {
		t.Fatalf("queue %d, %v; want 3", n, err)
	}
	if err := s.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateFromVersion2: a database made by the first two schemas opens,
// gains the unidentified access and last-seen columns, and keeps its
// accounts: no access key, restricted, devices last seen on day 0 until
// they are seen.
func TestMigrateFromVersion2(t *testing.T) {
	path, id := oldDatabase(t, 2)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	a, err := s.AccountByID(ctx, id)
	if err != nil || a.UnidentifiedAccessKey != nil || a.UnrestrictedUnidentifiedAccess {
		t.Fatalf("migrated account %+v, %v; want no key, restricted", a, err)
	}
	d, err := s.Device(ctx, id, 1)
	if err != nil || d.LastSeenDay != 0 {
		t.Fatalf("migrated device %+v, %v; want last seen on day 0", d, err)
	}
	day := store.Day(time.Now())
	if err := s.SetLastSeenDay(ctx, id, 1, day); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device(ctx, id, 1); err != nil || d.LastSeenDay != day {
		t.Fatalf("after SetLastSeenDay: %+v, %v", d, err)
	}
	if err := s.DeleteAccount(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccountByUsername(ctx, "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("migrated account after deletion: %v", err)
	}
}

// TestMigrateFromVersion3: a database from before key transparency gains
// its tables, with a pending update for every account it holds, so that
// the log's first epochs publish them.
func TestMigrateFromVersion3(t *testing.T) {
	path, id := oldDatabase(t, 3)
	// A second account, made later, with a device list.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	id2 := newUUID()
	for _, q := range []string{
		`INSERT INTO accounts (id, username, identity_key, created, next_device_id) VALUES ('` + id2 + `', 'listed', x'0507', 1, 2)`,
		`INSERT INTO device_lists (account_id, version, signed) VALUES ('` + id2 + `', 3, x'4c495354')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	ups, err := s.PendingUpdates(ctx, 10)
	if err != nil || len(ups) != 2 {
		t.Fatalf("pending after the migration: %+v, %v; want the two accounts'", ups, err)
	}
	if u := ups[0]; u.AccountID != id || u.Username != "old" || !bytes.Equal(u.IdentityKey, []byte{5}) || len(u.DeviceList) != 0 || u.Deletion() {
		t.Errorf("the old account's pending update %+v, want its key and no device list", u)
	}
	if u := ups[1]; u.AccountID != id2 || u.Username != "listed" || !bytes.Equal(u.IdentityKey, []byte{5, 7}) || string(u.DeviceList) != "LIST" {
		t.Errorf("the listed account's pending update %+v, want its key and device list", u)
	}
	if n, err := s.EpochCount(ctx); err != nil || n != 0 {
		t.Fatalf("EpochCount = %d, %v; want 0", n, err)
	}
}
