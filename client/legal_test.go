package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
)

// fakeLegal serves the legal endpoints the way doorlessd does, over a
// real request log, in front of a real server without them.
type fakeLegal struct {
	t     *testing.T
	court note.Signer

	mu      sync.Mutex
	log     *requestlog.Log
	signer  note.Signer
	vkey    string
	notices []api.LegalNotice // what GET notices answers, whoever asks
}

func newFakeLegal(t *testing.T) *fakeLegal {
	f := &fakeLegal{t: t}
	f.court = newSigner(t, "court.example")
	f.reset(false)
	return f
}

func newSigner(t *testing.T, name string) note.Signer {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reset starts a new, empty log: under the same key, or a new key of the
// same origin.
func (f *fakeLegal) reset(sameKey bool) {
	signer, vkey := f.signer, f.vkey
	if !sameKey {
		skey, v, err := note.GenerateKey(rand.Reader, "doorless.test/legal")
		if err != nil {
			f.t.Fatal(err)
		}
		signer, _ = note.NewSigner(skey)
		vkey = v
	}
	l, err := requestlog.Open(context.Background(), filepath.Join(f.t.TempDir(), "log"), signer)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { l.Close() })
	f.mu.Lock()
	f.log, f.signer, f.vkey, f.notices = l, signer, vkey, nil
	f.mu.Unlock()
}

func (f *fakeLegal) wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET "+api.PathLegalKey, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(f.vkey + "\n"))
	})
	mux.HandleFunc(api.PathLegalLogPrefix, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		l := f.log
		f.mu.Unlock()
		http.StripPrefix(api.PathLegalLogPrefix, l.Handler()).ServeHTTP(w, r)
	})
	mux.HandleFunc("GET "+api.PathLegalNotices, func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := r.BasicAuth(); !ok {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(&api.LegalNoticesResponse{Notices: f.notices})
	})
	return mux
}

func (f *fakeLegal) append(e []byte) uint64 {
	f.t.Helper()
	f.mu.Lock()
	l := f.log
	f.mu.Unlock()
	i, err := l.Append(context.Background(), e)
	if err != nil {
		f.t.Fatal(err)
	}
	return i
}

// request logs a request naming targets, received now, accepted, and
// returns its index, signed note and salt.
func (f *fakeLegal) request(targets ...string) (uint64, []byte, [32]byte) {
	f.t.Helper()
	return f.requestAt(time.Now(), targets...)
}

// requestAt is request, received on received's day.
func (f *fakeLegal) requestAt(received time.Time, targets ...string) (uint64, []byte, [32]byte) {
	f.t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	nonce := make([]byte, 16)
	rand.Read(nonce)
	n, err := legal.SignRequest(&legal.Request{Authority: "court.example", Jurisdiction: "de", Type: legal.TypeCourtOrder,
		Basis: "s. 100a StPO", Case: "42 Js 1/26", Targets: targets, Categories: []string{legal.CategoryAccountCreated},
		Issued: now.Add(-48 * time.Hour), ValidUntil: now.Add(24 * time.Hour), NondisclosureUntil: now.Add(-time.Hour), Nonce: nonce}, f.court)
	if err != nil {
		f.t.Fatal(err)
	}
	var salt [32]byte
	rand.Read(salt[:])
	e, err := (&requestlog.RequestEntry{Commitment: requestlog.Commit(salt, n), Received: received,
		Jurisdiction: "de", Type: legal.TypeCourtOrder, Outcome: requestlog.OutcomeAccepted}).Encode()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.append(e), n, salt
}

// publish publishes a logged request and returns the notice the server
// lists for it.
func (f *fakeLegal) publish(idx uint64, n []byte, salt [32]byte) api.LegalNotice {
	f.t.Helper()
	e, err := (&requestlog.PublicationEntry{Request: idx, Salt: salt, Published: time.Now(), Note: n}).Encode()
	if err != nil {
		f.t.Fatal(err)
	}
	return api.LegalNotice{RequestIndex: idx, PublicationIndex: f.append(e), Request: n, Outcome: requestlog.OutcomeAccepted}
}

func (f *fakeLegal) setNotices(ns ...api.LegalNotice) {
	f.mu.Lock()
	f.notices = ns
	f.mu.Unlock()
}

