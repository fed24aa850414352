package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/store"
)

// Abuse reports.

// newReport returns a report by reporter of a message from sender, reported
// at the given time, with everything a report can hold.
func newReport(reporter, sender string, n int, reported time.Time) *store.Report {
	return &store.Report{
		ID:             newUUID(),
		Reporter:       reporter,
		Sender:         sender,
		Sealed:         n%2 == 1,
		CommitmentHash: key("commitment", uint32(n), 32),
		Sent:           reported.Add(-time.Hour),
		Queued:         reported.Add(-time.Hour + time.Second),
		Reported:       reported,
		Body:           fmt.Sprintf("abusive message %d ✉", n),
		Reason:         fmt.Sprintf("reason %d", n),
	}
}

func sameReport(a, b *store.Report) bool {
	return a.ID == b.ID && a.Reporter == b.Reporter && a.Sender == b.Sender && a.Sealed == b.Sealed &&
		reflect.DeepEqual(a.CommitmentHash, b.CommitmentHash) && a.ToMany == b.ToMany &&
		a.Sent.Equal(b.Sent) && a.Queued.Equal(b.Queued) && a.Reported.Equal(b.Reported) && a.Body == b.Body &&
		reflect.DeepEqual(a.Attachment, b.Attachment) && a.Reason == b.Reason
}

func reportIDs(rs []store.Report) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

func testReports(t *testing.T, s store.Store) {
	ctx := t.Context()
	if rs, err := s.Reports(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("Reports of an empty store = %v, %v", rs, err)
	}
	if _, err := s.Report(ctx, newUUID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Report(unknown) = %v, want ErrNotFound", err)
	}
	alice, bob, carol := newUUID(), newUUID(), newUUID()

	// A direct, named report with an attachment; a sealed group report
	// without one and with no reason.
	r1 := newReport(alice, bob, 0, t0)
	r1.Attachment = &store.ReportAttachment{ContentType: "image/png", FileName: "x.png", Size: 1234}
	r2 := newReport(alice, carol, 1, t0.Add(time.Minute))
	r2.ToMany = true
	r2.Reason = ""
	must(t, "AddReport(r1)", s.AddReport(ctx, r1))
	must(t, "AddReport(r2)", s.AddReport(ctx, r2))
	for _, want := range []*store.Report{r1, r2} {
		got, err := s.Report(ctx, want.ID)
		must(t, "Report", err)
		if !sameReport(got, want) {
			t.Errorf("Report(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	rs, err := s.Reports(ctx)
	must(t, "Reports", err)
	if len(rs) != 2 || !sameReport(&rs[0], r2) || !sameReport(&rs[1], r1) {
		t.Errorf("Reports = %v, want the newest first: %v", reportIDs(rs), []string{r2.ID, r1.ID})
	}

	// The same reporter and commitment: a duplicate, even under another
	// id; nothing stored.
	dup := newReport(alice, bob, 0, t0.Add(time.Hour))
	wantErr(t, "AddReport(duplicate)", s.AddReport(ctx, dup), store.ErrDuplicateReport)
	if _, err := s.Report(ctx, dup.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the duplicate was stored: %v", err)
	}
	// Another reporter of the same message is not a duplicate.
	other := newReport(carol, bob, 0, t0.Add(2*time.Minute))
	must(t, "AddReport(another reporter)", s.AddReport(ctx, other))
	if rs, err := s.Reports(ctx); err != nil || len(rs) != 3 {
		t.Errorf("Reports = %v, %v; want 3", reportIDs(rs), err)
	}
}

func testReportsOutliveAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _ := register(t, s, "alice", keys(1, 1))
	b, _ := register(t, s, "bob", keys(1, 1))
	r := newReport(a.ID, b.ID, 0, t0)
	must(t, "AddReport", s.AddReport(ctx, r))
	must(t, "DeleteAccount(bob)", s.DeleteAccount(ctx, b.ID))
	must(t, "DeleteAccount(alice)", s.DeleteAccount(ctx, a.ID))
	got, err := s.Report(ctx, r.ID)
	if err != nil || !sameReport(got, r) {
		t.Fatalf("after both accounts were deleted Report = %+v, %v; want %+v", got, err, r)
	}
}

func testExpireReports(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice, bob := newUUID(), newUUID()
	old := newReport(alice, bob, 0, t0)
	edge := newReport(alice, bob, 1, t0.Add(time.Hour))
	fresh := newReport(alice, bob, 2, t0.Add(2*time.Hour))
	for _, r := range []*store.Report{old, edge, fresh} {
		must(t, "AddReport", s.AddReport(ctx, r))
	}
	n, err := s.ExpireReports(ctx, t0.Add(time.Hour))
	must(t, "ExpireReports", err)
	if n != 1 {
		t.Errorf("ExpireReports deleted %d, want 1 (made before the cutoff, not at it)", n)
	}
	rs, err := s.Reports(ctx)
	must(t, "Reports", err)
	if len(rs) != 2 || rs[0].ID != fresh.ID || rs[1].ID != edge.ID {
		t.Errorf("after expiry Reports = %v, want %v", reportIDs(rs), []string{fresh.ID, edge.ID})
	}
	// An expired report's message may be reported again.
	again := newReport(alice, bob, 0, t0.Add(3*time.Hour))
	must(t, "AddReport(after expiry)", s.AddReport(ctx, again))
	if n, err := s.ExpireReports(ctx, t0); err != nil || n != 0 {
		t.Errorf("ExpireReports(nothing older) = %d, %v", n, err)
	}
}

// testReportCount: reports of one message (one commitment hash) are
// counted with their distinct reporters, apart from other messages', and
// expiry takes them from the count.
func testReportCount(t *testing.T, s store.Store) {
	ctx := t.Context()
	count := func(n int, wantReports, wantReporters int) {
		t.Helper()
		reports, reporters, err := s.ReportCount(ctx, key("commitment", uint32(n), 32))
		must(t, "ReportCount", err)
		if reports != wantReports || reporters != wantReporters {
			t.Errorf("ReportCount(message %d) = %d reports by %d reporters, want %d by %d",
				n, reports, reporters, wantReports, wantReporters)
		}
	}
	count(0, 0, 0)
	alice, bob, carol, dave := newUUID(), newUUID(), newUUID(), newUUID()
	// Message 0 reported by bob, carol and dave; message 1 by bob alone.
	for i, reporter := range []string{bob, carol, dave} {
		must(t, "AddReport", s.AddReport(ctx, newReport(reporter, alice, 0, t0.Add(time.Duration(i)*time.Hour))))
	}
	must(t, "AddReport", s.AddReport(ctx, newReport(bob, alice, 1, t0)))
	count(0, 3, 3)
	count(1, 1, 1)
	count(2, 0, 0)
	// A duplicate refused is not counted.
	wantErr(t, "AddReport(duplicate)", s.AddReport(ctx, newReport(carol, alice, 0, t0)), store.ErrDuplicateReport)
	count(0, 3, 3)
	// The first two of message 0 expire.
	must(t, "ExpireReports", func() error { _, err := s.ExpireReports(ctx, t0.Add(90*time.Minute)); return err }())
	count(0, 1, 1)
	count(1, 0, 0)
}
