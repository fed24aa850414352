package requestlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Entry headers: the first line of each kind of entry (docs/protocol.md,
// "The legal request log").
const (
	requestHeader     = "doorless legal request v1"
	publicationHeader = "doorless legal publication v1"
	reportHeader      = "doorless transparency report v1"
)

// commitmentLabel separates request commitments from every other SHA-256
// use (docs/protocol.md).
const commitmentLabel = "doorless legal commitment v1\x00"

// Outcomes of a processed request.
const (
	OutcomeAccepted = "accepted"
	refusedPrefix   = "refused:"
)

// Unverified stands for the jurisdiction and type of a request whose
// signature did not verify: nothing in it can be believed.
const Unverified = "-"

// dayLayout is the layout of received and published days (UTC).
const dayLayout = "2006-01-02"

// maxToken is the longest token (jurisdiction, type, refusal reason).
const maxToken = 64

// ErrMalformedEntry: bytes that are not exactly one of the log's entry
// formats, or a value that cannot be encoded as one.
var ErrMalformedEntry = errors.New("requestlog: malformed entry")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformedEntry}, args...)...)
}

// Commit returns the commitment a request entry holds for request under
// salt: SHA-256("doorless legal commitment v1\x00" || salt || request).
// The salt keeps a short or guessable request from being found by trying
// candidates against the commitment before it is published.
func Commit(salt [32]byte, request []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(commitmentLabel))
	h.Write(salt[:])
	h.Write(request)
	var c [32]byte
	h.Sum(c[:0])
	return c
}

// Refused returns the outcome of a request refused for reason (a token).
func Refused(reason string) string { return refusedPrefix + reason }

// ValidToken reports whether s is a token: 1 to 64 of [a-z0-9_.:-].
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > maxToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// validOutcome reports whether s is "accepted" or "refused:<token>".
func validOutcome(s string) bool {
	if s == OutcomeAccepted {
		return true
	}
	reason, ok := strings.CutPrefix(s, refusedPrefix)
	return ok && ValidToken(reason)
}

// RequestEntry is the log's record of one processed request, accepted or
// refused: a commitment to the request's bytes, and what anyone may know
// before the request is published.
type RequestEntry struct {
	Commitment [32]byte
	// Received is the day the request was processed; Encode writes its UTC
	// day and Parse returns midnight UTC of it.
	Received time.Time
	// Jurisdiction and Type are tokens, or Unverified when the request's
	// signature did not verify.
	Jurisdiction string
	Type         string
	// Outcome is OutcomeAccepted or Refused(reason).
	Outcome string
}

// Encode returns the entry's bytes, or ErrMalformedEntry for a field that
// does not fit the format.
func (e *RequestEntry) Encode() ([]byte, error) {
	if !ValidToken(e.Jurisdiction) || !ValidToken(e.Type) {
		return nil, malformed("jurisdiction and type must be tokens")
	}
	if !validOutcome(e.Outcome) {
		return nil, malformed("outcome %q", e.Outcome)
	}
	if e.Received.IsZero() {
		return nil, malformed("no received day")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\ncommitment %s\nreceived %s\njurisdiction %s\ntype %s\noutcome %s\n",
		requestHeader, base64.StdEncoding.EncodeToString(e.Commitment[:]),
		e.Received.UTC().Format(dayLayout), e.Jurisdiction, e.Type, e.Outcome)
	return b.Bytes(), nil
}

// ParseRequestEntry parses a request entry strictly: exactly its lines, in
// order, in canonical form.
func ParseRequestEntry(b []byte) (*RequestEntry, error) {
	lines, rest, ok := splitLines(b, 6)
	if !ok || len(rest) != 0 || lines[0] != requestHeader {
		return nil, malformed("not a request entry")
	}
	var e RequestEntry
	c, err := field(lines[1], "commitment")
	if err != nil {
		return nil, err
	}
	if e.Commitment, err = decode32(c); err != nil {
		return nil, err
	}
	d, err := field(lines[2], "received")
	if err != nil {
		return nil, err
	}
	if e.Received, err = parseDay(d); err != nil {
		return nil, err
	}
	if e.Jurisdiction, err = field(lines[3], "jurisdiction"); err != nil {
		return nil, err
	}
	if e.Type, err = field(lines[4], "type"); err != nil {
		return nil, err
	}
	if e.Outcome, err = field(lines[5], "outcome"); err != nil {
		return nil, err
	}
	if !ValidToken(e.Jurisdiction) || !ValidToken(e.Type) || !validOutcome(e.Outcome) {
		return nil, malformed("bad jurisdiction, type or outcome")
	}
	return &e, nil
}

// PublicationEntry publishes a logged request after its non-disclosure
// date: the salt opens the commitment of the request entry at index
// Request, and Note is the authority's signed request, verbatim.
type PublicationEntry struct {
	Request uint64
	Salt    [32]byte
	// Published is the day of publication (UTC day, as for Received).
	Published time.Time
	Note      []byte
}