// setRegistered sets when c's account was registered, as its profile
// keeps it.
func setRegistered(t *testing.T, c *Client, at time.Time) {
	t.Helper()
	if err := c.st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.SetRegistered(at) }); err != nil {
		t.Fatal(err)
	}
}

func TestLegalNotices(t *testing.T) {
	f := newFakeLegal(t)
	srv := newWrappedServer(t, nil, f.wrap)
	alice, _ := srv.register(t, "alice", Options{})
	ctx := ctxT(t)
	// alice registered days before the requests (received today) came:
	// they are hers, listed or not (TestLegalNoticesPreviousHolder).
	setRegistered(t, alice, time.Now().Add(-72*time.Hour))

	if ns, err := alice.LegalNotices(ctx); err != nil || len(ns) != 0 {
		t.Fatalf("LegalNotices of an empty log = %v, %v", ns, err)
	}
	ai, an, as := f.request("alice")
	bi, bn, bs := f.request("bob")
	f.request("alice") // not published yet
	forAlice := f.publish(ai, an, as)
	forBob := f.publish(bi, bn, bs)
	f.setNotices(forAlice)

	ns, err := alice.LegalNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || !ns[0].New || ns[0].PublicationIndex != forAlice.PublicationIndex || ns[0].RequestIndex != ai ||
		ns[0].Authority != "court.example" || ns[0].Case != "42 Js 1/26" || !bytes.Equal(ns[0].Request, an) ||
		ns[0].Outcome != requestlog.OutcomeAccepted {
		t.Fatalf("LegalNotices = %+v", ns)
	}
	// The new notice reaches Receive once, as an event.
	var got []*LegalNotice
	for _, ev := range receive(t, alice) {
		if n, ok := ev.(*LegalNotice); ok {
			got = append(got, n)
		}
	}
	if len(got) != 1 || got[0].PublicationIndex != forAlice.PublicationIndex || got[0].Jurisdiction != "de" {
		t.Fatalf("events = %+v", got)
	}
	if ns, err := alice.LegalNotices(ctx); err != nil || len(ns) != 1 || ns[0].New {
		t.Fatalf("LegalNotices again = %+v, %v", ns, err)
	}
	for _, ev := range receive(t, alice) {
		if _, ok := ev.(*LegalNotice); ok {
			t.Fatal("a notice reported twice")
		}
	}

	// A notice the server leaves out of its list is still found in the
	// log, where it cannot hide it.
	ci, cn, cs := f.request("alice", "carol")
	forBoth := f.publish(ci, cn, cs)
	f.setNotices(forAlice)
	if ns, err := alice.LegalNotices(ctx); err != nil || len(ns) != 2 || !ns[1].New || ns[1].PublicationIndex != forBoth.PublicationIndex ||
		ns[1].RegistrationDay {
		t.Fatalf("LegalNotices with one unlisted = %+v, %v", ns, err)
	}

	// A notice that is not alice's, or does not match the log, is refused.
	wrongOutcome := forAlice
	wrongOutcome.Outcome = requestlog.Refused("expired")
	wrongRequest := forAlice
	wrongRequest.RequestIndex = bi
	for name, n := range map[string]api.LegalNotice{"bob's": forBob, "another outcome": wrongOutcome, "another request": wrongRequest,
		"beyond the log": {PublicationIndex: 99, RequestIndex: 0, Request: an, Outcome: requestlog.OutcomeAccepted}} {
		f.setNotices(n)
		if _, err := alice.LegalNotices(ctx); !errors.Is(err, ErrBadLegalNotice) {
			t.Errorf("%s notice: LegalNotices = %v, want ErrBadLegalNotice", name, err)
		}
	}

	// The server swaps its log for another (a new key, the same origin):
	// the pinned key does not verify it.
	f.reset(false)
	if _, err := alice.LegalNotices(ctx); !errors.Is(err, requestlog.ErrBadCheckpoint) || !errors.Is(err, requestlog.ErrInvalidLog) {
		t.Fatalf("LegalNotices over a swapped log = %v, want ErrBadCheckpoint", err)
	}
}

