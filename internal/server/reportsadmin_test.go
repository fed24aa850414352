package server

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
)

func TestReviewReports(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	var out bytes.Buffer
	if err := ListReports(ctx, e.st, &out); err != nil || out.String() != "no reports\n" {
		t.Fatalf("ListReports of none = %q, %v", out.String(), err)
	}

	at := time.Date(2026, 11, 23, 18, 30, 0, 0, time.UTC)
	gone := api.NewUUID()
	named := &store.Report{ID: api.NewUUID(), Reporter: bob.id, Sender: alice.id, CommitmentHash: bytes.Repeat([]byte{1}, 32),
		Sent: at.Add(-time.Hour), Reported: at, Body: "line one\nline two\x1b[2J\u202eevil",
		Reason:     strings.Repeat("long reason ", 10) + "\x07",
		Attachment: &store.ReportAttachment{ContentType: "image/png", FileName: "a\x1b.png", Size: 42}}
	sealed := &store.Report{ID: api.NewUUID(), Reporter: bob.id, Sender: gone, Sealed: true, CommitmentHash: bytes.Repeat([]byte{2}, 32),
		ToMany: true, Sent: at, Queued: at.Add(30 * 24 * time.Hour), Reported: at.Add(time.Minute), Body: "from a deleted account", Reason: "spam\nreally"}
	// The same sealed group message, reported by a third account.
	again := &store.Report{ID: api.NewUUID(), Reporter: api.NewUUID(), Sender: gone, Sealed: true, CommitmentHash: sealed.CommitmentHash,
		ToMany: true, Sent: at, Queued: at, Reported: at.Add(-time.Minute), Body: sealed.Body}
	named.Queued = named.Sent.Add(time.Second)
	for _, r := range []*store.Report{named, sealed, again} {
		if err := e.st.AddReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	out.Reset()
	if err := ListReports(ctx, e.st, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "DELIVERED") || !strings.Contains(lines[0], "REPORTS") {
		t.Fatalf("ListReports:\n%s", out.String())
	}
	// Newest first: the sealed report from the deleted account.
	for _, want := range []string{sealed.ID, "2026-11-23 18:31", gone + " (account deleted)", " yes ", " unproven ", " 2 ", `spam\nreally`} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %q", lines[1], want)
		}
	}
	for _, want := range []string{named.ID, "2026-11-23 18:30", "alice (" + alice.id + ")", " no ", " proven ", " 1 ", strings.Repeat("long reason ", 5) + "…"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("line %q lacks %q", lines[2], want)
		}
	}
	if strings.Contains(lines[2], `\a`) || strings.ContainsAny(out.String(), "\x07\x1b\u202e") {
		t.Errorf("the listing shows more than the excerpt, or raw control characters:\n%q", out.String())
	}

	out.Reset()
	if err := ShowReport(ctx, e.st, named.ID, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"report:", named.ID, "reported:", "2026-11-23T18:30:00Z", "sent:", "2026-11-23T17:30:00Z", "queued:", "2026-11-23T17:30:01Z",
		"delivery:", "proven: the server saw", "reports of it:", "1, by 1 account (this one included)",
		"reporter:", "bob (" + bob.id + ")", "sender:", "alice (" + alice.id + ")", "sealed sender: no",
		"group:", "no (a direct message)", `type "image/png"`, `file name "a\x1b.png"`, "42 bytes", `long reason \a`,
		"text:\nline one\nline two\\x1b[2J\\u202eevil\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("ShowReport lacks %q:\n%s", want, s)
		}
	}
	if strings.ContainsAny(s, "\x07\x1b\u202e") {
		t.Errorf("ShowReport writes raw control characters: %q", s)
	}
	out.Reset()
	if err := ShowReport(ctx, e.st, sealed.ID, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sealed sender: yes", "group:", "group:         yes (which group is not known to the server)", "attachment:", "none", gone + " (account deleted)", `spam\nreally`,
		"delivery:      delivery to the reporter by this sender unproven", "sent:          2026-11-23T18:30:00Z", "queued:        2026-12-23T18:30:00Z",
		"reports of it: 2, by 2 accounts"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ShowReport lacks %q:\n%s", want, out.String())
		}
	}
	if err := ShowReport(ctx, e.st, api.NewUUID(), &out); !errors.Is(err, ErrNoReport) {
		t.Fatalf("ShowReport(unknown) = %v, want ErrNoReport", err)
	}
}
