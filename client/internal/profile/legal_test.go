package profile

import (
	"context"
	"testing"
	"time"
)

// TestLegal opens a profile of schema version 4 (before legal notices):
// the log's key is pinned once, its checkpoint only grows, and a notice is
// new once.
func TestLegal(t *testing.T) {
	s := openFromVersion(t, 4)
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	err := s.Update(ctx, func(tx *Tx) error {
		if l, err := tx.LegalLog(); err != nil || l != nil {
			t.Errorf("a migrated profile pins a request log: %+v, %v", l, err)
		}
		if ok, err := tx.PinLegalLog("first+1+k", now); err != nil || !ok {
			t.Errorf("PinLegalLog = %v, %v", ok, err)
		}
		if ok, err := tx.PinLegalLog("second+2+k", now); err != nil || ok {
			t.Errorf("second PinLegalLog = %v, %v", ok, err)
		}
		if err := tx.SetLegalCheckpoint([]byte("cp5"), 5); err != nil {
			return err
		}
		if err := tx.SetLegalCheckpoint([]byte("cp3"), 3); err != nil {
			return err
		}
		l, err := tx.LegalLog()
		if err != nil || l.Key != "first+1+k" || string(l.Checkpoint) != "cp5" || l.Size != 5 || !l.Pinned.Equal(now) {
			t.Errorf("LegalLog = %+v, %v", l, err)
		}
		n := &LegalNotice{PublicationIndex: 7, RequestIndex: 2, Request: []byte("note"), Outcome: "accepted",
			Received: now, Published: now.Add(time.Hour), Seen: now}
		if added, err := tx.AddLegalNotice(n); err != nil || !added {
			t.Errorf("AddLegalNotice = %v, %v", added, err)
		}
		if added, err := tx.AddLegalNotice(n); err != nil || added {
			t.Errorf("second AddLegalNotice = %v, %v", added, err)
		}
		ns, err := tx.LegalNotices()
		if err != nil || len(ns) != 1 || ns[0].RequestIndex != 2 || string(ns[0].Request) != "note" || !ns[0].Published.Equal(now.Add(time.Hour)) {
			t.Errorf("LegalNotices = %+v, %v", ns, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRegistered: the device that registered the account knows when from
// its account row; another device knows what it was told, and nothing
// before.
func TestRegistered(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	created := time.UnixMilli(1_700_000_000_000)
	for _, dev := range []uint32{1, 2} {
		s := openFromVersion(t, 5)
		err := s.Update(ctx, func(tx *Tx) error {
			if at, err := tx.Registered(); err != nil || !at.IsZero() {
				t.Errorf("Registered before any account = %v, %v", at, err)
			}
			if err := tx.InitAccount(f.identity, 1, created); err != nil {
				return err
			}
			if err := tx.SetCredentials("https://chat.example", "00000000-0000-4000-8000-000000000001", "alice", dev, "pw"); err != nil {
				return err
			}
			at, err := tx.Registered()
			if err != nil {
				return err
			}
			if dev == 1 && !at.Equal(created) || dev != 1 && !at.IsZero() {
				t.Errorf("device %d: Registered = %v", dev, at)
			}
			told := created.Add(-48 * time.Hour)
			if err := tx.SetRegistered(told); err != nil {
				return err
			}
			if at, err := tx.Registered(); err != nil || !at.Equal(told) {
				t.Errorf("device %d: Registered after SetRegistered = %v, %v", dev, at, err)
			}
			if err := tx.SetRegistered(time.Time{}); err == nil {
				t.Error("SetRegistered of the zero time")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
