package requestlog

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "doorless.test/legal"

type testKey struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	skey     string
}

func newKey(t testing.TB, name string) testKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return keyFrom(t, skey, vkey)
}

func keyFrom(t testing.TB, skey, vkey string) testKey {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{signer: s, verifier: v, vkey: vkey, skey: skey}
}

var day1 = time.Date(2026, 11, 3, 15, 4, 5, 0, time.UTC)

func requestEntry(t testing.TB, commitment [32]byte, received time.Time, jurisdiction, typ, outcome string) []byte {
	t.Helper()
	b, err := (&RequestEntry{Commitment: commitment, Received: received, Jurisdiction: jurisdiction, Type: typ, Outcome: outcome}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRequestEntryRoundTrip(t *testing.T) {
	c := Commit([32]byte{1}, []byte("request"))
	b := requestEntry(t, c, day1, "de", "court_order", Refused("expired"))
	want := "doorless legal request v1\ncommitment " + b64(c[:]) + "\nreceived 2026-11-03\njurisdiction de\ntype court_order\noutcome refused:expired\n"
	if string(b) != want {
		t.Fatalf("Encode = %q, want %q", b, want)
	}
	e, err := ParseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := e.(*RequestEntry)
	if !ok || r.Commitment != c || !r.Received.Equal(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)) ||
		r.Jurisdiction != "de" || r.Type != "court_order" || r.Outcome != "refused:expired" {
		t.Fatalf("ParseEntry = %#v", e)
	}
	again, err := r.Encode()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-Encode = %q, %v", again, err)
	}
}

func TestRequestEntryStrict(t *testing.T) {
	c := Commit([32]byte{1}, []byte("request"))
	good := string(requestEntry(t, c, day1, Unverified, Unverified, Refused("bad_signature")))
	bad := map[string]string{
		"trailing line":      good + "extra\n",
		"no final newline":   strings.TrimSuffix(good, "\n"),
		"double space":       strings.Replace(good, "type -", "type  -", 1),
		"upper case token":   strings.Replace(good, "jurisdiction -", "jurisdiction DE", 1),
		"bad outcome":        strings.Replace(good, "refused:bad_signature", "rejected", 1),
		"empty reason":       strings.Replace(good, "refused:bad_signature", "refused:", 1),
		"short commitment":   strings.Replace(good, b64(c[:]), b64(c[:31]), 1),
		"unpadded base64":    strings.Replace(good, b64(c[:]), strings.TrimRight(b64(c[:]), "="), 1),
		"bad day":            strings.Replace(good, "2026-11-03", "2026-11-3", 1),
		"impossible day":     strings.Replace(good, "2026-11-03", "2026-02-30", 1),
		"swapped lines":      strings.Replace(good, "jurisdiction -\ntype -", "type -\njurisdiction -", 1),
		"crlf":               strings.ReplaceAll(good, "\n", "\r\n"),
		"long token":         strings.Replace(good, "jurisdiction -", "jurisdiction "+strings.Repeat("a", 65), 1),
		"header version two": strings.Replace(good, "v1", "v2", 1),
	}
	for name, b := range bad {
		if _, err := ParseEntry([]byte(b)); !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("%s: ParseEntry = %v, want ErrMalformedEntry", name, err)
		}
	}
	for _, e := range []RequestEntry{
		{Commitment: c, Received: day1, Jurisdiction: "DE", Type: "x", Outcome: OutcomeAccepted},
		{Commitment: c, Received: day1, Jurisdiction: "de", Type: "x", Outcome: "maybe"},
		{Commitment: c, Jurisdiction: "de", Type: "x", Outcome: OutcomeAccepted},
	} {
		if _, err := e.Encode(); !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("Encode(%+v) = %v, want ErrMalformedEntry", e, err)
		}
	}
}

