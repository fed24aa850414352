package profile

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestMigrateFromV3 opens a profile of schema version 3 (before key
// transparency) and finds the transparency tables there, empty.
func TestMigrateFromV3(t *testing.T) {
	s := openFromVersion(t, 3)
	err := s.Update(context.Background(), func(tx *Tx) error {
		if l, err := tx.TransparencyLog(); err != nil || l != nil {
			t.Errorf("a migrated profile follows a log: %+v, %v", l, err)
		}
		if st, err := tx.OwnerState(); err != nil || st.Baseline() || !st.Checked.IsZero() {
			t.Errorf("owner state = %+v, %v", st, err)
		}
		if as, err := tx.TransparencyAlerts(); err != nil || len(as) != 0 {
			t.Errorf("alerts = %+v, %v", as, err)
		}
		_, err := tx.PinTransparencyLog(&TransparencyLog{Origin: "o", LogKey: "k", VRFKey: []byte{1}}, time.Now())
		return err
	})
	if err != nil {
		t.Fatalf("the migrated profile has no transparency tables: %v", err)
	}
}

func TestTransparencyLogPinnedOnce(t *testing.T) {
	s := newTestStore(t, "")
	now := time.UnixMilli(1_700_000_000_000)
	first := &TransparencyLog{Origin: "log.example/1", LogKey: "log.example/1+abcd+AAAA", VRFKey: []byte{1, 2, 3},
		HeadSize: 5, HeadRoot: bytes.Repeat([]byte{9}, 32), Auditors: []string{"a+1+x", "b+2+y"}, Cosignatures: 2,
		MaxAuditLag: time.Hour}
	err := s.Update(context.Background(), func(tx *Tx) error {
		if err := tx.PutTransparencyHead(1, nil); err != nil {
			return err // no row: changes nothing
		}
		if err := tx.PutTransparencyPolicy(nil, 0, 0); err == nil {
			t.Error("a policy was set without a log")
		}
		if ok, err := tx.PinTransparencyLog(first, now); err != nil || !ok {
			t.Errorf("first pin: %v, %v", ok, err)
		}
		if ok, err := tx.PinTransparencyLog(&TransparencyLog{Origin: "other", LogKey: "x", VRFKey: []byte{4}}, now); err != nil || ok {
			t.Errorf("second pin: %v, %v", ok, err)
		}
		if _, err := tx.PinTransparencyLog(&TransparencyLog{Origin: "o", Auditors: []string{"a\nb"}}, now); err == nil {
			t.Error("an auditor key with a newline was accepted")
		}
		l, err := tx.TransparencyLog()
		if err != nil {
			return err
		}
		want := *first
		want.Pinned = now
		if l.Origin != want.Origin || l.LogKey != want.LogKey || !bytes.Equal(l.VRFKey, want.VRFKey) || l.HeadSize != 5 ||
			!bytes.Equal(l.HeadRoot, want.HeadRoot) || !slices.Equal(l.Auditors, want.Auditors) || l.Cosignatures != 2 ||
			l.MaxAuditLag != time.Hour || !l.Pinned.Equal(now) {
			t.Errorf("log = %+v, want %+v", l, want)
		}
		if err := tx.PutTransparencyHead(7, bytes.Repeat([]byte{8}, 32)); err != nil {
			return err
		}
		if err := tx.PutTransparencyPolicy(nil, 0, 0); err != nil {
			return err
		}
		l, err = tx.TransparencyLog()
		if err != nil {
			return err
		}
		if l.HeadSize != 7 || l.HeadRoot[0] != 8 || l.Auditors != nil || l.Cosignatures != 0 || l.MaxAuditLag != 0 {
			t.Errorf("after updates: %+v", l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTransparencyLabelsOwnerAlerts(t *testing.T) {
	s := newTestStore(t, "pass")
	now := time.UnixMilli(1_700_000_000_000)
	err := s.Update(context.Background(), func(tx *Tx) error {
		if st, err := tx.TransparencyLabel([]byte("a")); err != nil || st != nil {
			t.Errorf("unknown label: %+v, %v", st, err)
		}
		if err := tx.PutTransparencyLabel([]byte("a"), &LabelState{Present: true, Counter: 3, Value: []byte("v"), Verified: now}); err != nil {
			return err
		}
		if err := tx.PutTransparencyLabel([]byte("b"), &LabelState{Verified: now}); err != nil {
			return err
		}
		if st, err := tx.TransparencyLabel([]byte("a")); err != nil || !st.Present || st.Counter != 3 || string(st.Value) != "v" || !st.Verified.Equal(now) {
			t.Errorf("label a = %+v, %v", st, err)
		}
		if st, err := tx.TransparencyLabel([]byte("b")); err != nil || st.Present || len(st.Value) != 0 {
			t.Errorf("label b = %+v, %v", st, err)
		}

		want := &OwnerState{Checked: now, Base: -2, ListVersion: 6}
		if err := tx.PutOwnerState(want); err != nil {
			return err
		}
		if st, err := tx.OwnerState(); err != nil || !reflect.DeepEqual(st, want) {
			t.Errorf("owner = %+v, %v; want %+v", st, err, want)
		}
		// The oldest own change waiting is kept.
		if err := tx.PutOwnChange(7, []byte("list 7")); err != nil {
			return err
		}
		if err := tx.PutOwnChange(8, []byte("list 8")); err != nil {
			return err
		}
		want.OwnVersion, want.OwnList = 7, []byte("list 7")
		if st, err := tx.OwnerState(); err != nil || !reflect.DeepEqual(st, want) {
			t.Errorf("owner with an own change = %+v, %v; want %+v", st, err, want)
		}
		if err := tx.PutOwnerState(&OwnerState{OwnVersion: 3}); err == nil {
			t.Error("an own change without its list was stored")
		}
		// The devices known, those added, and a join left unchecked.
		want.Devices, want.Added, want.JoinUnchecked = []uint32{1, 3, 127}, []uint32{4}, true
		if err := tx.PutOwnerState(want); err != nil {
			return err
		}
		if st, err := tx.OwnerState(); err != nil || !reflect.DeepEqual(st, want) {
			t.Errorf("owner with devices = %+v, %v; want %+v", st, err, want)
		}
		// An empty set of devices is not "not known".
		want.Devices, want.Added, want.JoinUnchecked = []uint32{}, nil, false
		if err := tx.PutOwnerState(want); err != nil {
			return err
		}
		if st, err := tx.OwnerState(); err != nil || st.Devices == nil || len(st.Devices) != 0 || st.Added != nil || st.JoinUnchecked {
			t.Errorf("owner with no devices = %+v, %v", st, err)
		}
		if err := tx.PutOwnerState(&OwnerState{Devices: []uint32{0}}); err == nil {
			t.Error("device 0 was stored")
		}

		a := &TransparencyAlert{At: now, Kind: "identity_key", Subject: "alice", Detail: "d", Device: 5}
		id1, err := tx.AddTransparencyAlert(a)
		if err != nil || id1 == 0 {
			t.Fatalf("first alert: %d, %v", id1, err)
		}
		if id, err := tx.AddTransparencyAlert(a); err != nil || id != 0 {
			t.Errorf("a repeat was stored: %d, %v", id, err)
		}
		id2, err := tx.AddTransparencyAlert(&TransparencyAlert{At: now, Kind: "rollback", Subject: "bob", Detail: "d"})
		if err != nil || id2 <= id1 {
			t.Fatalf("second alert: %d, %v", id2, err)
		}
		as, err := tx.TransparencyAlerts()
		if err != nil || len(as) != 2 || as[0].ID != id1 || as[0].Kind != "identity_key" || as[1].Subject != "bob" || !as[0].At.Equal(now) ||
			as[0].Device != 5 || as[1].Device != 0 {
			t.Errorf("alerts = %+v, %v", as, err)
		}
		if n, err := tx.ClearTransparencyAlerts(id1); err != nil || n != 1 {
			t.Errorf("clear up to the first: %d, %v", n, err)
		}
		if as, err := tx.TransparencyAlerts(); err != nil || len(as) != 1 || as[0].ID != id2 {
			t.Errorf("after clearing: %+v, %v", as, err)
		}
		// Cleared, the same alert may be raised again.
		if id, err := tx.AddTransparencyAlert(a); err != nil || id <= id2 {
			t.Errorf("raised again: %d, %v", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeviceSet(t *testing.T) {
	if got := FormatDeviceSet([]uint32{3, 1, 3, 127}); got != "1,3,127" {
		t.Fatalf("format: %q", got)
	}
	if got, err := ParseDeviceSet("1,3,127"); err != nil || !slices.Equal(got, []uint32{1, 3, 127}) {
		t.Fatalf("parse: %v, %v", got, err)
	}
	if got, err := ParseDeviceSet(""); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("parse of the empty set: %v, %v", got, err)
	}
	for _, bad := range []string{"0", "1,,2", ",1", "1,", "2,1", "1,1", "01", "+1", "-1", "4294967296", "a", " 1"} {
		if got, err := ParseDeviceSet(bad); err == nil {
			t.Errorf("%q parsed as %v", bad, got)
		}
	}
}

// FuzzParseDeviceSet: what parses formats back to the same text.
func FuzzParseDeviceSet(f *testing.F) {
	for _, s := range []string{"", "1", "1,3,127", "2,1", "0", "1,,2", "4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := ParseDeviceSet(s)
		if err != nil {
			return
		}
		if got := FormatDeviceSet(ds); got != s {
			t.Fatalf("%q parsed as %v, formats as %q", s, ds, got)
		}
	})
}