// Encode returns the entry's bytes, or ErrMalformedEntry.
func (e *PublicationEntry) Encode() ([]byte, error) {
	if e.Published.IsZero() {
		return nil, malformed("no published day")
	}
	if len(e.Note) == 0 {
		return nil, malformed("no request note")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nrequest %d\nsalt %s\npublished %s\n\n",
		publicationHeader, e.Request, base64.StdEncoding.EncodeToString(e.Salt[:]),
		e.Published.UTC().Format(dayLayout))
	b.Write(e.Note)
	return b.Bytes(), nil
}

// ParsePublicationEntry parses a publication entry strictly. It does not
// check the request note's signature; Check does.
func ParsePublicationEntry(b []byte) (*PublicationEntry, error) {
	lines, rest, ok := splitLines(b, 5)
	if !ok || lines[0] != publicationHeader || lines[4] != "" {
		return nil, malformed("not a publication entry")
	}
	var e PublicationEntry
	r, err := field(lines[1], "request")
	if err != nil {
		return nil, err
	}
	if e.Request, err = parseDecimal(r); err != nil {
		return nil, err
	}
	s, err := field(lines[2], "salt")
	if err != nil {
		return nil, err
	}
	if e.Salt, err = decode32(s); err != nil {
		return nil, err
	}
	d, err := field(lines[3], "published")
	if err != nil {
		return nil, err
	}
	if e.Published, err = parseDay(d); err != nil {
		return nil, err
	}
	e.Note = bytes.Clone(rest)
	if len(e.Note) == 0 {
		return nil, malformed("no request note")
	}
	return &e, nil
}

// Count is one line of a transparency report: how many request entries of
// a jurisdiction, type and outcome the period holds.
type Count struct {
	Jurisdiction string
	Type         string
	Outcome      string
	N            uint64
}

func (c Count) key() string { return c.Jurisdiction + " " + c.Type + " " + c.Outcome }

// Report is a transparency report's text: the request entries with index
// below Through whose received day is in Period, counted by jurisdiction,
// type and outcome. Counts are sorted and each N is at least 1.
type Report struct {
	Period    string // "YYYY-QN"
	Generated time.Time
	Through   uint64
	Counts    []Count
}

// Encode returns the report's note text, or ErrMalformedEntry.
func (r *Report) Encode() ([]byte, error) {
	if _, _, err := PeriodBounds(r.Period); err != nil {
		return nil, err
	}
	if r.Generated.IsZero() {
		return nil, malformed("no generated time")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nperiod %s\ngenerated %s\nthrough %d\n",
		reportHeader, r.Period, r.Generated.UTC().Truncate(time.Second).Format(time.RFC3339), r.Through)
	for i, c := range r.Counts {
		if !ValidToken(c.Jurisdiction) || !ValidToken(c.Type) || !validOutcome(c.Outcome) || c.N == 0 {
			return nil, malformed("bad count line")
		}
		if i > 0 && r.Counts[i-1].key() >= c.key() {
			return nil, malformed("counts not sorted or not unique")
		}
		fmt.Fprintf(&b, "count %s %s %s %d\n", c.Jurisdiction, c.Type, c.Outcome, c.N)
	}
	return b.Bytes(), nil
}

// Sign returns the report as a note signed by signer: the report entry.
func (r *Report) Sign(signer note.Signer) ([]byte, error) {
	text, err := r.Encode()
	if err != nil {
		return nil, err
	}
	msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return nil, fmt.Errorf("requestlog: signing the report: %v", err)
	}
	return msg, nil
}

// ParseReport parses a report's text strictly.
func ParseReport(text []byte) (*Report, error) {
	lines, ok := allLines(text)
	if !ok || len(lines) < 4 || lines[0] != reportHeader {
		return nil, malformed("not a transparency report")
	}
	var r Report
	var err error
	if r.Period, err = field(lines[1], "period"); err != nil {
		return nil, err
	}
	if _, _, err := PeriodBounds(r.Period); err != nil {
		return nil, err
	}
	g, err := field(lines[2], "generated")
	if err != nil {
		return nil, err
	}
	if r.Generated, err = time.Parse(time.RFC3339, g); err != nil || r.Generated.UTC().Format(time.RFC3339) != g {
		return nil, malformed("generated time %q", g)
	}
	t, err := field(lines[3], "through")
	if err != nil {
		return nil, err
	}
	if r.Through, err = parseDecimal(t); err != nil {
		return nil, err
	}
	for _, l := range lines[4:] {
		rest, ok := strings.CutPrefix(l, "count ")
		f := strings.Split(rest, " ")
		if !ok || len(f) != 4 {
			return nil, malformed("bad count line")
		}
		n, err := parseDecimal(f[3])
		if err != nil {
			return nil, err
		}
		r.Counts = append(r.Counts, Count{Jurisdiction: f[0], Type: f[1], Outcome: f[2], N: n})
	}
	// Encode holds the rules for the count lines; the text must be exactly
	// what Encode makes of what was parsed.
	if enc, err := r.Encode(); err != nil || !bytes.Equal(enc, text) {
		return nil, malformed("report not in canonical form")
	}
	return &r, nil
}

