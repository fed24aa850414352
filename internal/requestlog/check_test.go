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
			r := b.request("de", "court_order", OutcomeAccepted, oct1, dec1)
			b.publish(r, nov1)
		}, ErrBadPublication},
		{"a forged request published", func(b *logBuilder) {
			n := b.notes[0]
			r := b.add(requestEntry(b.t, Commit([32]byte{5}, n), oct1, Unverified, Unverified, Refused("bad_signature")))
			b.notes[r], b.salts[r] = n, [32]byte{5}
			b.publish(r, dec1)
		}, ErrBadPublication},
		{"the published note is not a request", func(b *logBuilder) {
			n, _ := note.Sign(&note.Note{Text: "hello\n"}, b.court.signer)
			r := b.add(requestEntry(b.t, Commit([32]byte{6}, n), oct1, "de", "court_order", OutcomeAccepted))
			b.notes[r], b.salts[r] = n, [32]byte{6}
			b.publish(r, dec1)
		}, ErrBadPublication},
		{"jurisdiction differs from the note's", func(b *logBuilder) {
			n := b.notes[1]
			r := b.add(requestEntry(b.t, Commit(b.salts[1], n), oct1, "at", "subpoena", OutcomeAccepted))
			b.notes[r], b.salts[r] = n, b.salts[1]
			b.publish(r, dec1)
		}, ErrBadPublication},
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
