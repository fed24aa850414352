package frontdoor

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/sqlite"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type fixture struct {
	st    *sqlite.Store
	log   *requestlog.Log
	key   *Key
	desk  *Desk
	clock *clock
	court note.Signer
	dir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "doorless.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ldir := filepath.Join(dir, "legal")
	key, made, err := InitKey(ldir, "chat.example/legal")
	if err != nil || !made {
		t.Fatalf("InitKey: %v, %v", made, err)
	}
	lg, err := requestlog.Open(t.Context(), filepath.Join(ldir, LogDir), key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	skey, vkey, err := legal.GenerateAuthorityKey(rand.Reader, "us.court.example")
	if err != nil {
		t.Fatal(err)
	}
	court, _ := note.NewSigner(skey)
	if err := InitTrust(ldir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ldir, AuthoritiesFile), []byte("us "+vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &clock{t0}
	desk, err := New(Config{Store: st, Log: lg, Signer: key.Signer, Trust: TrustFile(ldir), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, log: lg, key: key, desk: desk, clock: c, court: court, dir: dir}
}

var nonceCounter byte

func (f *fixture) request(mod func(*legal.Request)) *legal.Request {
	nonceCounter++
	r := &legal.Request{
		Authority: f.court.Name(), Jurisdiction: "us", Type: legal.TypeSubpoena,
		Basis: "18 U.S.C. 2703(c)(2)", Case: "26-cr-1", Targets: []string{"alice"},
		Categories: []string{legal.CategoryAccountCreated, legal.CategoryLastSeenDay},
		Issued:     t0.Add(-time.Hour), ValidUntil: t0.Add(7 * 24 * time.Hour),
		NondisclosureUntil: t0.Add(30 * 24 * time.Hour),
		Nonce:              append(bytes.Repeat([]byte{1}, 15), nonceCounter),
	}
	if mod != nil {
		mod(r)
	}
	return r
}

func (f *fixture) sign(t *testing.T, r *legal.Request) []byte {
	t.Helper()
	b, err := legal.SignRequest(r, f.court)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) register(t *testing.T, name string, created time.Time, lastSeen int64) *store.Account {
	t.Helper()
	a := &store.Account{ID: strings.Repeat("0", 8) + "-0000-4000-8000-" + strings.Repeat(string(name[0]), 12), Username: name,
		IdentityKey: bytes.Repeat([]byte{5}, 33), Created: created}
	d := &store.Device{AccountID: a.ID, ID: 1, RegistrationID: 1, CredentialHash: make([]byte, 32), Created: created}
	if err := f.st.CreateAccount(t.Context(), a, d, &store.KeyUpload{}, &store.DeviceList{Version: 1, Signed: []byte("l")}, nil); err != nil {
		t.Fatal(err)
	}
	if lastSeen > 0 {
		if err := f.st.SetLastSeenDay(t.Context(), a.ID, 1, lastSeen); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func (f *fixture) entries(t *testing.T) [][]byte {
	t.Helper()
	e, err := f.log.Entries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) requestEntry(t *testing.T, idx uint64) *requestlog.RequestEntry {
	t.Helper()
	e, err := requestlog.ParseRequestEntry(f.entries(t)[idx])
	if err != nil {
		t.Fatalf("entry %d: %v", idx, err)
	}
	return e
}

// parseFields is the requestlog.RequestParser the server's requests need.
func parseFields(text []byte) (requestlog.RequestFields, error) {
	r, err := legal.ParseRequest(text)
	if err != nil {
		return requestlog.RequestFields{}, err
	}
	return requestlog.RequestFields{Authority: r.Authority, Jurisdiction: r.Jurisdiction, Type: r.Type, NondisclosureUntil: r.NondisclosureUntil}, nil
}

// TestRefusalsAreLogged: every kind of refused request is refused, and is
// in the log as a request entry with its outcome; a forged one with "-".
func TestRefusalsAreLogged(t *testing.T) {
	f := newFixture(t)
	f.register(t, "alice", t0.Add(-400*24*time.Hour), 0)
	replayed := f.sign(t, f.request(nil))
	if res, err := f.desk.Process(t.Context(), replayed); err != nil || res.Refusal != nil {
		t.Fatalf("first of the replayed: %+v, %v", res, err)
	}
	impSkey, _, _ := legal.GenerateAuthorityKey(rand.Reader, "us.court.example")
	impostor, _ := note.NewSigner(impSkey)
	impostorSigned, _ := legal.SignRequest(f.request(nil), impostor)

	tests := []struct {
		name     string
		signed   []byte
		reason   string
		verified bool
	}{
		{"forged signature", bytes.Replace(f.sign(t, f.request(nil)), []byte("target alice"), []byte("target bobby"), 1), legal.ReasonBadSignature, false},
		{"unknown authority", impostorSigned, legal.ReasonUnknownAuthority, false},
		{"untrusted jurisdiction", f.sign(t, f.request(func(r *legal.Request) { r.Jurisdiction = "fr" })), legal.ReasonUntrustedJurisdiction, true},
		{"expired", f.sign(t, f.request(func(r *legal.Request) { r.ValidUntil = t0.Add(-time.Minute) })), legal.ReasonExpired, true},
		{"not yet valid", f.sign(t, f.request(func(r *legal.Request) { r.Issued = t0.Add(time.Hour); r.ValidUntil = t0.Add(2 * time.Hour) })), legal.ReasonNotYetValid, true},
		{"replayed nonce", replayed, legal.ReasonReplayedNonce, true},
		{"multiple targets", f.sign(t, f.request(func(r *legal.Request) { r.Targets = []string{"alice", "bob_b"} })), legal.ReasonMultipleTargets, true},
		{"wildcard", f.sign(t, f.request(func(r *legal.Request) { r.Targets = []string{"a*"} })), legal.ReasonWildcardTarget, true},
		{"content", f.sign(t, f.request(func(r *legal.Request) {
			r.Categories = []string{legal.CategoryGroupMembership, legal.CategoryMessageContent}
		})), legal.ReasonUndisclosableCategory, true},
		{"unknown category", f.sign(t, f.request(func(r *legal.Request) { r.Categories = []string{"browsing_history"} })), legal.ReasonUnknownCategory, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f.desk.Process(t.Context(), tt.signed)
			if err != nil {
				t.Fatal(err)
			}
			if res.Refusal == nil || res.Refusal.Reason != tt.reason || res.Package != nil {
				t.Fatalf("result %+v, want refused %s", res, tt.reason)
			}
			e := f.requestEntry(t, res.LogIndex)
			if e.Outcome != "refused:"+tt.reason {
				t.Errorf("logged outcome %q", e.Outcome)
			}
			if tt.verified != (e.Jurisdiction != "-") || tt.verified != (e.Type != "-") {
				t.Errorf("logged jurisdiction %q, type %q; signature verified: %v", e.Jurisdiction, e.Type, tt.verified)
			}
			if tt.verified && (e.Jurisdiction != res.Request.Jurisdiction || e.Type != legal.TypeSubpoena) {
				t.Errorf("logged %q %q", e.Jurisdiction, e.Type)
			}
			if c := requestlog.Commit(saltOf(t, f, res.LogIndex), tt.signed); c != e.Commitment {
				t.Error("the commitment is not to the request as received")
			}
		})
	}
	if n := len(f.entries(t)); n != len(tests)+1 {
		t.Errorf("%d log entries, want %d", n, len(tests)+1)
	}
	// Too large: neither recorded nor logged.
	if _, err := f.desk.Process(t.Context(), make([]byte, MaxRequest+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge request: %v", err)
	}
}

// saltOf returns the stored salt of the request logged at idx.
func saltOf(t *testing.T, f *fixture, idx uint64) [32]byte {
	t.Helper()
	recs, err := f.st.DueLegalRequests(t.Context(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	all, _ := f.st.UnloggedLegalRequests(t.Context(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, r := range append(recs, all...) {
		if r.Logged && r.LogIndex == idx {
			return [32]byte(r.Salt)
		}
	}
	// Never published (forged): not "due"; find it in the dump.
	d, err := f.st.Dump(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range d["legal_requests"] {
		if li, ok := row["log_index"].(int64); ok && uint64(li) == idx {
			return [32]byte(row["salt"].([]byte))
		}
	}
	t.Fatalf("no request logged at %d", idx)
	return [32]byte{}
}

// TestAcceptedPublishedReported: an accepted request's package verifies
// with the server's key and holds the store's values and nothing else;
// after the non-disclosure date Publish opens its commitment in the log
// and the target (only) sees it; a report's counts are the log's; the log
// passes requestlog.Check.
func TestAcceptedPublishedReported(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	created := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	alice := f.register(t, "alice", created, store.Day(t0)-3)
	bob := f.register(t, "bob_b", created, 0)

	signed := f.sign(t, f.request(nil))
	res, err := f.desk.Process(ctx, signed)
	if err != nil || res.Refusal != nil {
		t.Fatalf("Process: %+v, %v", res, err)
	}
	d, err := legal.OpenDisclosure(res.Package, f.key.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.st.AccountByUsername(ctx, "alice")
	devs, _ := f.st.Devices(ctx, a.ID)
	if !d.Exists || d.Target != "alice" || d.RequestIndex != res.LogIndex ||
		d.Registered.Format("2006-01-02") != a.Created.UTC().Format("2006-01-02") ||
		store.Day(d.LastConnection) != devs[0].LastSeenDay {
		t.Fatalf("package %+v; store: created %v, last seen day %d", d, a.Created, devs[0].LastSeenDay)
	}
	// No account: said so.
	nobody, err := f.desk.Process(ctx, f.sign(t, f.request(func(r *legal.Request) { r.Targets = []string{"nobody"} })))
	if err != nil || nobody.Refusal != nil {
		t.Fatal(err)
	}
	if d, err := legal.OpenDisclosure(nobody.Package, f.key.Verifier); err != nil || d.Exists {
		t.Fatalf("no account: %+v, %v", d, err)
	}
	// A refused one for bob.
	refused, err := f.desk.Process(ctx, f.sign(t, f.request(func(r *legal.Request) {
		r.Targets = []string{"bob_b"}
		r.Categories = []string{legal.CategoryMessageContent}
		r.NondisclosureUntil = t0.Add(60 * 24 * time.Hour)
	})))
	if err != nil || refused.Refusal == nil {
		t.Fatal(err)
	}
	// A forged one: never published.
	if _, err := f.desk.Process(ctx, bytes.Replace(signed, []byte("alice"), []byte("alicf"), 1)); err != nil {
		t.Fatal(err)
	}

	// Before the date: nothing.
	f.clock.t = t0.Add(29 * 24 * time.Hour)
	if n, err := f.desk.Publish(ctx); err != nil || n != 0 {
		t.Fatalf("early Publish: %d, %v", n, err)
	}
	if ns, _ := f.desk.Notices(ctx, alice.ID); len(ns) != 0 {
		t.Fatalf("notice before the date: %+v", ns)
	}
	f.clock.t = t0.Add(30*24*time.Hour + time.Second)
	if n, err := f.desk.Publish(ctx); err != nil || n != 2 {
		t.Fatalf("Publish: %d, %v", n, err)
	}
	if n, err := f.desk.Publish(ctx); err != nil || n != 0 {
		t.Fatalf("second Publish: %d, %v", n, err)
	}
	ns, err := f.desk.Notices(ctx, alice.ID)
	if err != nil || len(ns) != 1 || ns[0].RequestIndex != res.LogIndex || !bytes.Equal(ns[0].Request, signed) || ns[0].Outcome != "accepted" {
		t.Fatalf("alice's notices %+v, %v", ns, err)
	}
	pub, err := requestlog.ParsePublicationEntry(f.entries(t)[ns[0].PublicationIndex])
	if err != nil || pub.Request != res.LogIndex || !bytes.Equal(pub.Note, signed) ||
		requestlog.Commit(pub.Salt, pub.Note) != f.requestEntry(t, res.LogIndex).Commitment {
		t.Fatalf("publication %+v, %v", pub, err)
	}
	if ns, _ := f.desk.Notices(ctx, bob.ID); len(ns) != 0 {
		t.Fatalf("bob sees %+v before his request's date", ns)
	}
	f.clock.t = t0.Add(61 * 24 * time.Hour)
	if n, err := f.desk.Publish(ctx); err != nil || n != 1 {
		t.Fatalf("Publish bob's: %d, %v", n, err)
	}
	if ns, _ := f.desk.Notices(ctx, bob.ID); len(ns) != 1 || ns[0].Outcome != "refused:undisclosable_category" {
		t.Fatalf("bob's notices %+v", ns)
	}

	// The report: the counts of the period, and the log checks out.
	rep, err := f.desk.Report(ctx, "2026-Q4")
	if err != nil {
		t.Fatal(err)
	}
	r, err := requestlog.OpenReport(rep.Signed, f.key.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	want := []requestlog.Count{
		{Jurisdiction: "-", Type: "-", Outcome: "refused:bad_signature", N: 1},
		{Jurisdiction: "us", Type: "subpoena", Outcome: "accepted", N: 2},
		{Jurisdiction: "us", Type: "subpoena", Outcome: "refused:undisclosable_category", N: 1},
	}
	if !slices.Equal(r.Counts, want) || r.Through != rep.LogIndex {
		t.Fatalf("report %+v (index %d), want counts %+v", r, rep.LogIndex, want)
	}
	if got, err := f.st.TransparencyReport(ctx, ""); err != nil || !bytes.Equal(got.Signed, rep.Signed) {
		t.Fatalf("stored report: %v", err)
	}
	sum, err := requestlog.Check(f.entries(t), f.key.Verifier, parseFields)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Requests != 4 || sum.Publications != 3 || !slices.Equal(sum.Reports, []string{"2026-Q4"}) {
		t.Fatalf("summary %+v", sum)
	}
	if _, err := f.desk.Report(ctx, "2026-Q5"); err == nil {
		t.Error("a report for 2026-Q5")
	}
}

// TestPublishLogsUnlogged: a request recorded without its entry (a crash
// between the two) is logged by Publish once UnloggedGrace has passed,
// and one whose entry is already in the log is not appended again.
func TestPublishLogsUnlogged(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	signed := f.sign(t, f.request(nil))
	rec := &store.LegalRequest{Received: t0, Request: signed, Salt: bytes.Repeat([]byte{9}, 32),
		Jurisdiction: "us", Type: "subpoena", Outcome: "accepted", NondisclosureUntil: t0.Add(30 * 24 * time.Hour)}
	if err := f.st.AddLegalRequest(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// And one already in the log, whose index was never recorded.
	rec2 := *rec
	rec2.Salt = bytes.Repeat([]byte{8}, 32)
	if err := f.st.AddLegalRequest(ctx, &rec2); err != nil {
		t.Fatal(err)
	}
	e2, _, _ := requestEntry(&rec2)
	idx2, err := f.log.Append(ctx, e2)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.t = t0.Add(UnloggedGrace - time.Second)
	if _, err := f.desk.Publish(ctx); err != nil || len(f.entries(t)) != 1 {
		t.Fatalf("logged within the grace: %v, %d entries", err, len(f.entries(t)))
	}
	f.clock.t = t0.Add(UnloggedGrace + time.Second)
	if n, err := f.desk.Publish(ctx); err != nil || n != 0 || len(f.entries(t)) != 2 {
		t.Fatalf("Publish: %d, %v, %d entries", n, err, len(f.entries(t)))
	}
	f.clock.t = t0.Add(31 * 24 * time.Hour)
	if n, err := f.desk.Publish(ctx); err != nil || n != 2 {
		t.Fatalf("Publish: %d, %v", n, err)
	}
	entries := f.entries(t)
	if len(entries) != 4 { // idx2, rec's entry, two publications
		t.Fatalf("%d entries", len(entries))
	}
	if un, _ := f.st.UnloggedLegalRequests(ctx, t0.Add(time.Hour)); len(un) != 0 {
		t.Fatalf("%d still unlogged", len(un))
	}
	if _, err := requestlog.Check(entries, f.key.Verifier, parseFields); err != nil {
		t.Fatal(err)
	}
	if e, _ := requestlog.ParsePublicationEntry(entries[3]); e == nil || e.Request != idx2 {
		t.Errorf("the second publication is not of the request logged at %d", idx2)
	}
}

// TestProcessLogsUnloggedFirst: a request a crash left unlogged is logged
// before the next request processed, days later, so that the log's
// received days stay in order and the log checks (requestlog.ErrBackdated).
func TestProcessLogsUnloggedFirst(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rec := &store.LegalRequest{Received: t0, Request: f.sign(t, f.request(nil)), Salt: bytes.Repeat([]byte{9}, 32),
		Jurisdiction: "us", Type: "subpoena", Outcome: "accepted", NondisclosureUntil: t0.Add(30 * 24 * time.Hour)}
	if err := f.st.AddLegalRequest(ctx, rec); err != nil {
		t.Fatal(err)
	}
	f.clock.t = t0.Add(3 * 24 * time.Hour) // the server was down
	res, err := f.desk.Process(ctx, f.sign(t, f.request(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Refusal != nil || res.LogIndex != 1 {
		t.Fatalf("Process: refusal %v, logged at %d; want accepted at index 1, after the unlogged one", res.Refusal, res.LogIndex)
	}
	if n, err := f.desk.Publish(ctx); err != nil || n != 0 {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	entries := f.entries(t)
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2", len(entries))
	}
	if e := f.requestEntry(t, 0); !e.Received.Equal(t0.Truncate(24 * time.Hour)) {
		t.Fatalf("entry 0 received %v, want the unlogged request's day", e.Received)
	}
	if _, err := requestlog.Check(entries, f.key.Verifier, requestlog.LegalRequest); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "legal")
	if _, err := LoadKey(dir); !errors.Is(err, ErrNoKey) {
		t.Fatalf("LoadKey before InitKey = %v, want ErrNoKey", err)
	}
	k, made, err := InitKey(dir, "")
	if err != nil || !made || !strings.HasPrefix(k.Signer.Name(), DefaultOriginPrefix) {
		t.Fatalf("InitKey: %v, %v, %v", k, made, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	again, made, err := InitKey(dir, k.Signer.Name())
	if err != nil || made || again.VerifierKey != k.VerifierKey {
		t.Fatalf("InitKey again: %v, %v", made, err)
	}
	if _, _, err := InitKey(dir, "other.example/legal"); !errors.Is(err, ErrOriginFixed) {
		t.Fatalf("another origin: %v", err)
	}
	msg := []byte("text\n")
	signed, _ := note.Sign(&note.Note{Text: string(msg)}, k.Signer)
	if _, err := note.Open(signed, note.VerifierList(k.Verifier)); err != nil || strings.Contains(k.String(), "PRIVATE") {
		t.Fatalf("derived verifier: %v", err)
	}

	tok, made, err := InitAdminToken(dir)
	if err != nil || !made {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if fi, _ := os.Stat(filepath.Join(dir, AdminTokenFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token mode %v", fi.Mode())
	}
	tok2, made, err := InitAdminToken(dir)
	if err != nil || made || !tok2.Check(strings.TrimSpace(string(b))) || tok.Check("") || tok.Check(strings.TrimSpace(string(b))+"x") {
		t.Fatalf("admin token: %v, %v", made, err)
	}

	trust := TrustFile(dir)
	if tr, err := trust(); err != nil || len(tr.Authorities()) != 0 {
		t.Fatalf("no file: %v, %v", tr, err)
	}
	if err := InitTrust(dir); err != nil {
		t.Fatal(err)
	}
	if tr, err := trust(); err != nil || len(tr.Authorities()) != 0 {
		t.Fatalf("template: %v, %v", tr, err)
	}
	os.WriteFile(filepath.Join(dir, AuthoritiesFile), []byte("us garbage\n"), 0o644)
	if _, err := trust(); !errors.Is(err, legal.ErrMalformedTrust) {
		t.Fatalf("garbage: %v", err)
	}
}