func TestPublicationEntryRoundTrip(t *testing.T) {
	authority := newKey(t, "court.example")
	req, err := note.Sign(&note.Note{Text: "doorless legal request v1\nanything\n"}, authority.signer)
	if err != nil {
		t.Fatal(err)
	}
	p := &PublicationEntry{Request: 12, Salt: [32]byte{9}, Published: day1, Note: req}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("doorless legal publication v1\nrequest 12\nsalt "+b64(p.Salt[:])+"\npublished 2026-11-03\n\n")) ||
		!bytes.HasSuffix(b, req) {
		t.Fatalf("Encode = %q", b)
	}
	e, err := ParseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	got := e.(*PublicationEntry)
	if got.Request != 12 || got.Salt != p.Salt || !bytes.Equal(got.Note, req) {
		t.Fatalf("ParseEntry = %+v", got)
	}
	good := string(b)
	for name, bad := range map[string]string{
		"leading zero":   strings.Replace(good, "request 12", "request 012", 1),
		"negative":       strings.Replace(good, "request 12", "request -1", 1),
		"no blank line":  strings.Replace(good, "\n\n", "\n", 1),
		"no note":        good[:strings.Index(good, "\n\n")+2],
		"missing salt":   strings.Replace(good, "salt ", "sal ", 1),
		"bad published":  strings.Replace(good, "published 2026-11-03", "published 2026/11/03", 1),
		"just the heade": "doorless legal publication v1\n",
	} {
		if _, err := ParseEntry([]byte(bad)); !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("%s: ParseEntry = %v, want ErrMalformedEntry", name, err)
		}
	}
}

func TestReportRoundTrip(t *testing.T) {
	k := newKey(t, testOrigin)
	r := &Report{Period: "2026-Q4", Generated: day1.Add(500 * time.Millisecond), Through: 7, Counts: []Count{
		{"-", "-", "refused:bad_signature", 1},
		{"de", "court_order", "accepted", 2},
		{"de", "court_order", "refused:expired", 1},
	}}
	signed, err := r.Sign(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := NoteText(signed)
	want := "doorless transparency report v1\nperiod 2026-Q4\ngenerated 2026-11-03T15:04:05Z\nthrough 7\n" +
		"count - - refused:bad_signature 1\ncount de court_order accepted 2\ncount de court_order refused:expired 1\n"
	if string(text) != want {
		t.Fatalf("report text = %q, want %q", text, want)
	}
	e, err := ParseEntry(signed)
	if err != nil {
		t.Fatal(err)
	}
	re := e.(*ReportEntry)
	if re.Report.Through != 7 || len(re.Report.Counts) != 3 || !bytes.Equal(re.Note, signed) {
		t.Fatalf("ParseEntry = %+v", re.Report)
	}
	if _, err := OpenReport(signed, k.verifier); err != nil {
		t.Fatalf("OpenReport: %v", err)
	}
	if _, err := OpenReport(signed, newKey(t, testOrigin).verifier); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("OpenReport with another key = %v, want ErrBadSignature", err)
	}
	for name, bad := range map[string]string{
		"unsorted":      strings.Replace(want, "count - - refused:bad_signature 1\ncount de court_order accepted 2\n", "count de court_order accepted 2\ncount - - refused:bad_signature 1\n", 1),
		"zero count":    strings.Replace(want, "accepted 2", "accepted 0", 1),
		"duplicate":     want + "count de court_order refused:expired 1\n",
		"bad period":    strings.Replace(want, "2026-Q4", "2026-Q5", 1),
		"fraction":      strings.Replace(want, "05Z", "05.5Z", 1),
		"offset":        strings.Replace(want, "15:04:05Z", "16:04:05+01:00", 1),
		"five fields":   strings.Replace(want, "accepted 2", "accepted 2 2", 1),
		"no through":    strings.Replace(want, "through 7\n", "", 1),
		"trailing junk": want + "\n",
	} {
		if _, err := ParseReport([]byte(bad)); !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("%s: ParseReport = %v, want ErrMalformedEntry", name, err)
		}
	}
	// An unsigned report is not a report entry.
	if _, err := ParseEntry([]byte(want)); !errors.Is(err, ErrMalformedEntry) {
		t.Errorf("unsigned report: ParseEntry = %v, want ErrMalformedEntry", err)
	}
}

func TestPeriods(t *testing.T) {
	for _, tc := range []struct {
		t      time.Time
		period string
	}{
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "2026-Q1"},
		{time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC), "2026-Q1"},
		{time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), "2026-Q2"},
		{time.Date(2026, 12, 31, 23, 0, 0, 0, time.FixedZone("x", -3600)), "2027-Q1"},
	} {
		if got := PeriodOf(tc.t); got != tc.period {
			t.Errorf("PeriodOf(%v) = %s, want %s", tc.t, got, tc.period)
		}
		start, end, err := PeriodBounds(tc.period)
		if err != nil || tc.t.Before(start) || !tc.t.Before(end) {
			t.Errorf("PeriodBounds(%s) = %v, %v, %v; does not hold %v", tc.period, start, end, err, tc.t)
		}
	}
	for _, bad := range []string{"2026-Q0", "2026-Q5", "26-Q1", "2026Q1", "2026-q1", "+999-Q1", "2026-Q1 "} {
		if _, _, err := PeriodBounds(bad); !errors.Is(err, ErrMalformedEntry) {
			t.Errorf("PeriodBounds(%q) = %v, want ErrMalformedEntry", bad, err)
		}
	}
}