// Once the log's key is pinned, the server cannot hide a published notice
// from its target by answering 404 (or failing) for its list of notices:
// the log is searched all the same; nor by answering 404 for the log
// itself: that is ErrLogGone, a verification failure the CLI warns of.
func TestLegalNoticesHiddenByNotFound(t *testing.T) {
	f := newFakeLegal(t)
	var hide atomic.Int32 // 1: the list 404, 2: the list 500, 3: the list and the log 404, 4: the checkpoint 404
	wrap := func(next http.Handler) http.Handler {
		inner := f.wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := hide.Load()
			switch {
			case h == 2 && r.URL.Path == api.PathLegalNotices:
				http.Error(w, "busy", http.StatusInternalServerError)
			case h != 0 && h != 2 && r.URL.Path == api.PathLegalNotices,
				h == 3 && strings.HasPrefix(r.URL.Path, api.PathLegalLogPrefix),
				h == 4 && r.URL.Path == api.PathLegalLogPrefix+"checkpoint":
				http.NotFound(w, r)
			default:
				inner.ServeHTTP(w, r)
			}
		})
	}
	srv := newWrappedServer(t, nil, wrap)
	alice, _ := srv.register(t, "alice", Options{})
	setRegistered(t, alice, time.Now().Add(-72*time.Hour))
	ctx := ctxT(t)
	if _, err := alice.LegalNotices(ctx); err != nil { // pins the key and a checkpoint
		t.Fatal(err)
	}
	ai, an, as := f.request("alice")
	forAlice := f.publish(ai, an, as)
	f.setNotices(forAlice)
	for _, h := range []int32{1, 2} {
		hide.Store(h)
		ns, err := alice.LegalNotices(ctx)
		if err != nil || len(ns) != 1 || ns[0].PublicationIndex != forAlice.PublicationIndex || ns[0].New != (h == 1) {
			t.Fatalf("list hidden (%d): LegalNotices = %s, %v; want alice's notice", h, summary(ns), err)
		}
	}
	for _, h := range []int32{3, 4} {
		hide.Store(h)
		if _, err := alice.LegalNotices(ctx); !errors.Is(err, requestlog.ErrLogGone) || !errors.Is(err, requestlog.ErrInvalidLog) {
			t.Fatalf("log hidden (%d): LegalNotices = %v, want ErrLogGone", h, err)
		}
	}

	// A key pinned, but no checkpoint verified yet: the log is expected
	// all the same.
	bob, _ := srv.register(t, "bob", Options{})
	hide.Store(3)
	if _, err := bob.legalLog(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.LegalNotices(ctx); !errors.Is(err, requestlog.ErrLogGone) {
		t.Fatalf("log hidden after pinning its key: LegalNotices = %v, want ErrLogGone", err)
	}
}

// summary describes notices in a line: publication index, then n (new)
// and r (registration day).
func summary(ns []LegalNotice) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "[%d", n.PublicationIndex)
		if n.New {
			b.WriteString(" n")
		}
		if n.RegistrationDay {
			b.WriteString(" r")
		}
		b.WriteString("]")
	}
	return b.String()
}

// A username registered again inherits nothing of its previous holder's
// notices: a publication the server does not list as this account's is
// skipped when its request was received before the day of registration,
// and shown with RegistrationDay when received that day. One the server
// lists is this account's whatever its day.
func TestLegalNoticesPreviousHolder(t *testing.T) {
	f := newFakeLegal(t)
	srv := newWrappedServer(t, nil, f.wrap)
	alice, _ := srv.register(t, "alice", Options{})
	ctx := ctxT(t)
	// alice registered at noon two days ago (UTC).
	today := time.Now().UTC().Truncate(24 * time.Hour)
	registered := today.AddDate(0, 0, -2).Add(12 * time.Hour)
	setRegistered(t, alice, registered)

	bi, bn, bs := f.requestAt(registered.AddDate(0, 0, -2), "alice") // the previous alice's
	si, sn, ss := f.requestAt(registered, "alice")                   // either's
	ai, an, as := f.requestAt(today, "alice")                        // hers
	before, sameDay, after := f.publish(bi, bn, bs), f.publish(si, sn, ss), f.publish(ai, an, as)

	f.setNotices(after)
	ns, err := alice.LegalNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0].PublicationIndex != sameDay.PublicationIndex || !ns[0].RegistrationDay ||
		ns[1].PublicationIndex != after.PublicationIndex || ns[1].RegistrationDay {
		t.Fatalf("LegalNotices = %s; want the registration day's (flagged) and the later one", summary(ns))
	}
	// What the server lists as alice's is hers.
	f.setNotices(before, sameDay, after)
	ns, err = alice.LegalNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 3 || ns[0].PublicationIndex != before.PublicationIndex || !ns[0].New || ns[0].RegistrationDay || ns[1].RegistrationDay {
		t.Fatalf("LegalNotices with all listed = %s", summary(ns))
	}

	// A device linked later knows when the account was registered.
	bob, _ := srv.register(t, "bob", Options{})
	setRegistered(t, bob, registered)
	laptop, _ := srv.link(t, bob, "laptop")
	var got time.Time
	if err := laptop.st.View(ctx, func(tx *profile.Tx) (err error) { got, err = tx.Registered(); return err }); err != nil || !got.Equal(registered) {
		t.Fatalf("the linked device's registration time = %v, %v; want %v", got, err, registered)
	}
}

