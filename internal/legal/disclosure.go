package legal

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

	"github.com/doorless/doorless/internal/api"
)

// DisclosureHeader is the first line of a disclosure package's text.
const DisclosureHeader = "doorless disclosure v1"

// The statements a disclosure package makes, verbatim.
const (
	// StatementNotHeld is in every package.
	StatementNotHeld = "Message content, contacts and group membership do not exist on this server: " +
		"messages are end-to-end encrypted and held only as ciphertext until delivered, " +
		"and no contact list, address book or group is kept."
	// StatementNoAccount is in the package of a request whose target is
	// no account.
	StatementNoAccount = "No account with this username exists on this server."
)

// Field is one field a disclosure package can hold: its line, the
// category that asks for it, and the store column it is read from, which
// docs/data-inventory.md must mark disclosable (a test checks it).
type Field struct {
	Line     string
	Category string
	Table    string
	Column   string
}

// Fields are every field a disclosure package can hold, in their order in
// the package: nothing else about an account is ever disclosed.
var Fields = []Field{
	{Line: "registered", Category: CategoryAccountCreated, Table: "accounts", Column: "created"},
	{Line: "last-connection", Category: CategoryLastSeenDay, Table: "devices", Column: "last_seen_day"},
}

// dayLayout is how a package writes a day.
const dayLayout = "2006-01-02"

// Disclosure is a disclosure package: the server's answer to an accepted
// request, as its text says.
type Disclosure struct {
	RequestIndex uint64   // the log index of the request's entry
	RequestHash  [32]byte // SHA-256 of the signed request as received
	Target       string   // the username asked about
	Generated    time.Time
	Exists       bool // whether an account holds the username
	// Registered is the account's registration day, LastConnection the
	// last day any of its devices connected (midnight UTC); zero when not
	// asked for, not known, or there is no account.
	Registered     time.Time
	LastConnection time.Time
}

// Account is what the store holds of the target account that a package
// may disclose: accounts.created, and the latest devices.last_seen_day of
// its devices (days since 1970-01-01, 0 when none is known).
type Account struct {
	Created     time.Time
	LastSeenDay int64
}

// NewDisclosure makes the package answering r, accepted at log index
// index, whose signed form was signed, at now: it holds the fields of a
// (nil: no account holds the target) that r's categories ask for.
func NewDisclosure(r *Request, index uint64, signed []byte, now time.Time, a *Account) *Disclosure {
	d := &Disclosure{
		RequestIndex: index,
		RequestHash:  sha256.Sum256(signed),
		Target:       r.Target(),
		Generated:    now.UTC().Truncate(time.Second),
		Exists:       a != nil,
	}
	if a == nil {
		return d
	}
	if slices.Contains(r.Categories, CategoryAccountCreated) {
		d.Registered = day(a.Created)
	}
	if slices.Contains(r.Categories, CategoryLastSeenDay) && a.LastSeenDay > 0 {
		d.LastConnection = time.Unix(a.LastSeenDay*86400, 0).UTC()
	}
	return d
}

func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Encode returns the package's text.
func (d *Disclosure) Encode() []byte {
	var b bytes.Buffer
	b.WriteString(DisclosureHeader + "\n")
	fmt.Fprintf(&b, "request %d\nrequest-sha256 %s\ntarget %s\ngenerated %s\n", d.RequestIndex,
		base64.StdEncoding.EncodeToString(d.RequestHash[:]), d.Target, d.Generated.UTC().Format(timeLayout))
	if !d.Exists {
		b.WriteString("account none\n")
	} else {
		b.WriteString("account exists\n")
		if !d.Registered.IsZero() {
			fmt.Fprintf(&b, "registered %s\n", d.Registered.UTC().Format(dayLayout))
		}
		if !d.LastConnection.IsZero() {
			fmt.Fprintf(&b, "last-connection %s\n", d.LastConnection.UTC().Format(dayLayout))
		}
	}
	fmt.Fprintf(&b, "not-held %s\n", strings.Join(NotHeld, " "))
	if !d.Exists {
		b.WriteString("statement " + StatementNoAccount + "\n")
	}
	b.WriteString("statement " + StatementNotHeld + "\n")
	return b.Bytes()
}

// Sign returns the package as a note signed by the server's legal key.
func (d *Disclosure) Sign(signer note.Signer) ([]byte, error) {
	b, err := note.Sign(&note.Note{Text: string(d.Encode())}, signer)
	if err != nil {
		return nil, fmt.Errorf("legal: signing the disclosure: %v", err)
	}
	return b, nil
}

// ErrMalformedDisclosure is returned by ParseDisclosure for text that is
// not a disclosure package.
var ErrMalformedDisclosure = errors.New("legal: malformed disclosure package")

// ParseDisclosure parses a package's text, strictly: exactly the lines
// Encode writes.
func ParseDisclosure(text []byte) (*Disclosure, error) {
	d := &Disclosure{}
	var b bytes.Buffer
	if len(text) > MaxRequest {
		return nil, ErrMalformedDisclosure
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) < 8 || lines[len(lines)-1] != "" || lines[0] != DisclosureHeader {
		return nil, ErrMalformedDisclosure
	}
	get := func(i int, key string) (string, bool) {
		return strings.CutPrefix(lines[i], key+" ")
	}
	v, ok := get(1, "request")
	idx, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil || strconv.FormatUint(idx, 10) != v {
		return nil, ErrMalformedDisclosure
	}
	d.RequestIndex = idx
	v, ok = get(2, "request-sha256")
	h, err := base64.StdEncoding.DecodeString(v)
	if !ok || err != nil || len(h) != 32 {
		return nil, ErrMalformedDisclosure
	}
	copy(d.RequestHash[:], h)
	if d.Target, ok = get(3, "target"); !ok || !api.ValidUsername(d.Target) {
		return nil, ErrMalformedDisclosure
	}
	v, ok = get(4, "generated")
	if d.Generated, err = parseTime(v); !ok || err != nil {
		return nil, ErrMalformedDisclosure
	}
	switch lines[5] {
	case "account exists":
		d.Exists = true
		i := 6
		for _, f := range []struct {
			key string
			t   *time.Time
		}{{"registered", &d.Registered}, {"last-connection", &d.LastConnection}} {
			if v, ok := get(i, f.key); ok {
				t, err := time.Parse(dayLayout, v)
				if err != nil || t.Format(dayLayout) != v {
					return nil, ErrMalformedDisclosure
				}
				*f.t = t
				i++
			}
		}
	case "account none":
	default:
		return nil, ErrMalformedDisclosure
	}
	// The rest is fixed once the fields are known: compare it whole.
	b.Write(d.Encode())
	if !bytes.Equal(b.Bytes(), text) {
		return nil, ErrMalformedDisclosure
	}
	return d, nil
}

// OpenDisclosure verifies a signed package with the server's legal key and
// parses it.
func OpenDisclosure(signed []byte, server note.Verifier) (*Disclosure, error) {
	n, err := note.Open(signed, note.VerifierList(server))
	if err != nil {
		return nil, fmt.Errorf("legal: disclosure package: %v", err)
	}
	return ParseDisclosure([]byte(n.Text))
}