func TestCountRequests(t *testing.T) {
	q4 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	q3 := q4.Add(-time.Second)
	k := newKey(t, testOrigin)
	report, _ := (&Report{Period: "2026-Q3", Generated: day1, Through: 0}).Sign(k.signer)
	entries := [][]byte{
		requestEntry(t, [32]byte{1}, q4, "de", "court_order", OutcomeAccepted),
		requestEntry(t, [32]byte{2}, q3, "de", "court_order", OutcomeAccepted), // Q3
		report,
		requestEntry(t, [32]byte{3}, q4, "-", "-", Refused("bad_signature")),
		requestEntry(t, [32]byte{4}, q4.AddDate(0, 2, 30), "de", "court_order", OutcomeAccepted),
		requestEntry(t, [32]byte{5}, q4, "at", "subpoena", Refused("expired")), // beyond through
	}
	got, err := CountRequests(entries, "2026-Q4", 5)
	if err != nil {
		t.Fatal(err)
	}
	want := []Count{{"-", "-", "refused:bad_signature", 1}, {"de", "court_order", "accepted", 2}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("CountRequests = %v, want %v", got, want)
	}
	if _, err := CountRequests(entries, "2026-Q4", 7); !errors.Is(err, ErrThroughBeyondLog) {
		t.Fatalf("through beyond the log: %v", err)
	}
	entries[1] = []byte("garbage")
	if _, err := CountRequests(entries, "2026-Q4", 5); !errors.Is(err, ErrMalformedEntry) {
		t.Fatalf("garbage entry: %v", err)
	}
}

func FuzzParseEntry(f *testing.F) {
	k := newKey(f, testOrigin)
	f.Add(requestEntry(f, [32]byte{1}, day1, "de", "court_order", OutcomeAccepted))
	f.Add(requestEntry(f, [32]byte{1}, day1, "-", "-", Refused("malformed")))
	pub, _ := (&PublicationEntry{Request: 3, Salt: [32]byte{2}, Published: day1, Note: []byte("x\n\n— a b\n")}).Encode()
	f.Add(pub)
	rep, _ := (&Report{Period: "2026-Q4", Generated: day1, Through: 2, Counts: []Count{{"de", "x", "accepted", 1}}}).Sign(k.signer)
	f.Add(rep)
	f.Add([]byte("doorless legal request v1\n"))
	f.Add([]byte("doorless transparency report v1\nperiod 2026-Q4\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedEntry) {
				t.Fatalf("error %v is not ErrMalformedEntry", err)
			}
			return
		}
		// Parsing is strict: whatever parses encodes back to the same bytes.
		var again []byte
		switch e := e.(type) {
		case *RequestEntry:
			again, err = e.Encode()
		case *PublicationEntry:
			again, err = e.Encode()
		case *ReportEntry:
			var text []byte
			text, err = NoteText(b)
			if err == nil {
				again, err = e.Report.Encode()
				if !bytes.Equal(again, text) {
					t.Fatalf("report text %q re-encodes as %q", text, again)
				}
				again = e.Note
			}
		}
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%q parses but re-encodes as %q, %v", b, again, err)
		}
	})
}

func FuzzParseReport(f *testing.F) {
	r, _ := (&Report{Period: "2026-Q4", Generated: day1, Through: 2, Counts: []Count{{"de", "x", "accepted", 1}}}).Encode()
	f.Add(r)
	f.Add([]byte("doorless transparency report v1\nperiod 2026-Q4\ngenerated 2026-11-03T15:04:05Z\nthrough 0\n"))
	f.Add([]byte("doorless transparency report v1\nperiod 2026-Q4\ngenerated x\nthrough 0\ncount a b c 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReport(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedEntry) {
				t.Fatalf("error %v is not ErrMalformedEntry", err)
			}
			return
		}
		again, err := r.Encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%q parses but re-encodes as %q, %v", b, again, err)
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