// A server that rolls its log back is caught by the checkpoint the
// profile keeps.
func TestLegalNoticesRollback(t *testing.T) {
	f := newFakeLegal(t)
	srv := newWrappedServer(t, nil, f.wrap)
	alice, _ := srv.register(t, "alice", Options{})
	ctx := ctxT(t)
	f.request("alice")
	if _, err := alice.LegalNotices(ctx); err != nil {
		t.Fatal(err)
	}
	// The same key, a log without that entry.
	f.reset(true)
	if _, err := alice.LegalNotices(ctx); !errors.Is(err, requestlog.ErrRollback) {
		t.Fatalf("LegalNotices over a rolled back log = %v, want ErrRollback", err)
	}
	// Nor is a fork of the same size accepted.
	f.request("bob")
	if _, err := alice.LegalNotices(ctx); !errors.Is(err, requestlog.ErrInconsistent) {
		t.Fatalf("LegalNotices over a forked log = %v, want ErrInconsistent", err)
	}
}

func TestLegalNoticesWithoutLegalEndpoints(t *testing.T) {
	srv := newServer(t, nil)
	alice, _ := srv.register(t, "alice", Options{})
	if _, err := alice.LegalNotices(ctxT(t)); !errors.Is(err, ErrNoLegalLog) {
		t.Fatalf("LegalNotices = %v, want ErrNoLegalLog", err)
	}
}

// CheckLegalNotices looks at most once an hour, and finds a notice
// published in between at its next look.
func TestCheckLegalNoticesSchedule(t *testing.T) {
	f := newFakeLegal(t)
	srv := newWrappedServer(t, nil, f.wrap)
	alice, _ := srv.register(t, "alice", Options{})
	ctx := ctxT(t)
	now := time.Now()
	alice.now = func() time.Time { return now }

	if checked, err := alice.CheckLegalNotices(ctx); err != nil || !checked {
		t.Fatalf("first CheckLegalNotices = %v, %v; want a check", checked, err)
	}
	ai, an, as := f.request("alice")
	f.setNotices(f.publish(ai, an, as))
	now = now.Add(LegalCheckInterval - time.Minute)
	if checked, err := alice.CheckLegalNotices(ctx); err != nil || checked {
		t.Fatalf("CheckLegalNotices within the interval = %v, %v; want none", checked, err)
	}
	for _, ev := range receive(t, alice) {
		if _, ok := ev.(*LegalNotice); ok {
			t.Fatal("a notice found without a check")
		}
	}
	now = now.Add(2 * time.Minute)
	if checked, err := alice.CheckLegalNotices(ctx); err != nil || !checked {
		t.Fatalf("CheckLegalNotices after the interval = %v, %v; want a check", checked, err)
	}
	var got int
	for _, ev := range receive(t, alice) {
		if n, ok := ev.(*LegalNotice); ok && n.PublicationIndex > ai {
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d notices reached Receive after the check, want 1", got)
	}
	// A clock set back does not stop the checks for an hour more.
	now = now.Add(-3 * time.Hour)
	if checked, err := alice.CheckLegalNotices(ctx); err != nil || !checked {
		t.Fatalf("CheckLegalNotices after the clock went back = %v, %v; want a check", checked, err)
	}
}
