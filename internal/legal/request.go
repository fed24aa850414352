// Package legal is the front door's paperwork (docs/legal-requests.md): the
// format of a legal request, which an authority signs as a note
// (golang.org/x/mod/sumdb/note, Ed25519, the key named after the
// authority); the operator's trust configuration, which says which
// authority keys are trusted for which jurisdictions; the verification of
// a request against it, which either accepts it or refuses it with one
// reason; and the disclosure package the server answers an accepted
// request with, a note signed by the server's legal key holding only what
// docs/data-inventory.md marks disclosable.
//
// The package does no I/O and reads no clock: the time is a parameter, and
// so is the question whether a nonce was seen before. Its values are
// immutable once made and safe for concurrent use; a Trust is read-only
// after ParseTrust.
package legal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// RequestHeader is the first line of a request's text.
const RequestHeader = "doorless legal request v1"

// Request types an authority may name.
const (
	TypeSubpoena      = "subpoena"
	TypeCourtOrder    = "court_order"
	TypeSearchWarrant = "search_warrant"
	TypeEmergency     = "emergency"
)

// Types lists the request types, sorted.
var Types = []string{TypeCourtOrder, TypeEmergency, TypeSearchWarrant, TypeSubpoena}

// Data categories a request may ask for. The server holds two of them
// (Disclosable); the others name data it never holds, and a request
// asking for any of them is refused (undisclosable_category): the server
// answers no request in part.
const (
	CategoryAccountCreated  = "account_created"
	CategoryLastSeenDay     = "last_seen_day"
	CategoryMessageContent  = "message_content"
	CategoryContacts        = "contacts"
	CategoryGroupMembership = "group_membership"
	CategoryIPAddresses     = "ip_addresses"
	CategoryMessageMetadata = "message_metadata"
	CategoryProfile         = "profile"
	CategoryDeviceInfo      = "device_info"
)

// Disclosable lists the categories the server can disclose, sorted;
// NotHeld those it never holds, sorted. A category in neither is unknown.
var (
	Disclosable = []string{CategoryAccountCreated, CategoryLastSeenDay}
	NotHeld     = []string{CategoryContacts, CategoryDeviceInfo, CategoryGroupMembership, CategoryIPAddresses,
		CategoryMessageContent, CategoryMessageMetadata, CategoryProfile}
)

// Limits of a request's fields.
const (
	MaxTextField  = 512 // basis and case, in bytes
	MaxTarget     = 256 // one target line's value, in bytes
	MinNonce      = 16  // bytes
	MaxNonce      = 32  // bytes
	MaxRequest    = 16 << 10
	maxTargets    = 1000
	maxCategories = 64
)

// timeLayout is how a request writes its times: RFC 3339, UTC, seconds.
const timeLayout = "2006-01-02T15:04:05Z"

var tokenRE = regexp.MustCompile(`^[a-z0-9_.:-]{1,64}$`)

// ValidToken reports whether s is a token: 1 to 64 of [a-z0-9_.:-], the
// alphabet of authority names, jurisdictions, types and categories (and of
// the request log's fields).
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// Request is a legal request as its text says. ParseRequest makes one from
// text that keeps the format, whatever its content: Verify judges the
// content (a request naming two targets parses, and is refused).
type Request struct {
	Authority    string // the issuing authority: its key's name
	Jurisdiction string
	Type         string
	Basis        string // the legal basis, free text
	Case         string // the case reference, free text
	// Targets holds every target line's value, in order: a valid request
	// has exactly one, a username.
	Targets []string
	// Categories are the data categories asked for, sorted, without
	// duplicates.
	Categories         []string
	Issued             time.Time
	ValidUntil         time.Time
	NondisclosureUntil time.Time
	Nonce              []byte
}

// Target returns the request's only target, or "" when it has several.
func (r *Request) Target() string {
	if len(r.Targets) != 1 {
		return ""
	}
	return r.Targets[0]
}

