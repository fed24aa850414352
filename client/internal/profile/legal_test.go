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
