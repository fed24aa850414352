package storetest

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
)

func legalRequest(authority string, nonce []byte, target string) *store.LegalRequest {
	return &store.LegalRequest{
		Received:           t0,
		Request:            []byte("signed request " + authority + " " + string(nonce)),
		Salt:               key("salt", uint32(len(nonce)), 32),
		Authority:          authority,
		Nonce:              nonce,
		Jurisdiction:       "us",
		Type:               "court_order",
		Outcome:            "accepted",
		TargetAccount:      target,
		NondisclosureUntil: t0.Add(24 * time.Hour),
	}
}

func testLegalRequests(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice, _ := register(t, s, "alice", keys(0, 0))
	bob, _ := register(t, s, "bob", keys(0, 0))

	r := legalRequest("court", []byte("nonce-1"), alice.ID)
	must(t, "AddLegalRequest", s.AddLegalRequest(ctx, r))
	if r.ID == 0 {
		t.Fatal("no id assigned")
	}
	if seen, err := s.LegalNonceSeen(ctx, "court", []byte("nonce-1")); err != nil || !seen {
		t.Fatalf("LegalNonceSeen: %v, %v", seen, err)
	}
	for _, other := range [][2]string{{"court", "nonce-2"}, {"other", "nonce-1"}} {
		if seen, err := s.LegalNonceSeen(ctx, other[0], []byte(other[1])); err != nil || seen {
			t.Fatalf("LegalNonceSeen(%q): %v, %v", other, seen, err)
		}
	}
	// A replayed nonce is refused and writes nothing; the same nonce of
	// another authority is fine.
	replay := legalRequest("court", []byte("nonce-1"), bob.ID)
	wantErr(t, "AddLegalRequest(replay)", s.AddLegalRequest(ctx, replay), store.ErrNonceSeen)
	must(t, "AddLegalRequest(other authority)", s.AddLegalRequest(ctx, legalRequest("other", []byte("nonce-1"), bob.ID)))
	// Requests that consume no nonce (forged, or replays recorded as
	// refused) are any number.
	forged := &store.LegalRequest{Received: t0, Request: []byte("junk"), Salt: key("salt", 9, 32),
		Jurisdiction: "-", Type: "-", Outcome: "refused:bad_signature"}
	must(t, "AddLegalRequest(forged)", s.AddLegalRequest(ctx, forged))
	forged2 := *forged
	must(t, "AddLegalRequest(forged again)", s.AddLegalRequest(ctx, &forged2))

	// Unlogged until SetLegalRequestLogged; received before the cutoff.
	un, err := s.UnloggedLegalRequests(ctx, t0.Add(time.Second))
	if err != nil || len(un) != 4 || un[0].ID != r.ID {
		t.Fatalf("UnloggedLegalRequests: %d, %v", len(un), err)
	}
	got := un[0]
	if !bytes.Equal(got.Request, r.Request) || !bytes.Equal(got.Salt, r.Salt) || got.Authority != "court" || got.Outcome != "accepted" ||
		got.TargetAccount != alice.ID || !got.NondisclosureUntil.Equal(r.NondisclosureUntil) || got.Logged || got.Published ||
		!got.Received.Equal(t0) || got.Jurisdiction != "us" || got.Type != "court_order" {
		t.Fatalf("stored %+v, want %+v", got, r)
	}
	if un, _ := s.UnloggedLegalRequests(ctx, t0); len(un) != 0 {
		t.Errorf("%d unlogged before t0", len(un))
	}
	for i, u := range un {
		must(t, "SetLegalRequestLogged", s.SetLegalRequestLogged(ctx, u.ID, uint64(10+i)))
	}
	wantErr(t, "SetLegalRequestLogged(none)", s.SetLegalRequestLogged(ctx, 9999, 1), store.ErrNotFound)
	if un, _ := s.UnloggedLegalRequests(ctx, t0.Add(time.Hour)); len(un) != 0 {
		t.Errorf("%d unlogged after logging", len(un))
	}

	// Due once the non-disclosure date is reached; forged ones never.
	if due, err := s.DueLegalRequests(ctx, t0.Add(time.Hour)); err != nil || len(due) != 0 {
		t.Fatalf("due early: %d, %v", len(due), err)
	}
	due, err := s.DueLegalRequests(ctx, t0.Add(24*time.Hour))
	if err != nil || len(due) != 2 || due[0].ID != r.ID || !due[0].Logged || due[0].LogIndex != 10 {
		t.Fatalf("DueLegalRequests: %+v, %v", due, err)
	}
	if p, _ := s.PublishedLegalRequests(ctx, alice.ID); len(p) != 0 {
		t.Fatalf("published before publication: %d", len(p))
	}
	must(t, "SetLegalRequestPublished", s.SetLegalRequestPublished(ctx, r.ID, 20, t0.Add(25*time.Hour)))
	wantErr(t, "SetLegalRequestPublished(none)", s.SetLegalRequestPublished(ctx, 9999, 1, t0), store.ErrNotFound)
	if due, _ := s.DueLegalRequests(ctx, t0.Add(48*time.Hour)); len(due) != 1 || due[0].ID == r.ID {
		t.Fatalf("due after publishing one: %+v", due)
	}
	p, err := s.PublishedLegalRequests(ctx, alice.ID)
	if err != nil || len(p) != 1 || p[0].ID != r.ID || !p[0].Published || p[0].PublicationIndex != 20 || !p[0].PublishedAt.Equal(t0.Add(25*time.Hour)) {
		t.Fatalf("PublishedLegalRequests(alice): %+v, %v", p, err)
	}
	if p, _ := s.PublishedLegalRequests(ctx, bob.ID); len(p) != 0 {
		t.Fatalf("bob sees %d", len(p))
	}

	// Deleting the target account forgets whom the request targeted, and
	// keeps the request (its commitment is in the public log).
	must(t, "DeleteAccount", s.DeleteAccount(ctx, alice.ID))
	if p, _ := s.PublishedLegalRequests(ctx, alice.ID); len(p) != 0 {
		t.Fatalf("a deleted account still has %d notices", len(p))
	}
	if seen, _ := s.LegalNonceSeen(ctx, "court", []byte("nonce-1")); !seen {
		t.Error("deleting the target forgot the nonce")
	}
}

func testLegalNonceConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.AddLegalRequest(ctx, legalRequest("court", []byte("same"), ""))
		})
	}
	wg.Wait()
	var ok int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrNonceSeen):
			t.Errorf("AddLegalRequest: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d requests with one nonce recorded, want 1", ok, n)
	}
}

func testTransparencyReports(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.TransparencyReport(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no reports: %v", err)
	}
	for _, r := range []store.TransparencyReport{
		{Period: "2026-Q3", Generated: t0, LogIndex: 3, Signed: []byte("q3")},
		{Period: "2026-Q4", Generated: t0, LogIndex: 5, Signed: []byte("q4")},
		{Period: "2025-Q4", Generated: t0, LogIndex: 1, Signed: []byte("old")},
		{Period: "2026-Q3", Generated: t0.Add(time.Hour), LogIndex: 7, Signed: []byte("q3 again")},
	} {
		must(t, "PutTransparencyReport", s.PutTransparencyReport(ctx, &r))
	}
	newest, err := s.TransparencyReport(ctx, "")
	if err != nil || newest.Period != "2026-Q4" || string(newest.Signed) != "q4" || newest.LogIndex != 5 {
		t.Fatalf("newest: %+v, %v", newest, err)
	}
	q3, err := s.TransparencyReport(ctx, "2026-Q3")
	if err != nil || string(q3.Signed) != "q3 again" || q3.LogIndex != 7 || !q3.Generated.Equal(t0.Add(time.Hour)) {
		t.Fatalf("2026-Q3: %+v, %v", q3, err)
	}
	if _, err := s.TransparencyReport(ctx, "2024-Q1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent period: %v", err)
	}
}
