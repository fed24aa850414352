package requestlog

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/legal"
)

// logBuilder builds a log's entries in memory.
type logBuilder struct {
	t       *testing.T
	key     testKey
	court   testKey
	entries [][]byte
	notes   map[uint64][]byte
	salts   map[uint64][32]byte
}

func newBuilder(t *testing.T) *logBuilder {
	return &logBuilder{t: t, key: newKey(t, testOrigin), court: newKey(t, "court.example"),
		notes: map[uint64][]byte{}, salts: map[uint64][32]byte{}}
}

func (b *logBuilder) add(e []byte) uint64 {
	b.entries = append(b.entries, e)
	return uint64(len(b.entries) - 1)
}

// request logs a request of the court, signed, and returns its index.
func (b *logBuilder) request(jurisdiction, typ, outcome string, received, nondisclosure time.Time) uint64 {
	n, err := legal.SignRequest(&legal.Request{
		Authority: "court.example", Jurisdiction: jurisdiction, Type: typ, Basis: "s. 100a StPO", Case: "42 Js 1/26",
		Targets: []string{"alice"}, Categories: []string{legal.CategoryAccountCreated},
		Issued: received.Add(-time.Hour), ValidUntil: received.AddDate(0, 1, 0), NondisclosureUntil: nondisclosure,
		Nonce: bytes.Repeat([]byte{byte(len(b.entries))}, 16),
	}, b.court.signer)
	if err != nil {
		b.t.Fatal(err)
	}
	salt := [32]byte{byte(len(b.entries)), 7}
	i := b.add(requestEntry(b.t, Commit(salt, n), received, jurisdiction, typ, outcome))
	b.notes[i], b.salts[i] = n, salt
	return i
}

func (b *logBuilder) publish(request uint64, published time.Time) uint64 {
	e, err := (&PublicationEntry{Request: request, Salt: b.salts[request], Published: published, Note: b.notes[request]}).Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	return b.add(e)
}

func (b *logBuilder) report(period string, through uint64, counts []Count, signer note.Signer) uint64 {
	e, err := (&Report{Period: period, Generated: day1, Through: through, Counts: counts}).Sign(signer)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.add(e)
}

var (
	oct1 = time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)
	nov1 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	nov5 = time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC) // after goodLog's last day (its report's, day1)
	dec1 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
)

// goodLog is a log that checks: two requests (one published), a forged
// one, and a report.
func goodLog(t *testing.T) *logBuilder {
	b := newBuilder(t)
	r := b.request("de", "court_order", OutcomeAccepted, oct1, nov1)
	b.request("de", "subpoena", Refused("expired"), oct1, nov1)
	b.add(requestEntry(t, Commit([32]byte{}, []byte("forged")), oct1, Unverified, Unverified, Refused("bad_signature")))
	b.publish(r, nov1)
	b.report("2026-Q4", 4, []Count{
		{Unverified, Unverified, Refused("bad_signature"), 1},
		{"de", "court_order", OutcomeAccepted, 1},
		{"de", "subpoena", Refused("expired"), 1},
	}, b.key.signer)
	return b
}

func TestCheck(t *testing.T) {
	b := goodLog(t)
	s, err := Check(b.entries, b.key.verifier, LegalRequest)
	if err != nil {
		t.Fatal(err)
	}
	if s.Entries != 5 || s.Requests != 3 || s.Publications != 1 || len(s.Reports) != 1 || s.Reports[0] != "2026-Q4" ||
		s.Outcomes[OutcomeAccepted] != 1 || s.Outcomes[Refused("expired")] != 1 || s.Outcomes[Refused("bad_signature")] != 1 {
		t.Fatalf("Summary = %+v", s)
	}
}

func TestCheckFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(b *logBuilder)
		want error
	}{
		{"garbage entry", func(b *logBuilder) { b.add([]byte("garbage\n")) }, ErrBadEntry},
		{"publication of a later entry", func(b *logBuilder) {
			b.notes[9], b.salts[9] = b.notes[0], b.salts[0]
			b.publish(9, dec1)
		}, ErrBadPublication},
		{"publication of a publication", func(b *logBuilder) {
			b.notes[3], b.salts[3] = b.notes[0], b.salts[0]
			b.publish(3, dec1)
		}, ErrBadPublication},
		{"published twice", func(b *logBuilder) { b.publish(0, dec1) }, ErrBadPublication},
		{"wrong salt", func(b *logBuilder) {
			b.salts[1] = [32]byte{1}
			b.publish(1, dec1)
		}, ErrBadPublication},
		{"another request's note", func(b *logBuilder) {
			b.notes[1] = b.notes[0]
			b.publish(1, dec1)
		}, ErrBadPublication},
		{"published before its non-disclosure date", func(b *logBuilder) {
			r := b.request("de", "court_order", OutcomeAccepted, nov5, dec1)
			b.publish(r, nov5)
		}, ErrBadPublication},
		{"a forged request published", func(b *logBuilder) {
			n := b.notes[0]
			r := b.add(requestEntry(b.t, Commit([32]byte{5}, n), nov5, Unverified, Unverified, Refused("bad_signature")))
			b.notes[r], b.salts[r] = n, [32]byte{5}
			b.publish(r, dec1)
		}, ErrBadPublication},
		{"the published note is not a request", func(b *logBuilder) {
			n, _ := note.Sign(&note.Note{Text: "hello\n"}, b.court.signer)
			r := b.add(requestEntry(b.t, Commit([32]byte{6}, n), nov5, "de", "court_order", OutcomeAccepted))
			b.notes[r], b.salts[r] = n, [32]byte{6}
			b.publish(r, dec1)
		}, ErrBadPublication},
		{"jurisdiction differs from the note's", func(b *logBuilder) {
			n := b.notes[1]
			r := b.add(requestEntry(b.t, Commit(b.salts[1], n), nov5, "at", "subpoena", OutcomeAccepted))
			b.notes[r], b.salts[r] = n, b.salts[1]
			b.publish(r, dec1)
		}, ErrBadPublication},
		{"the published request is not signed by its authority", func(b *logBuilder) {
			// The text of a court's request, signed by another key.
			text, err := NoteText(b.notes[0])
			if err != nil {
				b.t.Fatal(err)
			}
			n, err := note.Sign(&note.Note{Text: string(text)}, newKey(b.t, "other.example").signer)
			if err != nil {
				b.t.Fatal(err)
			}
			r := b.add(requestEntry(b.t, Commit(b.salts[1], n), nov5, "de", "court_order", OutcomeAccepted))
			b.notes[r], b.salts[r] = n, b.salts[1]
			b.publish(r, dec1)
		}, ErrBadPublication},
		// A request backdated into the reported quarter, after the report.
		{"request backdated after a report", func(b *logBuilder) {
			b.request("de", "court_order", OutcomeAccepted, oct1, dec1)
		}, ErrBackdated},
		{"request backdated after a request", func(b *logBuilder) {
			b.request("de", "court_order", OutcomeAccepted, dec1, dec1)
			b.request("de", "court_order", OutcomeAccepted, nov5, dec1)
		}, ErrBackdated},
		{"report signed by another key", func(b *logBuilder) {
			b.report("2026-Q4", 4, []Count{
				{Unverified, Unverified, Refused("bad_signature"), 1},
				{"de", "court_order", OutcomeAccepted, 1},
				{"de", "subpoena", Refused("expired"), 1},
			}, newKey(b.t, testOrigin).signer)
		}, ErrBadReport},
		{"report counts one too few", func(b *logBuilder) {
			b.report("2026-Q4", 4, []Count{
				{"de", "court_order", OutcomeAccepted, 1},
				{"de", "subpoena", Refused("expired"), 1},
			}, b.key.signer)
		}, ErrBadReport},
		{"report counts one too many", func(b *logBuilder) {
			b.report("2026-Q4", 2, []Count{{"de", "court_order", OutcomeAccepted, 2}}, b.key.signer)
		}, ErrBadReport},
		{"report counts beyond itself", func(b *logBuilder) {
			b.report("2026-Q4", 7, nil, b.key.signer)
		}, ErrBadReport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := goodLog(t)
			tc.make(b)
			_, err := Check(b.entries, b.key.verifier, LegalRequest)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidLog) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

// A request entry may lag the latest day before it by one day (a request
// logged after a crash, some minutes late, across midnight), not more.
func TestCheckReceivedLag(t *testing.T) {
	for _, tc := range []struct {
		name string
		days []time.Time // received days of request entries, in log order
		ok   bool
	}{
		{"in order", []time.Time{oct1, nov1, nov5}, true},
		{"the same day", []time.Time{nov5, nov5}, true},
		{"one day late", []time.Time{nov5, nov5.AddDate(0, 0, 1), nov5}, true},
		{"two days late", []time.Time{nov5, nov5.AddDate(0, 0, 2), nov5}, false},
		{"late against the latest, not the last", []time.Time{nov5.AddDate(0, 0, 2), nov5.AddDate(0, 0, 1), nov5}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t)
			for _, d := range tc.days {
				b.request("de", "court_order", OutcomeAccepted, d.Add(23*time.Hour), dec1)
			}
			_, err := Check(b.entries, b.key.verifier, LegalRequest)
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrBackdated) {
				t.Fatalf("Check = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	// A publication's day counts as well.
	b := newBuilder(t)
	r := b.request("de", "court_order", OutcomeAccepted, oct1, oct1)
	b.publish(r, dec1)
	b.request("de", "court_order", OutcomeAccepted, nov5, dec1)
	if _, err := Check(b.entries, b.key.verifier, LegalRequest); !errors.Is(err, ErrBackdated) {
		t.Fatalf("Check of a request dated before a publication = %v, want ErrBackdated", err)
	}
}

func TestCheckServedReport(t *testing.T) {
	b := goodLog(t)
	const at = 4 // goodLog's report
	if _, err := Check(b.entries, b.key.verifier, LegalRequest); err != nil {
		t.Fatal(err)
	}
	for _, period := range []string{"2026-Q4", ""} {
		if r, err := CheckServedReport(b.entries, at, b.entries[at], period); err != nil || r.Period != "2026-Q4" || r.Through != 4 {
			t.Fatalf("CheckServedReport(%q) = %+v, %v", period, r, err)
		}
	}
	// Another report of the period, signed by the log key but not logged.
	other, err := (&Report{Period: "2026-Q4", Generated: day1, Through: 4}).Sign(b.key.signer)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		index  uint64
		served []byte
		period string
	}{
		"not the logged report": {at, other, ""},
		"another entry":         {0, b.entries[0], ""},
		"beyond the log":        {5, b.entries[at], ""},
		"another period":        {at, b.entries[at], "2026-Q3"},
	} {
		if _, err := CheckServedReport(b.entries, tc.index, tc.served, tc.period); !errors.Is(err, ErrBadReport) || !errors.Is(err, ErrInvalidLog) {
			t.Errorf("%s: CheckServedReport = %v, want ErrBadReport", name, err)
		}
	}
}
