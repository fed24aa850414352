package profile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// openFromVersion makes a profile of schema version version, as a client
// of that version left it, and opens it (which migrates it), checking that
// it then has the current version.
func openFromVersion(t *testing.T, version int) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := openDB(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmts := range migrations[:version] {
		for _, stmt := range stmts {
			if _, err := db.Exec(stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, version)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var v int
	if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version = %d, %v", v, err)
	}
	return s
}

// TestMigrateFromV1 opens a profile made by schema version 1 (issue 3's
// clients) and finds the tables of version 2 there.
func TestMigrateFromV1(t *testing.T) {
	s := openFromVersion(t, 1)
	err := s.Update(context.Background(), func(tx *Tx) error {
		return tx.SetTimer(UserConversation("bob"), time.Hour, time.Now())
	})
	if err != nil {
		t.Fatalf("the migrated profile has no conversations table: %v", err)
	}
}

func TestHistoryExpiry(t *testing.T) {
	for _, pass := range []string{"", "passphrase"} {
		path := filepath.Join(t.TempDir(), FileName)
		s, err := Create(path, pass, cheapKDF)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		now := time.UnixMilli(1_800_000_000_000)
		secret := []byte("the secret text that must disappear")
		items := []*HistoryItem{
			{ID: "a", Conversation: UserConversation("bob"), Received: now, Expires: now.Add(time.Minute), Data: secret},
			{ID: "b", Conversation: UserConversation("bob"), Received: now.Add(time.Second), Data: []byte("kept")},
			{ID: "c", Conversation: GroupConversation([]byte{1, 2}), Received: now, Expires: now.Add(time.Hour), Data: []byte("group")},
		}
		err = s.Update(ctx, func(tx *Tx) error {
			for _, it := range items {
				if err := tx.PutHistory(it); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.View(ctx, func(tx *Tx) error {
			conv, err := tx.Conversation(UserConversation("bob"), 0)
			if err != nil {
				return err
			}
			if len(conv) != 2 || conv[0].ID != "a" || !bytes.Equal(conv[0].Data, secret) || conv[1].ID != "b" {
				t.Errorf("conversation = %+v", conv)
			}
			if last, err := tx.Conversation(UserConversation("bob"), 1); err != nil || len(last) != 1 || last[0].ID != "b" {
				t.Errorf("last message = %+v, %v", last, err)
			}
			next, err := tx.NextExpiry()
			if err != nil || !next.Equal(now.Add(time.Minute)) {
				t.Errorf("NextExpiry = %v, %v", next, err)
			}
			exp, err := tx.Expired(now.Add(time.Minute))
			if err != nil || len(exp) != 1 || exp[0].ID != "a" {
				t.Errorf("Expired = %+v, %v", exp, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if pass != "" {
			// Sealed: the text is not in the files even before it expires.
			if bytes.Contains(readAll(t, path), secret) {
				t.Fatal("sealed history text found in the profile files")
			}
		}
		err = s.Update(ctx, func(tx *Tx) error { return tx.DeleteHistory("a") })
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(readAll(t, path), secret) {
			t.Fatalf("passphrase %q: deleted text still in the profile files", pass)
		}
		s.Close()
	}
}

// readAll returns the database and its write-ahead log.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func TestGroupsAndSenderKeys(t *testing.T) {
	s := newTestStore(t, "pass")
	ctx := context.Background()
	now := time.Now()
	gid, dist := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.PutGroup(&Group{ID: gid, State: []byte("state"), Change: []byte("change"), DistributionID: dist}, now); err != nil {
			return err
		}
		if err := tx.PutSenderKey(&SenderKey{AccountID: "acct", DeviceID: 2, DistributionID: dist, GroupID: gid, Record: []byte("rec")}, now); err != nil {
			return err
		}
		if err := tx.MarkSenderKeyShared(dist, "acct", 3); err != nil {
			return err
		}
		return tx.PutDeviceList("acct", 4, []byte("list"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		g, err := tx.Group(gid)
		if err != nil || g == nil || string(g.State) != "state" || !bytes.Equal(g.DistributionID, dist) || string(g.Change) != "change" {
			t.Errorf("Group = %+v, %v", g, err)
		}
		k, err := tx.SenderKey("acct", 2, dist)
		if err != nil || k == nil || string(k.Record) != "rec" || !bytes.Equal(k.GroupID, gid) {
			t.Errorf("SenderKey = %+v, %v", k, err)
		}
		if ok, err := tx.SenderKeyShared(dist, "acct", 3); !ok || err != nil {
			t.Errorf("SenderKeyShared = %v, %v", ok, err)
		}
		if ok, err := tx.SenderKeyShared(dist, "acct", 4); ok || err != nil {
			t.Errorf("SenderKeyShared(other device) = %v, %v", ok, err)
		}
		if l, v, err := tx.DeviceList("acct"); string(l) != "list" || v != 4 || err != nil {
			t.Errorf("DeviceList = %q %d %v", l, v, err)
		}
		if err := tx.DeleteGroup(gid); err != nil {
			return err
		}
		if k, err := tx.SenderKey("acct", 2, dist); k != nil || err != nil {
			t.Errorf("sender key kept after its group was deleted: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM groups`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("groups left: %d %v", n, err)
	}
}

// TestReceiptColumns: sent messages are found by their sender timestamp, and
// unread ones by conversation until they are marked read.
func TestReceiptColumns(t *testing.T) {
	s, err := Create(filepath.Join(t.TempDir(), FileName), "pw", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000)
	bob := UserConversation("bob")
	err = s.Update(ctx, func(tx *Tx) error {
		for _, it := range []*HistoryItem{
			{ID: "out1", Conversation: bob, Received: now, Sent: now, Data: []byte("1")},
			{ID: "out2", Conversation: bob, Received: now, Sent: now.Add(time.Millisecond), Data: []byte("2")},
			{ID: "in1", Conversation: bob, Received: now, Unread: true, Data: []byte("3")},
			{ID: "in2", Conversation: UserConversation("carol"), Received: now, Unread: true, Data: []byte("4")},
			{ID: "in3", Conversation: bob, Received: now, Data: []byte("5")},
		} {
			if err := tx.PutHistory(it); err != nil {
				return err
			}
		}
		sent, err := tx.SentAt(now)
		if err != nil || len(sent) != 1 || sent[0].ID != "out1" || !sent[0].Sent.Equal(now) || string(sent[0].Data) != "1" {
			t.Errorf("SentAt = %+v, %v", sent, err)
		}
		if none, err := tx.SentAt(time.UnixMilli(0)); err != nil || len(none) != 0 {
			t.Errorf("SentAt(0) = %+v, %v: received messages have no sender timestamp", none, err)
		}
		unread, err := tx.Unread(bob)
		if err != nil || len(unread) != 1 || unread[0].ID != "in1" || !unread[0].Unread {
			t.Errorf("Unread = %+v, %v", unread, err)
		}
		unread[0].Unread = false
		if err := tx.PutHistory(&unread[0]); err != nil {
			return err
		}
		if unread, err = tx.Unread(bob); err != nil || len(unread) != 0 {
			t.Errorf("Unread after marking = %+v, %v", unread, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestProfileKeysAndSettings(t *testing.T) {
	s, err := Create(filepath.Join(t.TempDir(), FileName), "", cheapKDF)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := bytes.Repeat([]byte{7}, ProfileKeySize)
	err = s.Update(context.Background(), func(tx *Tx) error {
		if p, err := tx.ProfileKey("acct"); err != nil || p != nil {
			t.Errorf("unknown account: %+v, %v", p, err)
		}
		if err := tx.PutProfileKey("acct", &ProfileKey{Key: key[:31]}, time.Now()); err == nil {
			t.Error("a short profile key was stored")
		}
		if err := tx.PutProfileKey("acct", &ProfileKey{Unrestricted: true}, time.Now()); err != nil {
			return err
		}
		if p, err := tx.ProfileKey("acct"); err != nil || p == nil || p.Key != nil || !p.Unrestricted {
			t.Errorf("unrestricted, no key: %+v, %v", p, err)
		}
		if err := tx.PutProfileKey("acct", &ProfileKey{Key: key}, time.Now()); err != nil {
			return err
		}
		if p, err := tx.ProfileKey("acct"); err != nil || !bytes.Equal(p.Key, key) || p.Unrestricted {
			t.Errorf("with key: %+v, %v", p, err)
		}
		if v, err := tx.Setting("x"); err != nil || v != nil {
			t.Errorf("unset setting = %q, %v", v, err)
		}
		if err := tx.PutSetting("x", []byte("1")); err != nil {
			return err
		}
		if v, err := tx.Setting("x"); err != nil || string(v) != "1" {
			t.Errorf("setting = %q, %v", v, err)
		}
		if err := tx.PutSetting("x", nil); err != nil {
			return err
		}
		v, err := tx.Setting("x")
		if err != nil || v != nil {
			t.Errorf("unset again = %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
