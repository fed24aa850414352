package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/frontdoor"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/store"
)

// legalEnv is a server with the front door over a test clock.
type legalEnv struct {
	*env
	desk  *frontdoor.Desk
	key   *frontdoor.Key
	token string
	court note.Signer
	now   time.Time // the desk's clock
}

func newLegalEnv(t *testing.T) *legalEnv {
	t.Helper()
	le := &legalEnv{now: time.Now().UTC().Truncate(time.Second)}
	dir := filepath.Join(t.TempDir(), "legal")
	key, _, err := frontdoor.InitKey(dir, "test.example/legal")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := frontdoor.InitAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, frontdoor.AdminTokenFile))
	le.token = strings.TrimSpace(string(b))
	skey, vkey, _ := legal.GenerateAuthorityKey(rand.Reader, "us.court.example")
	le.court, _ = note.NewSigner(skey)
	if err := os.WriteFile(filepath.Join(dir, frontdoor.AuthoritiesFile), []byte("us "+vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lg, err := requestlog.Open(t.Context(), filepath.Join(dir, frontdoor.LogDir), key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	le.key = key
	le.env = newEnv(t, func(cfg *Config) {
		le.desk, err = frontdoor.New(frontdoor.Config{Store: cfg.Store, Log: lg, Signer: key.Signer,
			Trust: frontdoor.TrustFile(dir), Now: func() time.Time { return le.now }})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Legal = &LegalConfig{Desk: le.desk, Log: lg.Handler(), Key: key.VerifierKey, AdminToken: tok}
	})
	return le
}

func (le *legalEnv) request(target string, mod func(*legal.Request)) []byte {
	le.t.Helper()
	nonce := make([]byte, 16)
	rand.Read(nonce)
	r := &legal.Request{Authority: le.court.Name(), Jurisdiction: "us", Type: legal.TypeCourtOrder,
		Basis: "a statute", Case: "case 1", Targets: []string{target},
		Categories: []string{legal.CategoryAccountCreated, legal.CategoryLastSeenDay},
		Issued:     le.now.Add(-time.Hour), ValidUntil: le.now.Add(24 * time.Hour),
		NondisclosureUntil: le.now.Add(48 * time.Hour), Nonce: nonce}
	if mod != nil {
		mod(r)
	}
	b, err := legal.SignRequest(r, le.court)
	if err != nil {
		le.t.Fatal(err)
	}
	return b
}

func (le *legalEnv) post(token string, body []byte) *http.Response {
	le.t.Helper()
	req, _ := http.NewRequest("POST", le.hs.URL+api.PathAdminLegalRequests, bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := le.hs.Client().Do(req)
	if err != nil {
		le.t.Fatal(err)
	}
	return resp
}

func (le *legalEnv) get(path string) (int, []byte) {
	le.t.Helper()
	resp, err := le.hs.Client().Get(le.hs.URL + path)
	if err != nil {
		le.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestLegalFrontDoor: the admin API answers an accepted request with a
// package the served key verifies, refuses (422) and logs the others; the
// served log verifies end to end; after the non-disclosure date the
// publication job publishes the request and its target, only, sees the
// notice; the report is served.
func TestLegalFrontDoor(t *testing.T) {
	le := newLegalEnv(t)
	alice := le.register("alice", 0, 0)
	bob := le.register("bob", 0, 0)

	le.fails(le.post("", le.request("alice", nil)), http.StatusUnauthorized, api.CodeUnauthorized)
	le.fails(le.post(le.token+"0", le.request("alice", nil)), http.StatusUnauthorized, api.CodeUnauthorized)

	resp := le.post(le.token, le.request("alice", nil))
	pkg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("accepted: %d %s", resp.StatusCode, pkg)
	}
	status, vkey := le.get(api.PathLegalKey)
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if status != http.StatusOK || err != nil {
		t.Fatalf("legal key: %d %q", status, vkey)
	}
	d, err := legal.OpenDisclosure(pkg, v)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := le.st.AccountByUsername(t.Context(), "alice")
	devs, _ := le.st.Devices(t.Context(), a.ID)
	if !d.Exists || d.Registered.Format(time.DateOnly) != a.Created.UTC().Format(time.DateOnly) ||
		store.Day(d.LastConnection) != devs[0].LastSeenDay {
		t.Fatalf("package %+v", d)
	}

	for target, reason := range map[string]string{"*": legal.ReasonWildcardTarget} {
		e := le.fails(le.post(le.token, le.request(target, nil)), http.StatusUnprocessableEntity, api.CodeRefused)
		if e.Message != reason {
			t.Errorf("refusal message %q, want %q", e.Message, reason)
		}
	}
	forged := bytes.Replace(le.request("alice", nil), []byte("alice"), []byte("bob"), 1)
	if e := le.fails(le.post(le.token, forged), http.StatusUnprocessableEntity, api.CodeRefused); e.Message != legal.ReasonBadSignature {
		t.Errorf("forged: %q", e.Message)
	}

	// The served log verifies, and holds the three requests.
	ver, err := requestlog.Fetch(t.Context(), le.hs.Client(), le.hs.URL+api.PathLegalLogPrefix, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, b := range ver.Entries {
		e, err := requestlog.ParseRequestEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		outcomes = append(outcomes, e.Outcome)
	}
	if want := []string{"accepted", "refused:wildcard_target", "refused:bad_signature"}; !slices.Equal(outcomes, want) {
		t.Fatalf("logged %q, want %q", outcomes, want)
	}

	// Notices: none yet; the job publishes at its start once the date has
	// passed.
	var ns api.LegalNoticesResponse
	le.ok(le.do(alice, "GET", api.PathLegalNotices, nil), &ns)
	if len(ns.Notices) != 0 {
		t.Fatalf("notices before publication: %+v", ns)
	}
	le.fails(le.do(nil, "GET", api.PathLegalNotices, nil), http.StatusUnauthorized, api.CodeUnauthorized)
	le.now = le.now.Add(49 * time.Hour)
	passed := make(chan struct{}, 1)
	le.srv.onLegalPublished = func() { passed <- struct{}{} }
	ctx, cancel := context.WithCancel(t.Context())
	done := le.srv.runLegal(ctx)
	<-passed
	cancel()
	<-done

	le.ok(le.do(alice, "GET", api.PathLegalNotices, nil), &ns)
	if len(ns.Notices) != 1 || ns.Notices[0].Outcome != "accepted" || ns.Notices[0].RequestIndex != 0 {
		t.Fatalf("alice's notices %+v", ns)
	}
	pubEntry, _ := requestlog.ParsePublicationEntry(mustEntries(t, le, v)[ns.Notices[0].PublicationIndex])
	if pubEntry == nil || !bytes.Equal(pubEntry.Note, ns.Notices[0].Request) {
		t.Fatal("the notice is not the published request")
	}
	var bobs api.LegalNoticesResponse
	le.ok(le.do(bob, "GET", api.PathLegalNotices, nil), &bobs)
	if len(bobs.Notices) != 0 {
		t.Fatalf("bob sees %+v", bobs)
	}

	// Reports.
	if status, _ := le.get(api.PathTransparencyReport); status != http.StatusNotFound {
		t.Fatalf("no report yet: %d", status)
	}
	period := requestlog.PeriodOf(le.now.Add(-49 * time.Hour))
	rep, err := le.desk.Report(t.Context(), period)
	if err != nil {
		t.Fatal(err)
	}
	entries := mustEntries(t, le, v)
	for _, path := range []string{api.PathTransparencyReport, api.PathTransparencyReport + "?period=" + period} {
		resp, err := le.hs.Client().Get(le.hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, rep.Signed) {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		// The header names the report's entry in the log.
		idx, err := strconv.ParseUint(resp.Header.Get(api.HeaderLogIndex), 10, 64)
		if err != nil || idx != rep.LogIndex {
			t.Fatalf("GET %s: %s %q, want %d", path, api.HeaderLogIndex, resp.Header.Get(api.HeaderLogIndex), rep.LogIndex)
		}
		if _, err := requestlog.CheckServedReport(entries, idx, b, period); err != nil {
			t.Fatal(err)
		}
	}
	if status, _ := le.get(api.PathTransparencyReport + "?period=2001-Q1"); status != http.StatusNotFound {
		t.Errorf("absent period: %d", status)
	}
	if status, _ := le.get(api.PathTransparencyReport + "?period=soon"); status != http.StatusBadRequest {
		t.Errorf("bad period: %d", status)
	}
	if _, err := requestlog.Check(mustEntries(t, le, v), v, requestlog.LegalRequest); err != nil {
		t.Fatal(err)
	}
}

func mustEntries(t *testing.T, le *legalEnv, v note.Verifier) [][]byte {
	t.Helper()
	ver, err := requestlog.Fetch(t.Context(), le.hs.Client(), le.hs.URL+api.PathLegalLogPrefix, v, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ver.Entries
}

// TestLegalDisabled: without a front door its endpoints are absent.
func TestLegalDisabled(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{api.PathLegalKey, api.PathTransparencyReport, api.PathLegalLogPrefix + "checkpoint"} {
		e.fails(e.do(nil, "GET", p, nil), http.StatusNotFound, api.CodeNotFound)
	}
}
