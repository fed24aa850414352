package requestlog

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Failures of Check; each matches ErrInvalidLog.
var (
	// ErrBadEntry: an entry is not one of the log's formats.
	ErrBadEntry error = &failure{"requestlog: malformed log entry"}
	// ErrBadPublication: a publication entry does not publish a request
	// the log committed to (wrong index, commitment not opened, published
	// twice, fields that differ from the request entry's, published before
	// its non-disclosure date).
	ErrBadPublication error = &failure{"requestlog: publication does not match its request"}
	// ErrBadReport: a report is not signed by the log's key or its counts
	// are not the log's.
	ErrBadReport error = &failure{"requestlog: transparency report does not match the log"}
)

// RequestFields is what Check needs to know of a published request's
// text (the signed note's text).
type RequestFields struct {
	Jurisdiction       string
	Type               string
	NondisclosureUntil time.Time
}

// RequestParser parses a request's text; the legal package's ParseRequest
// is the one the server uses (this package cannot import it: the legal
// package makes entries with this one).
type RequestParser func(text []byte) (RequestFields, error)

// Summary is what Check found in a log.
type Summary struct {
	Entries  int
	Requests int
	// Outcomes counts request entries by outcome ("accepted",
	// "refused:<reason>").
	Outcomes     map[string]int
	Publications int
	// Reports lists the periods of the reports, in log order.
	Reports []string
}

// Check verifies what a log's entries (as Fetch returned them) say:
// every entry parses; every publication points to an earlier request
// entry whose signature verified, opens its commitment (Commit(salt,
// note) is the commitment), publishes it once, not before its
// non-disclosure date, and holds a request note whose jurisdiction and
// type are the request entry's; every report is a note signed by logKey
// whose counts are CountRequests over the log. Failures match
// ErrInvalidLog.
//
// Check cannot verify an authority's signature on a published request:
// which authorities a server trusts is its operator's configuration.
func Check(entries [][]byte, logKey note.Verifier, parse RequestParser) (*Summary, error) {
	s := &Summary{Entries: len(entries), Outcomes: map[string]int{}}
	requests := map[uint64]*RequestEntry{}
	published := map[uint64]bool{}
	for i, b := range entries {
		idx := uint64(i)
		e, err := ParseEntry(b)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrBadEntry, i, err)
		}
		switch e := e.(type) {
		case *RequestEntry:
			requests[idx] = e
			s.Requests++
			s.Outcomes[e.Outcome]++
		case *PublicationEntry:
			if err := checkPublication(idx, e, requests, published, parse); err != nil {
				return nil, err
			}
			s.Publications++
		case *ReportEntry:
			if err := checkReport(idx, e, entries, logKey); err != nil {
				return nil, err
			}
			s.Reports = append(s.Reports, e.Report.Period)
		}
	}
	return s, nil
}

func checkPublication(idx uint64, p *PublicationEntry, requests map[uint64]*RequestEntry, published map[uint64]bool, parse RequestParser) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: entry %d: "+format, append([]any{ErrBadPublication, idx}, args...)...)
	}
	r := requests[p.Request] // only earlier entries are in requests
	if r == nil {
		return bad("entry %d is not an earlier request entry", p.Request)
	}
	if published[p.Request] {
		return bad("request %d was published before", p.Request)
	}
	published[p.Request] = true
	if r.Jurisdiction == Unverified {
		return bad("request %d's signature did not verify; it must stay a commitment", p.Request)
	}
	if Commit(p.Salt, p.Note) != r.Commitment {
		return bad("does not open the commitment of request %d", p.Request)
	}
	text, err := NoteText(p.Note)
	if err != nil {
		return bad("%v", err)
	}
	f, err := parse(text)
	if err != nil {
		return bad("the published request does not parse: %v", err)
	}
	if f.Jurisdiction != r.Jurisdiction || f.Type != r.Type {
		return bad("the published request's jurisdiction or type is not the logged one")
	}
	if p.Published.Before(day(f.NondisclosureUntil)) {
		return bad("published before the request's non-disclosure date")
	}
	if p.Published.Before(r.Received) {
		return bad("published before it was received")
	}
	return nil
}

func checkReport(idx uint64, e *ReportEntry, entries [][]byte, logKey note.Verifier) error {
	r, err := OpenReport(e.Note, logKey)
	if err != nil {
		return fmt.Errorf("%w: entry %d: %v", ErrBadReport, idx, err)
	}
	if r.Through > idx {
		return fmt.Errorf("%w: entry %d counts entries after itself", ErrBadReport, idx)
	}
	want, err := CountRequests(entries, r.Period, r.Through)
	if err != nil {
		return fmt.Errorf("%w: entry %d: %v", ErrBadReport, idx, err)
	}
	if !slices.Equal(want, r.Counts) {
		return fmt.Errorf("%w: entry %d: its counts for %s are not the log's", ErrBadReport, idx, r.Period)
	}
	return nil
}

// ErrBadNote: bytes that are not a signed note.
var ErrBadNote = errors.New("requestlog: not a signed note")

// NoteText returns the text of a signed note without checking its
// signatures.
func NoteText(signed []byte) ([]byte, error) {
	_, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, ErrBadNote
	}
	return []byte(unverified.Note.Text), nil
}

// day returns midnight UTC of t's UTC day.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