// ReportEntry is a transparency report as the log holds it: Note is the
// whole signed note, Report its parsed text.
type ReportEntry struct {
	Report *Report
	Note   []byte
}

// ParseReportEntry parses a signed report note without checking its
// signature (OpenReport and Check do).
func ParseReportEntry(b []byte) (*ReportEntry, error) {
	text, err := NoteText(b)
	if err != nil {
		return nil, malformed("report is not a signed note")
	}
	r, err := ParseReport(text)
	if err != nil {
		return nil, err
	}
	return &ReportEntry{Report: r, Note: bytes.Clone(b)}, nil
}

// ErrBadSignature: a note that the expected key did not sign.
var ErrBadSignature = errors.New("requestlog: signature does not verify")

// OpenReport verifies a signed report note with v and parses its text.
func OpenReport(signed []byte, v note.Verifier) (*Report, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return ParseReport([]byte(n.Text))
}

// ParseEntry parses any log entry: it returns a *RequestEntry, a
// *PublicationEntry or a *ReportEntry, or ErrMalformedEntry.
func ParseEntry(b []byte) (any, error) {
	first, _, _ := bytes.Cut(b, []byte("\n"))
	switch string(first) {
	case requestHeader:
		return ParseRequestEntry(b)
	case publicationHeader:
		return ParsePublicationEntry(b)
	case reportHeader:
		return ParseReportEntry(b)
	}
	return nil, malformed("unknown entry kind")
}

// PeriodOf returns the quarter ("YYYY-QN") holding t's UTC day.
func PeriodOf(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%04d-Q%d", t.Year(), (int(t.Month())-1)/3+1)
}

// PeriodBounds returns the first day of period and the first day after it
// (UTC midnights), or ErrMalformedEntry.
func PeriodBounds(period string) (start, end time.Time, err error) {
	y, q, ok := strings.Cut(period, "-Q")
	if !ok || len(y) != 4 || len(q) != 1 || q[0] < '1' || q[0] > '4' {
		return time.Time{}, time.Time{}, malformed("period %q", period)
	}
	year, err := strconv.Atoi(y)
	if err != nil || year < 1000 {
		return time.Time{}, time.Time{}, malformed("period %q", period)
	}
	start = time.Date(year, time.Month(3*int(q[0]-'1')+1), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 3, 0), nil
}

// ErrThroughBeyondLog: a report counts further than the log reaches.
var ErrThroughBeyondLog = errors.New("requestlog: report counts beyond the end of the log")

// CountRequests counts the request entries among entries[:through] whose
// received day is in period, by jurisdiction, type and outcome, sorted as
// a report lists them. It is the one implementation of a report's counts:
// doorlessd makes reports with it and verifiers recompute them with it. An
// entry below through that does not parse is an error.
func CountRequests(entries [][]byte, period string, through uint64) ([]Count, error) {
	start, end, err := PeriodBounds(period)
	if err != nil {
		return nil, err
	}
	if through > uint64(len(entries)) {
		return nil, ErrThroughBeyondLog
	}
	counts := map[string]*Count{}
	for i, b := range entries[:through] {
		e, err := ParseEntry(b)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		r, ok := e.(*RequestEntry)
		if !ok || r.Received.Before(start) || !r.Received.Before(end) {
			continue
		}
		c := Count{Jurisdiction: r.Jurisdiction, Type: r.Type, Outcome: r.Outcome}
		if counts[c.key()] == nil {
			counts[c.key()] = &c
		}
		counts[c.key()].N++
	}
	out := make([]Count, 0, len(counts))
	for _, c := range counts {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Count) int { return strings.Compare(a.key(), b.key()) })
	return out, nil
}

// splitLines cuts the first n lines off b; each must end in "\n".
func splitLines(b []byte, n int) (lines []string, rest []byte, ok bool) {
	lines = make([]string, 0, n)
	rest = b
	for range n {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		if !found {
			return nil, nil, false
		}
		lines = append(lines, string(line))
		rest = after
	}
	return lines, rest, true
}

// allLines splits b, which must end in "\n", into its lines.
func allLines(b []byte) ([]string, bool) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, false
	}
	return strings.Split(string(b[:len(b)-1]), "\n"), true
}

// field returns the value of the line "name value".
func field(line, name string) (string, error) {
	v, ok := strings.CutPrefix(line, name+" ")
	if !ok || v == "" {
		return "", malformed("expected %q line", name)
	}
	return v, nil
}

func decode32(s string) ([32]byte, error) {
	var out [32]byte
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 32 || base64.StdEncoding.EncodeToString(b) != s {
		return out, malformed("expected base64 of 32 bytes")
	}
	copy(out[:], b)
	return out, nil
}

func parseDay(s string) (time.Time, error) {
	t, err := time.Parse(dayLayout, s)
	if err != nil || t.Format(dayLayout) != s {
		return time.Time{}, malformed("day %q", s)
	}
	return t, nil
}

// parseDecimal parses a canonical decimal (no sign, no leading zeros).
func parseDecimal(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, malformed("number %q", s)
	}
	return n, nil
}
