package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/sqlite"
	"github.com/doorless/doorless/kt"
)

const testOrigin = "doorless.test/kt"

// testTransparency makes fresh log keys, with the given auditors (note
// verifier keys).
func testTransparency(t testing.TB, auditors ...string) *TransparencyConfig {
	t.Helper()
	k, err := ktkeys.Generate(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return &TransparencyConfig{Log: k.LogConfig(), LogKey: k.LogKey, Auditors: auditors}
}

// testAuditor is an auditor's key pair and a replaying kt.Auditor.
type testAuditor struct {
	skey, vkey string
	signer     note.Signer
}

func newTestAuditor(t testing.TB, name string) *testAuditor {
	t.Helper()
	skey, vkey, err := kt.GenerateCosignerKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kt.NewCosigner(skey, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &testAuditor{skey: skey, vkey: vkey, signer: s}
}

// verifier is a client's verifier of e's log, requiring the auditors'
// cosignatures.
func (e *env) verifier(auditors ...*testAuditor) *kt.Verifier {
	e.t.Helper()
	lk, err := note.NewVerifier(e.kt.LogKey)
	if err != nil {
		e.t.Fatal(err)
	}
	v := &kt.Verifier{Origin: e.kt.Log.Origin, LogKey: lk, VRFKey: e.kt.Log.VRF.Public(), NeedCosignatures: len(auditors), MaxAuditLag: time.Hour}
	for _, a := range auditors {
		av, err := kt.NewCosignatureVerifier(a.vkey)
		if err != nil {
			e.t.Fatal(err)
		}
		v.Auditors = append(v.Auditors, av)
	}
	return v
}

// lookupProof asks, as u, for the lookup proof of username, knowing the
// log up to known.
func (e *env) lookupProof(u *user, username string, known uint64) *kt.LookupProof {
	e.t.Helper()
	var resp api.TransparencyLookupResponse
	e.ok(e.do(u, "GET", fmt.Sprintf("/v1/transparency/lookup/%s?known=%d", username, known), nil), &resp)
	var p kt.LookupProof
	if err := p.UnmarshalBinary(resp.Proof); err != nil {
		e.t.Fatalf("lookup proof: %v", err)
	}
	return &p
}

// verifyLookup looks username up as u and verifies the proof against head
// (nil: none), as a client does, and returns the username's entry.
func (e *env) verifyLookup(u *user, username string, head *kt.Head, v *kt.Verifier) (*kt.Head, kt.Result) {
	e.t.Helper()
	var known uint64
	if head != nil {
		known = head.Size
	}
	p := e.lookupProof(u, username, known)
	if len(p.Entries) != 1 {
		e.t.Fatalf("lookup of %s: %d entries, want 1", username, len(p.Entries))
	}
	h, res, err := v.Verify(head, [][]byte{kt.UsernameLabel(username)}, p, time.Now())
	if err != nil {
		e.t.Fatalf("lookup of %s does not verify: %v", username, err)
	}
	return h, res[0]
}

// wantAccountEntry checks a verified username entry: counter, account id,
// identity key and device list.
func wantAccountEntry(t *testing.T, r kt.Result, counter uint32, u *user, list []byte) {
	t.Helper()
	if !r.Present || r.Counter != counter {
		t.Fatalf("entry present %v counter %d, want counter %d", r.Present, r.Counter, counter)
	}
	v, err := kt.DecodeAccountValue(r.Value)
	if err != nil {
		t.Fatalf("entry value: %v", err)
	}
	if v.AccountID != u.id {
		t.Fatalf("entry names account %s, want %s", v.AccountID, u.id)
	}
	if !bytes.Equal(v.IdentityKey, u.identity.PublicKey().Bytes()) || !bytes.Equal(v.DeviceList, list) {
		t.Fatalf("entry holds another identity key or device list")
	}
}

// signedDevices returns u's current signed device list.
func (e *env) signedDevices(u *user) []byte {
	e.t.Helper()
	var devs api.DevicesResponse
	e.ok(e.do(u, "GET", api.PathDevices, nil), &devs)
	return devs.DeviceList
}

func (e *env) epochs() uint64 {
	e.t.Helper()
	n, err := e.st.EpochCount(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestRegistrationPublished: a registration is in the log before its
// answer: nothing is pending, and a lookup proves the username's entry (the
// account id, identity key and first device list).
func TestRegistrationPublished(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 1, 1)
	if ups, err := e.st.PendingUpdates(t.Context(), 10); err != nil || len(ups) != 0 {
		t.Fatalf("pending after the registration's answer: %+v, %v", ups, err)
	}
	bob := e.register("bob", 1, 1)
	v := e.verifier()
	head, res := e.verifyLookup(bob, "alice", nil, v)
	wantAccountEntry(t, res, 0, alice, e.signedDevices(alice))
	if head.Size != e.epochs() {
		t.Fatalf("head size %d, the store holds %d epochs", head.Size, e.epochs())
	}

	// An absent username: proven absent. Asking with the head kept
	// proves consistency with it.
	h2, res := e.verifyLookup(bob, "nobody", head, v)
	if res.Present {
		t.Fatalf("lookup of an absent username: %+v", res)
	}
	if h2.Size != head.Size {
		t.Fatalf("head moved from %d to %d without a change", head.Size, h2.Size)
	}
	// Lookups are for devices only.
	e.fails(e.do(nil, "GET", "/v1/transparency/lookup/alice", nil), http.StatusUnauthorized, api.CodeUnauthorized)
}

// TestAccountChangesMakeEpochs: linking a device, removing it and deleting
// the account each publish a new epoch before answering, with the
// username's counter one up each time; the deletion empties the entry, and
// a new account under the username takes the next counter.
func TestAccountChangesMakeEpochs(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 1, 1)
	bob := e.register("bob", 1, 1)
	v := e.verifier()
	head, res := e.verifyLookup(bob, "alice", nil, v)
	wantAccountEntry(t, res, 0, alice, e.signedDevices(alice))

	steps := []struct {
		name   string
		change func()
	}{
		{"link", func() { e.addDevice(alice) }},
		{"remove", func() { e.removeOK(alice, 2) }},
	}
	for i, step := range steps {
		before := e.epochs()
		step.change()
		if after := e.epochs(); after != before+1 {
			t.Fatalf("%s: %d epochs, want %d", step.name, after, before+1)
		}
		var res kt.Result
		head, res = e.verifyLookup(bob, "alice", head, v)
		wantAccountEntry(t, res, uint32(i+1), alice, e.signedDevices(alice))
	}

	before := e.epochs()
	resp := e.do(alice, "DELETE", api.PathAccountMe, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if after := e.epochs(); after != before+1 {
		t.Fatalf("delete: %d epochs, want %d", after, before+1)
	}
	// The username's entry is there, emptied; a client finds no account.
	p := e.lookupProof(bob, "alice", head.Size)
	if len(p.Entries) != 1 {
		t.Fatalf("lookup of a deleted username: %d entries, want 1", len(p.Entries))
	}
	_, deleted, err := v.Verify(head, [][]byte{kt.UsernameLabel("alice")}, p, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !deleted[0].Present || len(deleted[0].Value) != 0 || deleted[0].Counter != 3 {
		t.Fatalf("deleted username entry %+v, want present, empty, counter 3", deleted[0])
	}
	// The store holds the entry empty.
	en, err := e.st.TransparencyEntry(t.Context(), e.srv.kt.log.Index(kt.UsernameLabel("alice")))
	if err != nil || len(en.Value) != 0 || en.Leaf.Counter != 3 {
		t.Fatalf("deleted entry %+v, %v; want empty at counter 3", en, err)
	}
	// A new alice is a new account under the same username entry, at the
	// next counter.
	alice2 := e.register("alice", 1, 1)
	_, r := e.verifyLookup(bob, "alice", head, v)
	wantAccountEntry(t, r, 4, alice2, e.signedDevices(alice2))
}

// TestBundleProof: a bundle carries a proof of the username's entry that
// verifies, and proves the bundle's account id, identity key and device
// list; a bad known= is refused before any one-time key is taken.
func TestBundleProof(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 3, 3)
	bob := e.register("bob", 1, 1)
	v := e.verifier()
	var head *kt.Head
	for range 2 {
		var known uint64
		if head != nil {
			known = head.Size
		}
		b := e.bundle(bob, fmt.Sprintf("/v1/keys/alice/1?known=%d", known))
		var p kt.LookupProof
		if err := p.UnmarshalBinary(b.Transparency); err != nil {
			t.Fatalf("bundle proof: %v", err)
		}
		if len(p.Entries) != 1 {
			t.Fatalf("bundle proof of %d entries, want 1", len(p.Entries))
		}
		h, res, err := v.Verify(head, [][]byte{kt.UsernameLabel("alice")}, &p, time.Now())
		if err != nil {
			t.Fatalf("bundle proof does not verify: %v", err)
		}
		val, err := kt.DecodeAccountValue(res[0].Value)
		if err != nil || val.AccountID != alice.id || b.AccountID != alice.id ||
			!bytes.Equal(val.IdentityKey, b.IdentityKey) || !bytes.Equal(val.DeviceList, b.DeviceList) {
			t.Fatalf("the proof does not prove the bundle's account, identity key and device list (%v)", err)
		}
		head = h
		e.addDevice(alice) // the second round sees a new epoch
	}

	before := e.status(alice)
	for _, q := range []string{"known=x", "known=-1", "known=1.5", "known=18446744073709551616", "known=1000000"} {
		er := e.fails(e.do(bob, "GET", "/v1/keys/alice/1?"+q, nil), http.StatusBadRequest, api.CodeBadRequest)
		if !strings.Contains(er.Message, "known") {
			t.Errorf("%s: message %q does not name the parameter", q, er.Message)
		}
		e.fails(e.do(bob, "GET", "/v1/transparency/lookup/alice?"+q, nil), http.StatusBadRequest, api.CodeBadRequest)
	}
	if after := e.status(alice); after != before {
		t.Fatalf("refused bundle requests took keys: %+v, then %+v", before, after)
	}
	e.fails(e.do(bob, "GET", "/v1/transparency/lookup/Not-A-Name", nil), http.StatusBadRequest, api.CodeBadRequest)
}

// auditPage fetches one audit page.
func (e *env) auditPage(from string) (*api.TransparencyAuditResponse, *http.Response) {
	e.t.Helper()
	resp := e.do(nil, "GET", "/v1/transparency/audit?from="+url.QueryEscape(from), nil)
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	var a api.TransparencyAuditResponse
	e.ok(resp, &a)
	return &a, nil
}

// checkpoint fetches the newest checkpoint.
func (e *env) checkpoint() []byte {
	e.t.Helper()
	resp := e.do(nil, "GET", api.PathTransparencyCheckpoint, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		e.t.Fatalf("checkpoint: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return b
}

// replay has an auditor follow the whole log through the audit endpoint,
// from its own head on, one page of at most pageSize epochs at a time.
func (e *env) replay(a *kt.Auditor) (pages int) {
	e.t.Helper()
	for {
		page, bad := e.auditPage(fmt.Sprint(a.Head().Size))
		if bad != nil {
			b, _ := io.ReadAll(bad.Body)
			e.t.Fatalf("audit: %d %s", bad.StatusCode, b)
		}
		if page.From != a.Head().Size {
			e.t.Fatalf("audit page from %d, asked %d", page.From, a.Head().Size)
		}
		if len(page.Epochs) == 0 {
			return pages
		}
		pages++
		for _, b := range page.Epochs {
			var c kt.EpochChanges
			if err := c.UnmarshalBinary(b); err != nil {
				e.t.Fatalf("audit epoch: %v", err)
			}
			if err := a.Apply(&c); err != nil {
				e.t.Fatalf("audit epoch %d: %v", a.Head().Size, err)
			}
		}
	}
}

// TestAuditAndCosign: an auditor replays the log page by page and cosigns
// its checkpoint; the server keeps the cosignature, hands it out with the
// checkpoint and in lookups (which then satisfy a client that requires
// it), and refuses cosignatures by other keys, of other checkpoints, and
// garbage.
func TestAuditAndCosign(t *testing.T) {
	aud := newTestAuditor(t, "auditor.test")
	e := newEnv(t, func(c *Config) { c.Transparency = testTransparency(t, aud.vkey) })
	var users []*user
	for i := range 3 {
		users = append(users, e.register(fmt.Sprint("user", i), 1, 1))
	}
	// More epochs than one page holds: empty ones, straight to the log.
	extra := api.MaxAuditEpochs + 5
	for range extra {
		if err := e.srv.appendEpoch(t.Context(), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	n := e.epochs()
	lk, _ := note.NewVerifier(e.kt.LogKey)
	a := kt.NewAuditor(testOrigin, lk)
	if pages := e.replay(a); pages != 2 {
		t.Fatalf("%d epochs in %d pages, want 2 of at most %d", n, pages, api.MaxAuditEpochs)
	}
	if a.Head().Size != n {
		t.Fatalf("the auditor replayed %d epochs of %d", a.Head().Size, n)
	}
	// Paging bounds: the end is an empty page; past it, a clear 400.
	for _, from := range []string{fmt.Sprint(n + 1), "18446744073709551615", "99999999999999999999", "-1", "x", "0x10"} {
		_, bad := e.auditPage(from)
		if bad == nil {
			t.Fatalf("from=%s answered 200", from)
		}
		er := e.fails(bad, http.StatusBadRequest, api.CodeBadRequest)
		if !strings.Contains(er.Message, "from") {
			t.Errorf("from=%s: message %q does not name the parameter", from, er.Message)
		}
	}

	cp := e.checkpoint()
	cosigned, err := a.Cosign(cp, aud.signer, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	post := func(body []byte, ctype string) *http.Response {
		req, _ := http.NewRequest("POST", e.hs.URL+api.PathTransparencyCosign, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Refused: another key, another checkpoint, garbage, too big, not text.
	other := newTestAuditor(t, "other.test")
	byOther, err := a.Cosign(cp, other.signer, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.fails(post(byOther, "text/plain"), http.StatusForbidden, api.CodeForbidden)
	forged := (&kt.Checkpoint{Origin: testOrigin, Size: n, Root: kt.Hash{1, 2, 3}}).Marshal()
	forgedNote, err := note.Sign(&note.Note{Text: string(forged)}, aud.signer)
	if err != nil {
		t.Fatal(err)
	}
	e.fails(post(forgedNote, "text/plain"), http.StatusConflict, api.CodeBadRequest)
	ahead := (&kt.Checkpoint{Origin: testOrigin, Size: n + 7, Root: kt.Hash{1}}).Marshal()
	aheadNote, _ := note.Sign(&note.Note{Text: string(ahead)}, aud.signer)
	e.fails(post(aheadNote, "text/plain"), http.StatusConflict, api.CodeBadRequest)
	e.fails(post([]byte("hello\n"), "text/plain"), http.StatusBadRequest, api.CodeBadRequest)
	e.fails(post(nil, "text/plain"), http.StatusBadRequest, api.CodeBadRequest)
	e.fails(post(bytes.Repeat([]byte("a"), kt.MaxCheckpointSize+1), "text/plain"), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	e.fails(post(cosigned, "application/json"), http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia)
	if cs, err := e.st.Cosignatures(t.Context()); err != nil || len(cs) != 0 {
		t.Fatalf("refused cosignatures were stored: %+v, %v", cs, err)
	}

	// Accepted.
	resp := post(cosigned, "text/plain; charset=utf-8")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("cosignature: %d", resp.StatusCode)
	}
	cs, err := e.st.Cosignatures(t.Context())
	if err != nil || len(cs) != 1 || cs[0].Size != n {
		t.Fatalf("stored cosignatures %+v, %v", cs, err)
	}
	av, _ := kt.NewCosignatureVerifier(aud.vkey)
	if _, err := note.Open(e.checkpoint(), note.VerifierList(lk, av)); err != nil {
		t.Fatalf("the checkpoint does not carry the cosignature: %v", err)
	}
	// A client that requires the auditor: verifies now, also after a new
	// epoch (the cosigned checkpoint comes as an audited one).
	v := e.verifier(aud)
	head, _ := e.verifyLookup(users[0], "user1", nil, v)
	e.register("late", 1, 1)
	e.verifyLookup(users[0], "user1", head, v)
	p := e.lookupProof(users[0], "user1", 0)
	labels := [][]byte{kt.UsernameLabel("user1")}
	if _, _, err := e.verifier(aud, other).Verify(nil, labels, p, time.Now()); !errors.Is(err, kt.ErrMissingCosignature) {
		t.Fatalf("a client requiring an auditor that never cosigned: %v", err)
	}
}

// TestTransparencyRestart: a server restarted on the same store restores
// the log, its cosignatures and goes on from it: a client's head stays
// consistent.
func TestTransparencyRestart(t *testing.T) {
	dir := t.TempDir()
	aud := newTestAuditor(t, "auditor.test")
	cfg := testTransparency(t, aud.vkey)
	mod := func(c *Config) { c.Transparency = cfg }
	e := newEnvIn(t, dir, mod)
	alice := e.register("alice", 1, 1)
	bob := e.register("bob", 1, 1)
	lk, _ := note.NewVerifier(cfg.LogKey)
	a := kt.NewAuditor(testOrigin, lk)
	e.replay(a)
	cosigned, err := a.Cosign(e.checkpoint(), aud.signer, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", e.hs.URL+api.PathTransparencyCosign, bytes.NewReader(cosigned))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := e.hs.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("cosign: %v %v", resp, err)
	}
	resp.Body.Close()
	v := e.verifier(aud)
	head, _ := e.verifyLookup(bob, "alice", nil, v)
	size := e.epochs()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.Shutdown(ctx)
	e.stopSequencer()
	e.hs.Close()
	e.st.Close()

	e2 := newEnvIn(t, dir, mod)
	if got := e2.srv.kt.log.Size(); got != size {
		t.Fatalf("restored log of %d epochs, want %d", got, size)
	}
	h2, res := e2.verifyLookup(bob, "alice", head, v) // the cosignature came back too
	wantAccountEntry(t, res, 0, alice, e2.signedDevices(alice))
	e2.addDevice(alice)
	_, res = e2.verifyLookup(bob, "alice", h2, v)
	wantAccountEntry(t, res, 1, alice, e2.signedDevices(alice))
}

// TestSequencerPublishesStrayUpdates: a change made in the store directly
// (from before a restart, a migration) is published at the sequencer's
// start, without a request waiting for it; Flush waits for it.
func TestSequencerPublishesStrayUpdates(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 1, 1)
	id := newIdentity(t)
	acct := &store.Account{ID: api.NewUUID(), Username: "stray", IdentityKey: id.PublicKey().Bytes(), Created: time.Now()}
	dev := &store.Device{AccountID: acct.ID, ID: 1, RegistrationID: 5, CredentialHash: make([]byte, 32), Created: time.Now()}
	list := signList(t, id, 1, 1)
	if err := e.st.CreateAccount(t.Context(), acct, dev, nil, &store.DeviceList{Version: 1, Signed: list}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, res := e.verifyLookup(bob, "stray", nil, e.verifier())
	if v, err := kt.DecodeAccountValue(res.Value); err != nil || v.AccountID != acct.ID || !bytes.Equal(v.DeviceList, list) {
		t.Fatalf("stray account's entry: %+v, %v", res, err)
	}
	if _, err := devicelist.Verify(id.PublicKey(), list); err != nil {
		t.Fatal(err)
	}
}

// recordingStore records the entries of every epoch it stores.
type recordingStore struct {
	store.Store
	mu     sync.Mutex
	epochs [][]kt.Entry
}

func (s *recordingStore) AppendEpoch(ctx context.Context, e *store.Epoch, entries []kt.Entry, published []int64) error {
	err := s.Store.AppendEpoch(ctx, e, entries, published)
	if err == nil {
		s.mu.Lock()
		s.epochs = append(s.epochs, slices.Clone(entries))
		s.mu.Unlock()
	}
	return err
}

// TestSequencerPublishesEveryVersion: changes made close together (here
// in the store directly, before the sequencer looks) are published in
// order, each device list in an epoch of its own at the next counter, with
// the value its own change left; another username's change is not held
// back; the log keeps its rules (an auditor replays it).
func TestSequencerPublishesEveryVersion(t *testing.T) {
	var rs *recordingStore
	e := newEnv(t, func(c *Config) {
		rs = &recordingStore{Store: c.Store}
		c.Store = rs
	})
	bob := e.register("bob", 1, 1)
	ctx := t.Context()
	now := time.Now()
	id := newIdentity(t)
	lists := [][]byte{signList(t, id, 1, 1), signList(t, id, 2, 1, 2), signList(t, id, 3, 1)}
	alice := &user{name: "alice", id: api.NewUUID(), identity: id}
	acct := &store.Account{ID: alice.id, Username: "alice", IdentityKey: id.PublicKey().Bytes(), Created: now}
	newDev := func(accountID string, n uint32) *store.Device {
		return &store.Device{AccountID: accountID, ID: n, RegistrationID: 5, CredentialHash: make([]byte, 32), Created: now}
	}
	rs.mu.Lock()
	start := len(rs.epochs)
	rs.mu.Unlock()
	if err := e.st.CreateAccount(ctx, acct, newDev(acct.ID, 1), nil, &store.DeviceList{Version: 1, Signed: lists[0]}, nil); err != nil {
		t.Fatal(err)
	}
	carolID := newIdentity(t)
	carol := &store.Account{ID: api.NewUUID(), Username: "carol", IdentityKey: carolID.PublicKey().Bytes(), Created: now}
	if err := e.st.CreateAccount(ctx, carol, newDev(carol.ID, 1), nil, &store.DeviceList{Version: 1, Signed: signList(t, carolID, 1, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	tok := &store.LinkToken{TokenHash: []byte("alice's token"), AccountID: acct.ID, Expires: now.Add(time.Hour)}
	if err := e.st.CreateLinkToken(ctx, tok, now, api.MaxDevicesPerAccount, 10); err != nil {
		t.Fatal(err)
	}
	if err := e.st.LinkDevice(ctx, tok.TokenHash, newDev(acct.ID, tok.DeviceID), nil, &store.DeviceList{Version: 2, Signed: lists[1]}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.st.RemoveDevice(ctx, acct.ID, tok.DeviceID, &store.DeviceList{Version: 3, Signed: lists[2]}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ups, err := e.st.PendingUpdates(ctx, 10); err != nil || len(ups) != 0 {
		t.Fatalf("pending after Flush: %+v, %v", ups, err)
	}

	// Where each username's entry changed, and to what.
	type change struct {
		epoch   int
		counter uint32
		value   *kt.AccountValue
	}
	changes := map[string][]change{}
	rs.mu.Lock()
	for n, entries := range rs.epochs[start:] {
		seen := map[string]bool{}
		for _, en := range entries {
			name := string(en.Label[1:])
			if seen[name] {
				t.Errorf("epoch %d changes %s twice", n, name)
			}
			seen[name] = true
			v, err := kt.DecodeAccountValue(en.Value)
			if err != nil {
				t.Fatalf("epoch %d: %s's value: %v", n, name, err)
			}
			changes[name] = append(changes[name], change{n, en.Leaf.Counter, v})
		}
	}
	rs.mu.Unlock()
	got := changes["alice"]
	if len(got) != len(lists) {
		t.Fatalf("alice's entry changed %d times, want %d (one per device list)", len(got), len(lists))
	}
	for k, c := range got {
		if c.counter != uint32(k) || c.value.AccountID != acct.ID || !bytes.Equal(c.value.DeviceList, lists[k]) {
			t.Errorf("alice's change %d: counter %d, list %d; want counter %d and version %d", k, c.counter,
				slices.IndexFunc(lists, func(l []byte) bool { return bytes.Equal(l, c.value.DeviceList) })+1, k, k+1)
		}
		if k > 0 && c.epoch != got[k-1].epoch+1 {
			t.Errorf("alice's change %d in epoch %d, the one before in %d: want consecutive epochs", k, c.epoch, got[k-1].epoch)
		}
	}
	if c := changes["carol"]; len(c) != 1 || c[0].epoch != got[0].epoch {
		t.Errorf("carol's registration published in %+v, want with alice's first, in epoch %d", c, got[0].epoch)
	}

	v := e.verifier()
	_, res := e.verifyLookup(bob, "alice", nil, v)
	wantAccountEntry(t, res, 2, alice, lists[2])
	lk, _ := note.NewVerifier(e.kt.LogKey)
	e.replay(kt.NewAuditor(testOrigin, lk))
}

// TestEpochUpdates: an epoch takes the first pending update of each
// username, in order, with its own value; a deletion publishes an empty
// value.
func TestEpochUpdates(t *testing.T) {
	ups := []store.PendingUpdate{
		{Seq: 1, Username: "alice", AccountID: "a", IdentityKey: []byte{5, 1}, DeviceList: []byte("a1")},
		{Seq: 2, Username: "bob", AccountID: "b", IdentityKey: []byte{5, 2}, DeviceList: []byte("b1")},
		{Seq: 4, Username: "alice", AccountID: "a", IdentityKey: []byte{5, 1}, DeviceList: []byte("a2")},
		{Seq: 5, Username: "carol"},
		{Seq: 7, Username: "alice"},
		{Seq: 8, Username: "dave", AccountID: "d", IdentityKey: []byte{5, 4}},
	}
	updates, seqs := epochUpdates(ups)
	if !slices.Equal(seqs, []int64{1, 2, 5, 8}) {
		t.Fatalf("seqs %v, want 1 2 5 8", seqs)
	}
	want := []struct {
		name, account, list string
		del                 bool // an empty value
	}{{"alice", "a", "a1", false}, {"bob", "b", "b1", false}, {"carol", "", "", true}, {"dave", "d", "", false}}
	for k, w := range want {
		u := updates[k]
		if !bytes.Equal(u.Label, kt.UsernameLabel(w.name)) {
			t.Fatalf("update %d for %q, want %s", k, u.Label, w.name)
		}
		if w.del {
			if len(u.Value) != 0 {
				t.Errorf("%s's deletion publishes %x", w.name, u.Value)
			}
			continue
		}
		v, err := kt.DecodeAccountValue(u.Value)
		if err != nil || string(v.DeviceList) != w.list || v.AccountID != w.account {
			t.Errorf("%s's value %+v, %v; want account %s, list %q", w.name, v, err, w.account, w.list)
		}
	}
}

// TestTransparencyKeysAndMetrics: the keys a client pins, and the metrics.
func TestTransparencyKeysAndMetrics(t *testing.T) {
	aud := newTestAuditor(t, "auditor.test")
	e := newEnv(t, func(c *Config) { c.Transparency = testTransparency(t, aud.vkey) })
	var k api.TransparencyKeysResponse
	e.ok(e.do(nil, "GET", api.PathTransparencyKeys, nil), &k)
	if k.Origin != testOrigin || k.LogKey != e.kt.LogKey || !bytes.Equal(k.VRFKey, e.kt.Log.VRF.Public().Bytes()) ||
		len(k.Auditors) != 1 || k.Auditors[0] != aud.vkey {
		t.Fatalf("keys %+v", k)
	}
	e.register("alice", 1, 1)
	m := e.metrics()
	for _, want := range []string{"doorless_transparency_epochs 2", "doorless_transparency_entries 1", "doorless_transparency_pending_updates 0", "doorless_transparency_updates_total 1"} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestTransparencyDisabled: without a configuration the endpoints answer
// 404, bundles carry no proof, and changes do not wait.
func TestTransparencyDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Transparency = nil })
	alice := e.register("alice", 1, 1)
	bob := e.register("bob", 1, 1)
	if b := e.bundle(bob, "/v1/keys/alice/1?known=zzz"); b.Transparency != nil {
		t.Fatal("a bundle carries a proof without key transparency")
	}
	for _, path := range []string{api.PathTransparencyKeys, api.PathTransparencyCheckpoint, api.PathTransparencyAudit, "/v1/transparency/lookup/alice"} {
		e.fails(e.do(alice, "GET", path, nil), http.StatusNotFound, api.CodeNotFound)
	}
	if err := e.srv.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestConfigRefusesMismatchedLogKey: the log key handed to clients must be
// the signer's.
func TestConfigRefusesMismatchedLogKey(t *testing.T) {
	a, b := testTransparency(t), testTransparency(t)
	a.LogKey = b.LogKey
	e := newEnv(t, nil)
	if _, err := New(Config{Store: e.st, Transparency: a}); err == nil {
		t.Fatal("New accepted another log's verifier key")
	}
	c := testTransparency(t, "not a key")
	if _, err := New(Config{Store: e.st, Transparency: c}); err == nil {
		t.Fatal("New accepted a malformed auditor key")
	}
}

// failingStore fails AppendEpoch as many times as fails says.
type failingStore struct {
	store.Store
	fails atomic.Int32
}

var errInjected = errors.New("injected store failure")

func (s *failingStore) AppendEpoch(ctx context.Context, e *store.Epoch, entries []kt.Entry, published []int64) error {
	if s.fails.Add(-1) >= 0 {
		return errInjected
	}
	return s.Store.AppendEpoch(ctx, e, entries, published)
}

// TestEpochStoreFailureReverts: an epoch the store refuses is taken back
// from the log and made again; the request waits for it, and clients see a
// log with no trace of the failed attempt.
func TestEpochStoreFailureReverts(t *testing.T) {
	var fs *failingStore
	e := newEnv(t, func(c *Config) {
		fs = &failingStore{Store: c.Store}
		c.Store = fs
	})
	bob := e.register("bob", 1, 1)
	v := e.verifier()
	head, _ := e.verifyLookup(bob, "bob", nil, v)
	fs.fails.Store(3)
	alice := e.register("alice", 1, 1)
	if fs.fails.Load() >= 0 {
		t.Fatalf("the store failed %d times fewer than asked", fs.fails.Load()+1)
	}
	if e.epochs() != head.Size+1 || e.srv.kt.log.Size() != head.Size+1 {
		t.Fatalf("after three failures and a success: %d epochs stored, %d in the log; want %d", e.epochs(), e.srv.kt.log.Size(), head.Size+1)
	}
	_, res := e.verifyLookup(bob, "alice", head, v)
	wantAccountEntry(t, res, 0, alice, e.signedDevices(alice))
	if m := e.metrics(); !strings.Contains(m, "doorless_transparency_epoch_failures_total 3\n") {
		t.Errorf("metrics do not count the 3 failures")
	}
	// The log in memory is the stored one: a restart restores it.
	if _, err := newKT(t.Context(), *e.kt, e.st); err != nil {
		t.Fatalf("the stored log does not restore: %v", err)
	}
}

// FuzzTransparencyInput: whatever the query parameters and the body of a
// cosignature, the transparency endpoints (and the bundle's known=) answer
// a client error or success, never a server error, and the log does not
// move.
func FuzzTransparencyInput(f *testing.F) {
	st, err := sqlite.Open(filepath.Join(f.TempDir(), "doorless.db"))
	if err != nil {
		f.Fatal(err)
	}
	aud := newTestAuditor(f, "auditor.test")
	cfg := testTransparency(f, aud.vkey)
	var auth string
	srv, err := New(Config{Store: st, IPRate: RateLimit{Rate: -1}, AccountRate: RateLimit{Rate: -1}, Transparency: cfg})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := srv.startSequencer(ctx)
	f.Cleanup(func() { cancel(); <-done; st.Close() })
	h := srv.Handler()
	serve := func(method, target, ctype string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	reg, _ := json.Marshal(registerRequest(f, "alice", newIdentity(f), 0, 0))
	w := serve("POST", api.PathAccounts, "application/json", reg)
	var rr api.RegisterResponse
	if err := json.Unmarshal(w.Body.Bytes(), &rr); err != nil || w.Code != http.StatusOK {
		f.Fatalf("register: %d %s", w.Code, w.Body)
	}
	auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(api.Login(rr.AccountID, rr.DeviceID)+":"+rr.Password))
	cp := serve("GET", api.PathTransparencyCheckpoint, "", nil).Body.Bytes()
	lk, _ := note.NewVerifier(cfg.LogKey)
	a := kt.NewAuditor(testOrigin, lk)
	es, _ := st.Epochs(ctx, 0, 10)
	for _, e := range es {
		var c kt.EpochChanges
		if err := c.UnmarshalBinary(e.Changes); err != nil {
			f.Fatal(err)
		}
		if err := a.Apply(&c); err != nil {
			f.Fatal(err)
		}
	}
	cosigned, err := a.Cosign(cp, aud.signer, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	size := srv.kt.log.Size()
	f.Add("0", "0", cosigned)
	f.Add("", "", cp)
	f.Add("1", "2", []byte("garbage\n\n— x y\n"))
	f.Add("18446744073709551615", "18446744073709551616", []byte{})
	f.Add("-1", "+1", bytes.Repeat([]byte("a"), 9000))
	f.Add("0x1", " 1", cosigned[:len(cosigned)-3])
	f.Fuzz(func(t *testing.T, from, known string, body []byte) {
		for _, r := range []struct{ method, target, ctype string }{
			{"GET", api.PathTransparencyAudit + "?from=" + url.QueryEscape(from), ""},
			{"GET", "/v1/transparency/lookup/alice?known=" + url.QueryEscape(known), ""},
			{"GET", "/v1/keys/alice/1?known=" + url.QueryEscape(known), ""},
			{"POST", api.PathTransparencyCosign, "text/plain"},
		} {
			var b []byte
			if r.method == "POST" {
				b = body
			}
			if w := serve(r.method, r.target, r.ctype, b); w.Code >= 500 {
				t.Fatalf("%s %s: %d %s", r.method, r.target, w.Code, w.Body)
			}
		}
		if srv.kt.log.Size() != size {
			t.Fatalf("the log moved from %d to %d", size, srv.kt.log.Size())
		}
	})
}

// TestEmptyEpochs: with no change to publish, the sequencer makes an empty
// epoch (the same prefix root, a new timestamp) every EpochInterval, so
// that clients can require a recent one; a change in between moves the
// next empty epoch to an interval after it. An auditor replays the empty
// epochs like any other, and the metrics show the log's freshness.
func TestEmptyEpochs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := sqlite.Open(filepath.Join(t.TempDir(), "doorless.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		cfg := testTransparency(t) // EpochInterval: the default
		srv, err := New(Config{Store: st, Transparency: cfg})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		done := srv.startSequencer(ctx)
		defer func() { cancel(); <-done }()

		heads := func() []kt.Epoch {
			t.Helper()
			synctest.Wait()
			h, err := st.EpochHeads(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		want := func(at ...time.Duration) []kt.Epoch {
			t.Helper()
			h := heads()
			if len(h) != len(at) {
				t.Fatalf("%v in: %d epochs, want %d", time.Since(start), len(h), len(at))
			}
			for i, d := range at {
				if got := time.UnixMilli(h[i].Timestamp).Sub(start); got != d {
					t.Fatalf("epoch %d made at %v, want %v", i, got, d)
				}
			}
			return h
		}
		want(0) // the first, empty
		time.Sleep(DefaultEpochInterval - time.Second)
		want(0)
		time.Sleep(time.Second)
		h := want(0, DefaultEpochInterval)
		if h[1].PrefixRoot != h[0].PrefixRoot {
			t.Fatal("an empty epoch changed the prefix root")
		}

		// A change 15 minutes in: its epoch, then the next empty one 10
		// minutes after it, not at 20.
		time.Sleep(5 * time.Minute)
		id := newIdentity(t)
		acct := &store.Account{ID: api.NewUUID(), Username: "alice", IdentityKey: id.PublicKey().Bytes(), Created: time.Now()}
		dev := &store.Device{AccountID: acct.ID, ID: 1, RegistrationID: 5, CredentialHash: make([]byte, 32), Created: time.Now()}
		if err := st.CreateAccount(ctx, acct, dev, nil, &store.DeviceList{Version: 1, Signed: signList(t, id, 1, 1)}, nil); err != nil {
			t.Fatal(err)
		}
		if err := srv.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultEpochInterval - time.Second)
		want(0, 10*time.Minute, 15*time.Minute)
		time.Sleep(time.Second)
		h = want(0, 10*time.Minute, 15*time.Minute, 25*time.Minute)
		if h[3].PrefixRoot != h[2].PrefixRoot || h[2].PrefixRoot == h[1].PrefixRoot {
			t.Fatal("prefix roots: the change's epoch should change it, the empty one after not")
		}

		// An auditor replays them all.
		a := kt.NewAuditor(testOrigin, mustVerifier(t, cfg.LogKey))
		es, err := st.Epochs(context.Background(), 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			var c kt.EpochChanges
			if err := c.UnmarshalBinary(e.Changes); err != nil {
				t.Fatal(err)
			}
			if err := a.Apply(&c); err != nil {
				t.Fatalf("audit of epoch %d: %v", e.Number, err)
			}
		}
		if a.Head().Size != 4 {
			t.Fatalf("auditor at size %d, want 4", a.Head().Size)
		}
		if _, err := a.Cosign(srv.kt.log.Checkpoint(), newTestAuditor(t, "auditor.test").signer, time.Now()); err != nil {
			t.Fatalf("cosigning after empty epochs: %v", err)
		}

		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", api.PathMetrics, nil))
		m := rec.Body.String()
		for _, w := range []string{
			"doorless_transparency_epochs 4",
			"doorless_transparency_empty_epochs_total 3",
			fmt.Sprintf("doorless_transparency_last_epoch_timestamp_seconds %g", float64(start.Add(25*time.Minute).UnixMilli())/1000),
		} {
			if !strings.Contains(m, w+"\n") {
				t.Errorf("metrics lack %q", w)
			}
		}
	})
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
