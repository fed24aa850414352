package requestlog

import (
	"bytes"
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
	// are not the log's (or, from CheckServedReport, a report served is
	// not the log's entry).
	ErrBadReport error = &failure{"requestlog: transparency report does not match the log"}
	// ErrBackdated: a request entry's received day is more than
	// MaxReceivedLag before the latest day of the entries logged before
	// it (their received, published or generated days). A server that
	// could log requests with any past day could slip them into a quarter
	// already reported, where no report counts them.
	ErrBackdated error = &failure{"requestlog: request entry dated before the entries logged before it"}
)

// MaxReceivedLag is how far a request entry's received day may lie before
// the latest day of the entries logged before it: the received day of a
// request entry, the published day of a publication, the day a report was
// generated. A server logs a request when it processes it, with that day,
// and publications and reports with the day it makes them, except when a
// crash came between recording a request and logging it: it then logs it
// some minutes later (frontdoor.UnloggedGrace), possibly after entries of
// the next day. One day covers that; anything more is a backdated entry.
const MaxReceivedLag = 24 * time.Hour

// RequestFields is what Check needs to know of a published request's
// text (the signed note's text).
type RequestFields struct {
	Authority          string
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
// every entry parses; every request entry's received day is at most
// MaxReceivedLag before the latest day of the entries before it;
// every publication points to an earlier request entry whose signature
// verified, opens its commitment (Commit(salt, note) is the commitment),
// publishes it once, not before its non-disclosure date, and holds a
// request note whose jurisdiction and type are the request entry's and
// that carries a signature line of the key named by its authority line;
// every report is a note signed by logKey whose counts are CountRequests
// over the log. Failures match ErrInvalidLog.
//
// Check cannot verify an authority's signature on a published request
// (only that the note claims one by the authority it names): which
// authorities a server trusts, and their keys, is its operator's
// configuration.
func Check(entries [][]byte, logKey note.Verifier, parse RequestParser) (*Summary, error) {
	s := &Summary{Entries: len(entries), Outcomes: map[string]int{}}
	requests := map[uint64]*RequestEntry{}
	published := map[uint64]bool{}
	var latest time.Time // the latest day of the entries so far
	for i, b := range entries {
		idx := uint64(i)
		e, err := ParseEntry(b)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrBadEntry, i, err)
		}
		switch e := e.(type) {
		case *RequestEntry:
			if e.Received.Add(MaxReceivedLag).Before(latest) {
				return nil, fmt.Errorf("%w: entry %d: received %s, after an entry of %s", ErrBackdated, i,
					e.Received.Format(dayLayout), latest.Format(dayLayout))
			}
			latest = later(latest, e.Received)
			requests[idx] = e
			s.Requests++
			s.Outcomes[e.Outcome]++
		case *PublicationEntry:
			if err := checkPublication(idx, e, requests, published, parse); err != nil {
				return nil, err
			}
			s.Publications++
			latest = later(latest, e.Published)
		case *ReportEntry:
			if err := checkReport(idx, e, entries, logKey); err != nil {
				return nil, err
			}
			s.Reports = append(s.Reports, e.Report.Period)
			latest = later(latest, day(e.Report.Generated))
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
	n, err := openUnverified(p.Note)
	if err != nil {
		return bad("%v", err)
	}
	f, err := parse([]byte(n.Text))
	if err != nil {
		return bad("the published request does not parse: %v", err)
	}
	if f.Jurisdiction != r.Jurisdiction || f.Type != r.Type {
		return bad("the published request's jurisdiction or type is not the logged one")
	}
	// The server accepted it only when the key named as authority signed
	// it (legal.Verify); a note without that key's signature line was
	// never verified.
	if !slices.ContainsFunc(n.UnverifiedSigs, func(s note.Signature) bool { return s.Name == f.Authority }) {
		return bad("the published request carries no signature of its authority %q", f.Authority)
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

// CheckServedReport checks that served, a report a server handed out
// (GET /v1/transparency/report) with the log index it named, is the
// report entry at that index of a log Check verified, and is for period
// ("" for any). A report that is not in the log, or not where the server
// says, is ErrBadReport: the report a server shows is the one its log
// commits to, whose counts Check recomputed.
func CheckServedReport(entries [][]byte, index uint64, served []byte, period string) (*Report, error) {
	if index >= uint64(len(entries)) {
		return nil, fmt.Errorf("%w: the report served is said to be entry %d, beyond the log's %d entries", ErrBadReport, index, len(entries))
	}
	if !bytes.Equal(entries[index], served) {
		return nil, fmt.Errorf("%w: the report served is not entry %d of the log", ErrBadReport, index)
	}
	e, err := ParseEntry(served)
	if err != nil {
		return nil, fmt.Errorf("%w: the report served: %v", ErrBadReport, err)
	}
	r, ok := e.(*ReportEntry)
	if !ok {
		return nil, fmt.Errorf("%w: entry %d is not a report", ErrBadReport, index)
	}
	if period != "" && r.Report.Period != period {
		return nil, fmt.Errorf("%w: the report served is for %s, not %s", ErrBadReport, r.Report.Period, period)
	}
	return r.Report, nil
}

// ErrBadNote: bytes that are not a signed note.
var ErrBadNote = errors.New("requestlog: not a signed note")

// NoteText returns the text of a signed note without checking its
// signatures.
func NoteText(signed []byte) ([]byte, error) {
	n, err := openUnverified(signed)
	if err != nil {
		return nil, err
	}
	return []byte(n.Text), nil
}

// openUnverified parses a signed note without verifying its signatures,
// which it returns in UnverifiedSigs.
func openUnverified(signed []byte) (*note.Note, error) {
	_, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, ErrBadNote
	}
	return unverified.Note, nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// day returns midnight UTC of t's UTC day.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
