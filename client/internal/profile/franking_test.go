package profile

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/keys"
)

// TestMigrateFromV4 opens a profile of schema version 4 (before franking)
// with an account and finds it without a franking key, ready to store one
// and what reports take.
func TestMigrateFromV4(t *testing.T) {
	s := openFromVersion(t, 4)
	err := s.Update(context.Background(), func(tx *Tx) error {
		id, err := keys.GenerateKeyPair(nil)
		if err != nil {
			return err
		}
		if err := tx.InitAccount(id, 1, time.Now()); err != nil {
			return err
		}
		if k, err := tx.FrankingKey(); err != nil || k != nil {
			t.Errorf("a migrated profile has a franking key: %x, %v", k, err)
		}
		if err := tx.PutFrankingKey(bytes.Repeat([]byte{1}, FrankingKeySize)); err != nil {
			return err
		}
		return tx.PutReportable("m", []byte("report"))
	})
	if err != nil {
		t.Fatalf("the migrated profile has no franking storage: %v", err)
	}
}

// TestFrankingStorage: the franking key is sealed and checked; what a
// report takes goes with its message.
func TestFrankingStorage(t *testing.T) {
	s := newTestStore(t, "passphrase")
	key := bytes.Repeat([]byte{7}, FrankingKeySize)
	now := time.UnixMilli(1_700_000_000_000)
	err := s.Update(context.Background(), func(tx *Tx) error {
		if _, err := tx.FrankingKey(); !errors.Is(err, ErrNoProfile) {
			t.Errorf("franking key without an account: %v", err)
		}
		if err := tx.PutFrankingKey(key); !errors.Is(err, ErrNoProfile) {
			t.Errorf("franking key stored without an account: %v", err)
		}
		id, err := keys.GenerateKeyPair(nil)
		if err != nil {
			return err
		}
		if err := tx.InitAccount(id, 1, now); err != nil {
			return err
		}
		if err := tx.PutFrankingKey(key[:31]); err == nil {
			t.Error("a short franking key was stored")
		}
		if err := tx.PutFrankingKey(key); err != nil {
			return err
		}
		if got, err := tx.FrankingKey(); err != nil || !bytes.Equal(got, key) {
			t.Errorf("franking key = %x, %v", got, err)
		}
		for _, id := range []string{"a", "b"} {
			if err := tx.PutHistory(&HistoryItem{ID: id, Conversation: "u:x", Received: now, Data: []byte(id)}); err != nil {
				return err
			}
			if err := tx.PutReportable(id, []byte("report "+id)); err != nil {
				return err
			}
		}
		// A message rewritten (a receipt, a download) keeps its report.
		if err := tx.PutHistory(&HistoryItem{ID: "a", Conversation: "u:x", Received: now, Data: []byte("a2")}); err != nil {
			return err
		}
		if got, err := tx.Reportable("a"); err != nil || string(got) != "report a" {
			t.Errorf("reportable a = %q, %v", got, err)
		}
		if err := tx.DeleteHistory("a"); err != nil {
			return err
		}
		if got, err := tx.Reportable("a"); err != nil || got != nil {
			t.Errorf("reportable a after its message went = %q, %v", got, err)
		}
		if got, err := tx.Reportable("b"); err != nil || string(got) != "report b" {
			t.Errorf("reportable b = %q, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Sealed: neither the key nor the report is in the file as it is.
	var raw []byte
	if err := s.db.QueryRow(`SELECT franking_key FROM account`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, key) {
		t.Error("the franking key is stored unsealed")
	}
	if err := s.db.QueryRow(`SELECT data FROM message_franking WHERE id = 'b'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("report b")) {
		t.Error("the report is stored unsealed")
	}
}
