package cli

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/client"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/frontdoor"
	"github.com/doorless/doorless/internal/legal"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/server"
)

// legalServer is a server with its front door, whose desk's clock the
// test moves.
type legalServer struct {
	url   string
	desk  *frontdoor.Desk
	key   *frontdoor.Key
	court note.Signer

	mu  sync.Mutex
	now time.Time
}

func (ls *legalServer) clock() time.Time {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.now
}

func (ls *legalServer) advance(d time.Duration) {
	ls.mu.Lock()
	ls.now = ls.now.Add(d)
	ls.mu.Unlock()
}

func newLegalServer(t *testing.T) *legalServer {
	t.Helper()
	ls := &legalServer{now: time.Now().UTC().Truncate(time.Second)}
	dir := filepath.Join(t.TempDir(), "legal")
	key, _, err := frontdoor.InitKey(dir, "doorless.test/legal")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := frontdoor.InitAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := legal.GenerateAuthorityKey(rand.Reader, "us.court.example")
	if err != nil {
		t.Fatal(err)
	}
	ls.court, _ = note.NewSigner(skey)
	if err := os.WriteFile(filepath.Join(dir, frontdoor.AuthoritiesFile), []byte("us "+vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lg, err := requestlog.Open(context.Background(), filepath.Join(dir, frontdoor.LogDir), key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	ls.key = key
	ls.url, _ = testServerWith(t, func(cfg *server.Config) {
		ls.desk, err = frontdoor.New(frontdoor.Config{Store: cfg.Store, Log: lg, Signer: key.Signer,
			Trust: frontdoor.TrustFile(dir), Now: ls.clock})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Legal = &server.LegalConfig{Desk: ls.desk, Log: lg.Handler(), Key: key.VerifierKey, AdminToken: tok,
			PublishInterval: time.Hour}
	})
	return ls
}

// process has the desk process a request naming target, signed by signer.
func (ls *legalServer) process(t *testing.T, target string, signer note.Signer) {
	t.Helper()
	now := ls.clock()
	nonce := make([]byte, 16)
	rand.Read(nonce)
	b, err := legal.SignRequest(&legal.Request{Authority: "us.court.example", Jurisdiction: "us", Type: legal.TypeCourtOrder,
		Basis: "18 U.S.C. 2703(d)", Case: "1:26-mj-00042", Targets: []string{target},
		Categories: []string{legal.CategoryAccountCreated, legal.CategoryLastSeenDay},
		Issued:     now.Add(-time.Hour), ValidUntil: now.Add(24 * time.Hour), NondisclosureUntil: now.Add(48 * time.Hour),
		Nonce: nonce}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.desk.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// TestLegalCommands: requests processed by a real server's front door,
// the log verified by verify-log (trust on first use, then pinned, then
// kept in a state file), the publication after the non-disclosure date
// shown loudly to the target on receive and by legal notices, and a log
// swapped for a shorter one of the same key caught through the state.
func TestLegalCommands(t *testing.T) {
	ls := newLegalServer(t)
	alice := registerCLI(t, ls.url, "alice")
	ls.process(t, "alice", ls.court)
	forger, _ := note.NewSigner(mustSignerKey(t, "us.court.example"))
	ls.process(t, "alice", forger) // refused: an unknown key

	code, out, errOut := runCLI(t, "", "", "legal", "verify-log", ls.url)
	if code != ExitOK || !strings.Contains(errOut, "trust on first use") || !strings.Contains(errOut, ls.key.VerifierKey) ||
		!strings.Contains(out, "request log doorless.test/legal verified\n") || !strings.Contains(out, "requests:      2\n") ||
		!strings.Contains(out, "refused:unknown_authority") || !strings.Contains(out, "publications:  0\n") {
		t.Fatalf("verify-log: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	state := filepath.Join(t.TempDir(), "state.json")
	code, out, errOut = runCLI(t, "", "", "legal", "verify-log", ls.url+"/", "--key", ls.key.VerifierKey, "--state", state)
	if code != ExitOK || errOut != "" || !strings.Contains(out, "entries:       2 ") {
		t.Fatalf("verify-log --key --state: exit %d\n%s\nstderr: %s", code, out, errOut)
	}

	// Nothing published yet: alice has no notice.
	if code, out, errOut = runCLI(t, alice, "", "legal", "notices"); code != ExitOK || !strings.Contains(out, "no legal request") {
		t.Fatalf("notices: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	// Past the non-disclosure date, the desk publishes, and reports.
	ls.advance(49 * time.Hour)
	if n, err := ls.desk.Publish(context.Background()); err != nil || n != 1 {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	if _, err := ls.desk.Report(context.Background(), requestlog.PeriodOf(ls.clock())); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, alice, "", "receive")
	if code != ExitOK || !strings.Contains(out, "!!! LEGAL REQUEST about your account") || !strings.Contains(out, "1:26-mj-00042") ||
		!strings.Contains(out, "us.court.example (us)") || !strings.Contains(out, "accepted it") {
		t.Fatalf("receive: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	if code, out, _ = runCLI(t, alice, "", "receive"); code != ExitOK || strings.Contains(out, "LEGAL REQUEST") {
		t.Fatalf("the notice shown twice: exit %d\n%s", code, out)
	}
	if code, out, _ = runCLI(t, alice, "", "legal", "notices"); code != ExitOK || strings.Count(out, "!!! LEGAL REQUEST") != 1 {
		t.Fatalf("notices: exit %d\n%s", code, out)
	}

	// The state file now pins the key: no --key, no warning.
	code, out, errOut = runCLI(t, "", "", "legal", "verify-log", ls.url, "--state", state)
	if code != ExitOK || errOut != "" || !strings.Contains(out, "publications:  1\n") || !strings.Contains(out, "reports:       "+requestlog.PeriodOf(ls.clock())) {
		t.Fatalf("verify-log --state after publication: exit %d\n%s\nstderr: %s", code, out, errOut)
	}

	// The report served is the one logged; one the server serves but did
	// not log (signed with the log's key all the same) is caught.
	period := requestlog.PeriodOf(ls.clock())
	for _, p := range []string{period, "latest"} {
		code, out, errOut = runCLI(t, "", "", "legal", "verify-log", ls.url, "--state", state, "--report", p)
		if code != ExitOK || !strings.Contains(out, "report "+period+" as served: entry 3 of the log") {
			t.Fatalf("verify-log --report %s: exit %d\n%s\nstderr: %s", p, code, out, errOut)
		}
	}
	if code, _, _ = runCLI(t, "", "", "legal", "verify-log", ls.url, "--report", "2026-Q7"); code != ExitUsage {
		t.Fatalf("verify-log --report 2026-Q7: exit %d, want %d", code, ExitUsage)
	}
	forged, err := (&requestlog.Report{Period: period, Generated: ls.clock(), Through: 3}).Sign(ls.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(ls.url)
	lying := http.NewServeMux()
	lying.Handle("/", httputil.NewSingleHostReverseProxy(target))
	lying.HandleFunc("GET "+api.PathTransparencyReport, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderLogIndex, "3")
		w.Write(forged)
	})
	lhs := httptest.NewServer(lying)
	defer lhs.Close()
	code, _, errOut = runCLI(t, "", "", "legal", "verify-log", lhs.URL, "--key", ls.key.VerifierKey, "--report", period)
	if code != ExitLogInvalid || !strings.Contains(errOut, "not entry 3") {
		t.Fatalf("verify-log --report of a report not logged: exit %d, stderr %q", code, errOut)
	}

	// Another log under the same key, shorter: served elsewhere, it
	// verifies alone, and the state catches the rollback.
	other, err := requestlog.Open(context.Background(), filepath.Join(t.TempDir(), "other"), ls.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	e, _ := (&requestlog.RequestEntry{Received: ls.clock(), Jurisdiction: "us", Type: "court_order", Outcome: "accepted"}).Encode()
	if _, err := other.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(api.PathLegalLogPrefix, http.StripPrefix(api.PathLegalLogPrefix, other.Handler()))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	if code, _, errOut = runCLI(t, "", "", "legal", "verify-log", hs.URL, "--key", ls.key.VerifierKey); code != ExitOK {
		t.Fatalf("the other log alone: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "", "", "legal", "verify-log", hs.URL, "--state", state)
	if code != ExitLogInvalid || !strings.Contains(errOut, "does NOT verify") || !strings.Contains(errOut, "shrank") {
		t.Fatalf("verify-log of a rolled back log: exit %d, stderr %q", code, errOut)
	}
	// A key that is not the log's.
	_, wrong, _ := note.GenerateKey(rand.Reader, "doorless.test/legal")
	if code, _, errOut = runCLI(t, "", "", "legal", "verify-log", ls.url, "--key", wrong); code != ExitLogInvalid {
		t.Fatalf("verify-log with another key: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = runCLI(t, "", "", "legal", "verify-log", ls.url, "--key", wrong, "--state", state); code != ExitError ||
		!strings.Contains(errOut, "another key") {
		t.Fatalf("verify-log with a key the state does not hold: exit %d, stderr %q", code, errOut)
	}
}

func mustSignerKey(t *testing.T, name string) string {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return skey
}

func TestVerifyLogErrors(t *testing.T) {
	// Nothing listens on the server: a network error.
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close()
	_, vkey, _ := note.GenerateKey(rand.Reader, "doorless.test/legal")
	if code, _, errOut := runCLI(t, "", "", "legal", "verify-log", url, "--key", vkey); code != ExitError {
		t.Fatalf("unreachable server: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{
		{"legal"},
		{"legal", "frobnicate"},
		{"legal", "verify-log"},
		{"legal", "verify-log", "ftp://example.org"},
		{"legal", "verify-log", "https://example.org", "--key", "not a key"},
		{"legal", "verify-log", "https://example.org", "https://example.com"},
		{"legal", "notices", "extra"},
	} {
		if code, _, errOut := runCLI(t, t.TempDir(), "", args...); code != ExitUsage {
			t.Errorf("doorless %q: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// A server whose notices do not match its log: receive still receives,
// and warns loudly.
func TestReceiveWarnsOfABadLog(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "doorless.test/legal")
	signer, _ := note.NewSigner(skey)
	lg, err := requestlog.Open(context.Background(), filepath.Join(t.TempDir(), "log"), signer)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	wrap := func(next http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/", next)
		mux.Handle(api.PathLegalLogPrefix, http.StripPrefix(api.PathLegalLogPrefix, lg.Handler()))
		mux.HandleFunc(api.PathLegalKey, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(vkey)) })
		mux.HandleFunc(api.PathLegalNotices, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"notices":[{"request_index":0,"publication_index":1,"request":"","outcome":"accepted"}]}`))
		})
		return mux
	}
	url, _ := testServerWrapped(t, nil, wrap)
	alice := registerCLI(t, url, "alice")
	code, _, errOut := runCLI(t, alice, "", "receive")
	if code != ExitOK || !strings.Contains(errOut, "WARNING: the server's legal request log does not verify") {
		t.Fatalf("receive: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = runCLI(t, alice, "", "legal", "notices"); code != ExitError || !strings.Contains(errOut, "does not match") {
		t.Fatalf("notices: exit %d, stderr %q", code, errOut)
	}
}

// Once alice's device pinned the log, a server that stops serving it (404)
// gets the loud failure of a log that does not verify, not the quiet one
// of a server without a front door; a list of notices that answers 404
// hides nothing.
func TestNoticesOfAHiddenLog(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "doorless.test/legal")
	signer, _ := note.NewSigner(skey)
	lg, err := requestlog.Open(context.Background(), filepath.Join(t.TempDir(), "log"), signer)
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var hidden atomic.Bool
	wrap := func(next http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/", next)
		mux.HandleFunc(api.PathLegalLogPrefix, func(w http.ResponseWriter, r *http.Request) {
			if hidden.Load() {
				http.NotFound(w, r)
				return
			}
			http.StripPrefix(api.PathLegalLogPrefix, lg.Handler()).ServeHTTP(w, r)
		})
		mux.HandleFunc(api.PathLegalKey, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(vkey)) })
		mux.HandleFunc(api.PathLegalNotices, http.NotFound)
		return mux
	}
	url, _ := testServerWrapped(t, nil, wrap)
	alice := registerCLI(t, url, "alice")
	if code, out, errOut := runCLI(t, alice, "", "legal", "notices"); code != ExitOK || !strings.Contains(out, "no legal request") {
		t.Fatalf("notices: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	hidden.Store(true)
	if code, _, errOut := runCLI(t, alice, "", "legal", "notices"); code != ExitLogInvalid || !strings.Contains(errOut, "does NOT verify") ||
		!strings.Contains(errOut, "not served any more") {
		t.Fatalf("notices of a hidden log: exit %d, stderr %q", code, errOut)
	}
}

// A notice received on the day of registration says it may be an earlier
// holder's.
func TestPrintNoticeRegistrationDay(t *testing.T) {
	n := &client.LegalNotice{PublicationIndex: 4, Authority: "court.example", Outcome: requestlog.OutcomeAccepted}
	var b strings.Builder
	printNotice(&b, n, time.UTC)
	if strings.Contains(b.String(), "earlier") {
		t.Fatalf("a notice of a later day:\n%s", b.String())
	}
	n.RegistrationDay = true
	b.Reset()
	printNotice(&b, n, time.UTC)
	if !strings.Contains(b.String(), "!!!   note:          received the day your account was registered: it may have named an earlier") {
		t.Fatalf("a notice of the registration day:\n%s", b.String())
	}
}