// Encode returns the request's text, canonically: ParseRequest(Encode())
// gives r back. Categories are sorted and times written in UTC; Encode
// checks everything ParseRequest checks.
func (r *Request) Encode() ([]byte, error) {
	c := *r
	c.Categories = slices.Clone(r.Categories)
	slices.Sort(c.Categories)
	var b bytes.Buffer
	b.WriteString(RequestHeader + "\n")
	fmt.Fprintf(&b, "authority %s\njurisdiction %s\ntype %s\nbasis %s\ncase %s\n", c.Authority, c.Jurisdiction, c.Type, c.Basis, c.Case)
	for _, t := range c.Targets {
		fmt.Fprintf(&b, "target %s\n", t)
	}
	fmt.Fprintf(&b, "categories %s\n", strings.Join(c.Categories, " "))
	fmt.Fprintf(&b, "issued %s\nvalid-until %s\nnondisclosure-until %s\nnonce %s\n",
		c.Issued.UTC().Format(timeLayout), c.ValidUntil.UTC().Format(timeLayout),
		c.NondisclosureUntil.UTC().Format(timeLayout), hex.EncodeToString(c.Nonce))
	if _, err := ParseRequest(b.Bytes()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ErrMalformedRequest is returned by ParseRequest for text that does not
// keep the format.
var ErrMalformedRequest = errors.New("legal: malformed request")

// ParseRequest parses a request's text (a signed note's text, without its
// signatures). The format is strict: exactly the lines Encode writes, in
// its order, each ending in "\n", single spaces, nothing else; one or more
// target lines. A text that parses may still be refused by Verify.
func ParseRequest(text []byte) (*Request, error) {
	if len(text) > MaxRequest {
		return nil, fmt.Errorf("%w: over %d bytes", ErrMalformedRequest, MaxRequest)
	}
	if !utf8.Valid(text) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrMalformedRequest)
	}
	s, ok := strings.CutSuffix(string(text), "\n")
	if !ok {
		return nil, fmt.Errorf("%w: no final newline", ErrMalformedRequest)
	}
	lines := strings.Split(s, "\n")
	bad := func(format string, a ...any) (*Request, error) {
		return nil, fmt.Errorf("%w: %s", ErrMalformedRequest, fmt.Sprintf(format, a...))
	}
	next := func(key string) (string, bool) {
		if len(lines) == 0 {
			return "", false
		}
		v, ok := strings.CutPrefix(lines[0], key+" ")
		if !ok {
			return "", false
		}
		lines = lines[1:]
		return v, true
	}
	if lines[0] != RequestHeader {
		return bad("first line is not %q", RequestHeader)
	}
	lines = lines[1:]
	r := &Request{}
	tokens := []struct {
		key string
		v   *string
	}{{"authority", &r.Authority}, {"jurisdiction", &r.Jurisdiction}, {"type", &r.Type}}
	for _, f := range tokens {
		v, ok := next(f.key)
		if !ok || !ValidToken(v) {
			return bad("no valid %s line", f.key)
		}
		*f.v = v
	}
	if !slices.Contains(Types, r.Type) {
		return bad("unknown type")
	}
	for _, f := range []struct {
		key string
		v   *string
	}{{"basis", &r.Basis}, {"case", &r.Case}} {
		v, ok := next(f.key)
		if !ok || !validText(v, MaxTextField) {
			return bad("no valid %s line", f.key)
		}
		*f.v = v
	}
	for {
		v, ok := next("target")
		if !ok {
			break
		}
		if !validText(v, MaxTarget) {
			return bad("a target line is not valid")
		}
		if len(r.Targets) == maxTargets {
			return bad("over %d target lines", maxTargets)
		}
		r.Targets = append(r.Targets, v)
	}
	if len(r.Targets) == 0 {
		return bad("no target line")
	}
	cats, ok := next("categories")
	if !ok {
		return bad("no categories line")
	}
	r.Categories = strings.Split(cats, " ")
	if len(r.Categories) > maxCategories {
		return bad("over %d categories", maxCategories)
	}
	for i, c := range r.Categories {
		if !ValidToken(c) {
			return bad("a category is not a token")
		}
		if i > 0 && r.Categories[i-1] >= c {
			return bad("categories are not sorted and distinct")
		}
	}
	for _, f := range []struct {
		key string
		v   *time.Time
	}{{"issued", &r.Issued}, {"valid-until", &r.ValidUntil}, {"nondisclosure-until", &r.NondisclosureUntil}} {
		v, ok := next(f.key)
		if !ok {
			return bad("no %s line", f.key)
		}
		t, err := parseTime(v)
		if err != nil {
			return bad("%s is not a UTC RFC 3339 time in seconds", f.key)
		}
		*f.v = t
	}
	if !r.ValidUntil.After(r.Issued) {
		return bad("valid-until is not after issued")
	}
	if r.NondisclosureUntil.Before(r.Issued) {
		return bad("nondisclosure-until is before issued")
	}
	n, ok := next("nonce")
	if !ok {
		return bad("no nonce line")
	}
	nonce, err := hex.DecodeString(n)
	if err != nil || hex.EncodeToString(nonce) != n || len(nonce) < MinNonce || len(nonce) > MaxNonce {
		return bad("the nonce is not %d to %d bytes in lower-case hex", MinNonce, MaxNonce)
	}
	r.Nonce = nonce
	if len(lines) != 0 {
		return bad("unexpected line after the nonce")
	}
	return r, nil
}

// parseTime parses a time as a request writes it, and nothing else.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.Format(timeLayout) != s {
		return time.Time{}, errors.New("not canonical")
	}
	return t, nil
}

// validText reports whether s is a free-text field: 1 to max bytes of
// printable characters, no leading or trailing space.
func validText(s string, max int) bool {
	if s == "" || len(s) > max || strings.TrimSpace(s) != s {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}
