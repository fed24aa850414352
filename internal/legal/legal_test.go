package legal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/inventory"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type authority struct {
	signer note.Signer
	vkey   string
}

func newAuthority(t testing.TB, name string) *authority {
	t.Helper()
	skey, vkey, err := GenerateAuthorityKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{s, vkey}
}

func request(a *authority) *Request {
	return &Request{
		Authority:          a.signer.Name(),
		Jurisdiction:       "us",
		Type:               TypeCourtOrder,
		Basis:              "18 U.S.C. § 2703(d)",
		Case:               "No. 1:26-mj-00042",
		Targets:            []string{"alice"},
		Categories:         []string{CategoryLastSeenDay, CategoryAccountCreated},
		Issued:             now.Add(-time.Hour),
		ValidUntil:         now.Add(30 * 24 * time.Hour),
		NondisclosureUntil: now.Add(90 * 24 * time.Hour),
		Nonce:              bytes.Repeat([]byte{7}, 16),
	}
}

func sign(t testing.TB, a *authority, r *Request) []byte {
	t.Helper()
	b, err := SignRequest(r, a.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func trustOf(t testing.TB, lines ...string) *Trust {
	t.Helper()
	tr, err := ParseTrust([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func never(string, []byte) (bool, error) { return false, nil }

func TestRequestRoundTrip(t *testing.T) {
	a := newAuthority(t, "us.court.example")
	r := request(a)
	text, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := RequestHeader + "\nauthority us.court.example\njurisdiction us\ntype court_order\n" +
		"basis 18 U.S.C. § 2703(d)\ncase No. 1:26-mj-00042\ntarget alice\ncategories account_created last_seen_day\n" +
		"issued 2026-11-23T11:00:00Z\nvalid-until 2026-12-23T12:00:00Z\nnondisclosure-until 2027-02-21T12:00:00Z\n" +
		"nonce 07070707070707070707070707070707\n"
	if string(text) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", text, want)
	}
	got, err := ParseRequest(text)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.Encode()
	if !bytes.Equal(again, text) || got.Target() != "alice" || !got.Issued.Equal(r.Issued) {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestParseRequestStrict(t *testing.T) {
	a := newAuthority(t, "auth")
	good, _ := request(a).Encode()
	edits := map[string]func(string) string{
		"no final newline": func(s string) string { return strings.TrimSuffix(s, "\n") },
		"CRLF":             func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") },
		"extra line":       func(s string) string { return s + "extra x\n" },
		"blank line":       func(s string) string { return strings.Replace(s, "type", "\ntype", 1) },
		"double space":     func(s string) string { return strings.Replace(s, "jurisdiction us", "jurisdiction  us", 1) },
		"reordered": func(s string) string {
			return strings.Replace(s, "jurisdiction us\ntype court_order", "type court_order\njurisdiction us", 1)
		},
		"unknown type":     func(s string) string { return strings.Replace(s, "court_order", "fishing_expedition", 1) },
		"upper-case token": func(s string) string { return strings.Replace(s, "jurisdiction us", "jurisdiction US", 1) },
		"unsorted categories": func(s string) string {
			return strings.Replace(s, "account_created last_seen_day", "last_seen_day account_created", 1)
		},
		"duplicate category": func(s string) string {
			return strings.Replace(s, "account_created last_seen_day", "account_created account_created", 1)
		},
		"no target":    func(s string) string { return strings.Replace(s, "target alice\n", "", 1) },
		"empty target": func(s string) string { return strings.Replace(s, "target alice", "target ", 1) },
		"non-UTC time": func(s string) string {
			return strings.Replace(s, "2026-11-23T11:00:00Z", "2026-11-23T12:00:00+01:00", 1)
		},
		"fractional time": func(s string) string { return strings.Replace(s, "2026-11-23T11:00:00Z", "2026-11-23T11:00:00.5Z", 1) },
		"valid before issued": func(s string) string {
			return strings.Replace(s, "valid-until 2026-12-23", "valid-until 2026-01-23", 1)
		},
		"nondisclosure before": func(s string) string {
			return strings.Replace(s, "nondisclosure-until 2027", "nondisclosure-until 2025", 1)
		},
		"short nonce": func(s string) string { return strings.Replace(s, "07070707070707070707070707070707", "0707", 1) },
		"upper-case nonce": func(s string) string {
			return strings.Replace(s, "07070707070707070707070707070707", "0A070707070707070707070707070707", 1)
		},
		"trailing space": func(s string) string { return strings.Replace(s, "00042\n", "00042 \n", 1) },
		"wrong header":   func(s string) string { return strings.Replace(s, "v1", "v2", 1) },
	}
	for name, edit := range edits {
		bad := edit(string(good))
		if bad == string(good) {
			t.Errorf("%s: the edit changed nothing", name)
			continue
		}
		if _, err := ParseRequest([]byte(bad)); !errors.Is(err, ErrMalformedRequest) {
			t.Errorf("%s: %v, want ErrMalformedRequest", name, err)
		}
	}
}

// TestVerify: every refusal reason, each from a request that differs from
// an accepted one in one way.
func TestVerify(t *testing.T) {
	court := newAuthority(t, "us.court.example")
	other := newAuthority(t, "fr.tribunal.example")
	impostor := newAuthority(t, "us.court.example") // same name, another key
	trust := trustOf(t, "# authorities", "us "+court.vkey, "us-ca "+court.vkey, "fr "+other.vkey)

	accepted := sign(t, court, request(court))
	r, err := Verify(accepted, trust, now, never)
	if err != nil || r.Target() != "alice" {
		t.Fatalf("Verify: %+v, %v", r, err)
	}

	tampered := bytes.Replace(accepted, []byte("target alice"), []byte("target bobby"), 1)
	mod := func(f func(*Request)) []byte {
		r := request(court)
		f(r)
		return sign(t, court, r)
	}
	seenNonce := func(a string, n []byte) (bool, error) {
		return a == court.signer.Name() && bytes.Equal(n, request(court).Nonce), nil
	}
	unsorted := func() []byte {
		// A note whose text is not canonical, signed as it is.
		text, _ := request(court).Encode()
		text = bytes.Replace(text, []byte("account_created last_seen_day"), []byte("last_seen_day account_created"), 1)
		b, err := note.Sign(&note.Note{Text: string(text)}, court.signer)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name     string
		signed   []byte
		seen     NonceSeen
		err      error
		verified bool // the refusal carries the request
	}{
		{"forged signature", tampered, never, ErrBadSignature, false},
		{"impostor key", sign(t, impostor, request(court)), never, ErrUnknownAuthority, false},
		{"unknown authority", sign(t, newAuthority(t, "nobody"), request(newAuthority(t, "nobody"))), never, ErrUnknownAuthority, false},
		{"not a note", []byte("doorless legal request v1\n"), never, ErrMalformed, false},
		{"malformed text", unsorted(), never, ErrMalformed, false},
		{"authority line names another", func() []byte {
			r := request(court)
			r.Authority = other.signer.Name()
			text, _ := r.Encode()
			b, _ := note.Sign(&note.Note{Text: string(text)}, court.signer)
			return b
		}(), never, ErrBadSignature, false},
		{"untrusted jurisdiction", mod(func(r *Request) { r.Jurisdiction = "fr" }), never, ErrUntrustedJurisdiction, true},
		{"not yet valid", mod(func(r *Request) { r.Issued = now.Add(ClockSkew + time.Second) }), never, ErrNotYetValid, true},
		{"expired", mod(func(r *Request) { r.ValidUntil = now }), never, ErrExpired, true},
		{"replayed nonce", accepted, seenNonce, ErrReplayedNonce, true},
		{"multiple targets", mod(func(r *Request) { r.Targets = []string{"alice", "bob_b"} }), never, ErrMultipleTargets, true},
		{"wildcard", mod(func(r *Request) { r.Targets = []string{"*"} }), never, ErrWildcardTarget, true},
		{"like pattern", mod(func(r *Request) { r.Targets = []string{"al%"} }), never, ErrWildcardTarget, true},
		{"list", mod(func(r *Request) { r.Targets = []string{"alice,bob"} }), never, ErrWildcardTarget, true},
		{"spaced list", mod(func(r *Request) { r.Targets = []string{"alice bob"} }), never, ErrWildcardTarget, true},
		{"not a username", mod(func(r *Request) { r.Targets = []string{"Alice"} }), never, ErrMalformed, true},
		{"content", mod(func(r *Request) { r.Categories = []string{CategoryMessageContent} }), never, ErrUndisclosableCategory, true},
		{"contacts too", mod(func(r *Request) { r.Categories = []string{CategoryAccountCreated, CategoryContacts} }), never, ErrUndisclosableCategory, true},
		{"unknown category", mod(func(r *Request) { r.Categories = []string{CategoryAccountCreated, "dna"} }), never, ErrUnknownCategory, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Verify(tt.signed, trust, now, tt.seen)
			var re *RefusalError
			if !errors.Is(err, tt.err) || !errors.As(err, &re) || r != nil {
				t.Fatalf("Verify: %v, %v; want %v", r, err, tt.err)
			}
			if reasonErrs[re.Reason] != tt.err || re.Outcome() != "refused:"+re.Reason {
				t.Errorf("reason %q for %v", re.Reason, tt.err)
			}
			if (re.Request != nil) != tt.verified {
				t.Errorf("refusal carries request %v, want %v", re.Request != nil, tt.verified)
			}
		})
	}
	// A storage failure is no verdict.
	boom := errors.New("disk on fire")
	if _, err := Verify(accepted, trust, now, func(string, []byte) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("nonce failure: %v", err)
	} else if re := (*RefusalError)(nil); errors.As(err, &re) {
		t.Errorf("nonce failure became refusal %q", re.Reason)
	}
	// The zero trust trusts no one.
	if _, err := Verify(accepted, &Trust{}, now, never); !errors.Is(err, ErrUnknownAuthority) {
		t.Errorf("empty trust: %v", err)
	}
	if got := Reasons(); len(got) != 11 || !slices.IsSorted(got) {
		t.Errorf("Reasons() = %q", got)
	}
}

func TestParseTrust(t *testing.T) {
	a := newAuthority(t, "a.example")
	b := newAuthority(t, "b.example")
	tr := trustOf(t, "", "  # comment", "us "+a.vkey, "eu\t"+a.vkey, "eu "+b.vkey)
	got := tr.Authorities()
	if len(got) != 2 || got[0].Name != "a.example" || !slices.Equal(got[0].Jurisdictions, []string{"eu", "us"}) ||
		got[1].Key != b.vkey || !slices.Equal(got[1].Jurisdictions, []string{"eu"}) {
		t.Fatalf("authorities %+v", got)
	}
	upper := newAuthority(t, "a.example")
	upperKey := strings.Replace(upper.vkey, "a.example", "A.example", 1)
	for name, text := range map[string]string{
		"one field":        "us\n",
		"three fields":     "us " + a.vkey + " extra\n",
		"bad key":          "us PRIVATE+KEY+x\n",
		"bad jurisdiction": "U.S. " + a.vkey + "\n",
		"twice":            "us " + a.vkey + "\nus " + a.vkey + "\n",
		"bad key name":     "us " + upperKey + "\n",
	} {
		if _, err := ParseTrust([]byte(text)); !errors.Is(err, ErrMalformedTrust) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDisclosure(t *testing.T) {
	a := newAuthority(t, "auth")
	srvSkey, srvVkey, _ := note.GenerateKey(rand.Reader, "chat.example/legal")
	signer, _ := note.NewSigner(srvSkey)
	verifier, _ := note.NewVerifier(srvVkey)
	r := request(a)
	signed := sign(t, a, r)
	created := time.Date(2025, 3, 4, 22, 30, 0, 0, time.UTC)
	acct := &Account{Created: created, LastSeenDay: 20_400}
	d := NewDisclosure(r, 41, signed, now, acct)
	pkg, err := d.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenDisclosure(pkg, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got.RequestIndex != 41 || got.RequestHash != sha256.Sum256(signed) || got.Target != "alice" || !got.Exists ||
		got.Registered.Format(dayLayout) != "2025-03-04" || got.LastConnection.Format(dayLayout) != "2025-11-08" {
		t.Fatalf("package %+v", got)
	}
	if !bytes.Contains(pkg, []byte("\nstatement "+StatementNotHeld+"\n")) || !bytes.Contains(pkg, []byte("\nnot-held contacts ")) {
		t.Errorf("package lacks the statement:\n%s", pkg)
	}
	// Only the categories asked for.
	r.Categories = []string{CategoryAccountCreated}
	if d := NewDisclosure(r, 1, signed, now, acct); d.Registered.IsZero() || !d.LastConnection.IsZero() {
		t.Errorf("asked for the registration only: %+v", d)
	}
	// No account.
	none := NewDisclosure(r, 1, signed, now, nil)
	text := none.Encode()
	if !bytes.Contains(text, []byte("account none\n")) || !bytes.Contains(text, []byte(StatementNoAccount)) || bytes.Contains(text, []byte("registered")) {
		t.Errorf("no account:\n%s", text)
	}
	if p, err := ParseDisclosure(text); err != nil || p.Exists {
		t.Errorf("parse no account: %+v, %v", p, err)
	}
	// Another key's signature does not open it.
	_, other, _ := note.GenerateKey(rand.Reader, "chat.example/legal")
	ov, _ := note.NewVerifier(other)
	if _, err := OpenDisclosure(pkg, ov); err == nil {
		t.Error("opened with another key")
	}
	// Any extra line is refused.
	n, _ := note.Open(pkg, note.VerifierList(verifier))
	extra := strings.Replace(n.Text, "account exists\n", "account exists\nip 192.0.2.1\n", 1)
	if _, err := ParseDisclosure([]byte(extra)); !errors.Is(err, ErrMalformedDisclosure) {
		t.Errorf("extra line: %v", err)
	}
}

// TestFieldsAreTheInventorysDisclosable: a package's fields are exactly
// the columns docs/data-inventory.md marks disclosable, and each category
// the server holds is one field.
func TestFieldsAreTheInventorysDisclosable(t *testing.T) {
	inv, err := inventory.ParseFile(filepath.Join("..", "..", "docs", "data-inventory.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cols, cats []string
	for _, f := range Fields {
		if !inv.HasColumn(f.Table, f.Column) {
			t.Errorf("field %s: %s.%s is not in the inventory", f.Line, f.Table, f.Column)
		}
		cols = append(cols, f.Table+"."+f.Column)
		cats = append(cats, f.Category)
	}
	want := slices.Sorted(slices.Values(inv.Disclosable))
	if slices.Sort(cols); !slices.Equal(cols, want) {
		t.Errorf("package fields %q, the inventory marks %q disclosable", cols, want)
	}
	if slices.Sort(cats); !slices.Equal(cats, Disclosable) {
		t.Errorf("fields' categories %q, disclosable categories %q", cats, Disclosable)
	}
	// And a full package holds those lines and no other field.
	a := newAuthority(t, "auth")
	d := NewDisclosure(request(a), 0, nil, now, &Account{Created: now, LastSeenDay: 1})
	var lines []string
	for l := range strings.SplitSeq(string(d.Encode()), "\n") {
		k, _, _ := strings.Cut(l, " ")
		lines = append(lines, k)
	}
	wantLines := []string{"doorless", "request", "request-sha256", "target", "generated", "account", "registered",
		"last-connection", "not-held", "statement", ""}
	if !slices.Equal(lines, wantLines) {
		t.Errorf("package lines %q, want %q", lines, wantLines)
	}
}

func TestSignText(t *testing.T) {
	a := newAuthority(t, "auth")
	text, _ := request(a).Encode()
	if _, err := SignText(text, newAuthority(t, "other").signer); err == nil {
		t.Error("signed with a key of another name")
	}
	if _, err := SignText(text[1:], a.signer); !errors.Is(err, ErrMalformedRequest) {
		t.Errorf("malformed text: %v", err)
	}
	if _, _, err := GenerateAuthorityKey(rand.Reader, "Bad Name"); err == nil {
		t.Error("a key named \"Bad Name\"")
	}
}
