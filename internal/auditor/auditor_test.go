package auditor

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/auditor/auditortest"
	"github.com/doorless/doorless/kt"
)

const origin = "doorless.test/kt"

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fixture is a test log behind a real HTTP server and an auditor's state
// directory.
type fixture struct {
	t     *testing.T
	log   *auditortest.Server
	srv   *httptest.Server
	dir   string
	vkey  string
	clock time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	keys, err := auditortest.NewKeys(origin)
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, keys, t.TempDir())
}

// newFixtureWith serves a new log with keys, for the auditor state in dir.
func newFixtureWith(t *testing.T, keys *auditortest.Keys, dir string) *fixture {
	t.Helper()
	l, err := auditortest.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	vkey, _, err := LoadOrCreateKey(dir, "auditor.test/one", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.AddAuditor(vkey)
	return &fixture{t: t, log: l, srv: srv, dir: dir, vkey: vkey, clock: t0}
}

// newLog serves a new, empty log of origin.
func newLog(tb testing.TB) *auditortest.Server {
	tb.Helper()
	keys, err := auditortest.NewKeys(origin)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := auditortest.New(keys)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// newRunLog serves in memory (for Run under synctest) a new log with one
// epoch, and returns it with the config of an auditor whose cosignatures
// it collects.
func newRunLog(t *testing.T) (*auditortest.Server, Config) {
	t.Helper()
	l := newLog(t)
	dir := t.TempDir()
	vkey, _, err := LoadOrCreateKey(dir, "auditor.test/run", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.AddAuditor(vkey)
	if err := l.AppendLabels(time.Now(), "alice"); err != nil {
		t.Fatal(err)
	}
	return l, Config{Server: "http://kt.test", StateDir: dir, Client: &http.Client{Transport: handlerTransport{l}}}
}

// epochs appends n epochs, each setting a few labels (some again).
func (f *fixture) epochs(n int) {
	f.t.Helper()
	for range n {
		f.clock = f.clock.Add(time.Second)
		size := f.log.Log().Size()
		if err := f.log.AppendLabels(f.clock, "alice", "bob-"+string(rune('a'+size%26)), "carol"); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) auditor() (*Auditor, error) {
	return f.auditorWith(nil)
}

// auditorWith makes an auditor whose clock is f.clock, with the config
// passed through change first.
func (f *fixture) auditorWith(change func(*Config)) (*Auditor, error) {
	cfg := Config{
		Server:   f.srv.URL,
		StateDir: f.dir,
		Name:     "unused: the key exists",
		Client:   f.srv.Client(),
		Now:      func() time.Time { return f.clock },
	}
	if change != nil {
		change(&cfg)
	}
	return New(cfg)
}

func (f *fixture) mustAuditor() *Auditor {
	f.t.Helper()
	a, err := f.auditor()
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

func (f *fixture) pass(a *Auditor) (Result, error) {
	return a.Pass(context.Background())
}

// expectFailure checks that err is a recorded audit failure.
func (f *fixture) expectFailure(err error, epoch int) *FailureError {
	f.t.Helper()
	var fe *FailureError
	if !errors.As(err, &fe) || !errors.Is(err, ErrAuditFailure) {
		f.t.Fatalf("want an audit failure, got %v", err)
	}
	if epoch >= 0 && (!fe.HasEpoch || fe.Epoch != uint64(epoch)) {
		f.t.Errorf("failure at epoch %d (has %t), want %d: %v", fe.Epoch, fe.HasEpoch, epoch, fe)
	}
	if epoch < 0 && fe.HasEpoch {
		f.t.Errorf("failure names epoch %d: %v", fe.Epoch, fe)
	}
	if fe.Record != filepath.Join(f.dir, failureFile) {
		f.t.Errorf("failure recorded in %q", fe.Record)
	}
	if _, err := os.Stat(filepath.Join(f.dir, failureFile)); err != nil {
		f.t.Errorf("no failure record: %v", err)
	}
	// The auditor refuses to run again.
	var earlier *FailureError
	if _, err := f.auditor(); !errors.Is(err, ErrAuditFailure) {
		f.t.Errorf("a new auditor over the failed state: %v", err)
	} else if !errors.As(err, &earlier) || !earlier.Earlier || earlier.Reason == "" || earlier.HasEpoch != fe.HasEpoch {
		f.t.Errorf("the recorded failure: %+v", earlier)
	}
	return fe
}

// expectNoFailure checks that err is an error, but no audit failure.
func (f *fixture) expectNoFailure(err error) {
	f.t.Helper()
	if err == nil {
		f.t.Fatal("no error")
	}
	if errors.Is(err, ErrAuditFailure) {
		f.t.Fatalf("an audit failure: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(f.dir, failureFile)); serr == nil {
		f.t.Fatalf("a failure was recorded for %v", err)
	}
}

func TestCosigns(t *testing.T) {
	f := newFixture(t)
	a := f.mustAuditor()

	// An empty log: nothing to cosign, and no error.
	res, err := f.pass(a)
	if err != nil || res.Cosigned || res.Head.Size != 0 {
		t.Fatalf("empty log: %+v, %v", res, err)
	}

	f.epochs(3)
	res, err = f.pass(a)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cosigned || res.Head.Size != 3 {
		t.Fatalf("pass: %+v", res)
	}
	posted := f.log.Posted()
	if len(posted) != 1 {
		t.Fatalf("%d cosignatures posted", len(posted))
	}
	// The posted note carries the log's signature and the auditor's
	// cosignature, over the log's checkpoint of size 3.
	logKey, _ := note.NewVerifier(f.log.Keys.VKey)
	cosigner, err := kt.NewCosignatureVerifier(f.vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(posted[0], note.VerifierList(logKey, cosigner))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("posted note: %v (%d signatures)", err, len(n.Sigs))
	}
	cp, err := kt.ParseCheckpoint([]byte(n.Text))
	if err != nil || cp.Size != 3 {
		t.Fatalf("posted checkpoint: %+v, %v", cp, err)
	}
	// The server now hands the cosignature out with its checkpoint.
	if n, err := note.Open(f.log.Log().Checkpoint(), note.VerifierList(logKey, cosigner)); err != nil || len(n.Sigs) != 2 {
		t.Fatalf("the log's checkpoint is not cosigned: %v", err)
	}

	// More epochs, across pages.
	f.log.SetPageSize(2)
	f.epochs(5)
	res, err = f.pass(a)
	if err != nil || !res.Cosigned || res.Head.Size != 8 {
		t.Fatalf("second pass: %+v, %v", res, err)
	}
	// Nothing new: the pass cosigns again (a fresh timestamp keeps the
	// cosignature within clients' MaxAuditLag), and leaves the state as
	// it is.
	var before cosignedHead
	readJSON(f.dir, cosignedFile, &before)
	f.clock = f.clock.Add(time.Minute)
	if res, err := f.pass(a); err != nil || !res.Cosigned || res.Head.Size != 8 {
		t.Fatalf("idle pass: %+v, %v", res, err)
	}
	if n := len(f.log.Posted()); n != 3 {
		t.Fatalf("%d cosignatures posted after the idle pass, want 3", n)
	}

	// The state: the pin and the last cosigned head.
	var p pin
	if found, err := readJSON(f.dir, pinFile, &p); !found || err != nil || p.Origin != origin || p.LogKey != f.log.Keys.VKey ||
		!bytes.Equal(p.VRFKey, f.log.Keys.VRF.Public().Bytes()) {
		t.Errorf("pin: %+v, %v", p, err)
	}
	var c cosignedHead
	if found, err := readJSON(f.dir, cosignedFile, &c); !found || err != nil || c.Size != 8 || !bytes.Equal(c.Root, res.Head.Root[:]) {
		t.Errorf("cosigned head: %+v, %v", c, err)
	}
	if !c.At.Equal(before.At) {
		t.Errorf("the idle pass rewrote %s: at %v, was %v", cosignedFile, c.At, before.At)
	}
}

// A client that requires the auditor's cosignature accepts the log's
// lookups only once the auditor has cosigned.
func TestClientRequiresCosignature(t *testing.T) {
	f := newFixture(t)
	f.epochs(2)
	logKey, _ := note.NewVerifier(f.log.Keys.VKey)
	cosigner, _ := kt.NewCosignatureVerifier(f.vkey)
	v := &kt.Verifier{
		Origin: origin, LogKey: logKey, VRFKey: f.log.Keys.VRF.Public(),
		Auditors: []note.Verifier{cosigner}, NeedCosignatures: 1, MaxAuditLag: time.Hour,
	}
	labels := [][]byte{[]byte("alice")}
	lookup := func() error {
		p, err := f.log.Log().Prove(labels, 0, f.log.Entry)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = v.Verify(nil, labels, p, f.clock)
		return err
	}
	if err := lookup(); !errors.Is(err, kt.ErrMissingCosignature) {
		t.Fatalf("before the auditor: %v, want ErrMissingCosignature", err)
	}
	if _, err := f.pass(f.mustAuditor()); err != nil {
		t.Fatal(err)
	}
	if err := lookup(); err != nil {
		t.Fatalf("after the auditor cosigned: %v", err)
	}
}

// TestEmptyEpochs: the server's empty epochs (no change, a new timestamp,
// made to keep the log fresh) pass the audit and are cosigned, and keep a
// client that requires both a recent epoch and the auditor's cosignature
// working hours after the last change.
func TestEmptyEpochs(t *testing.T) {
	f := newFixture(t)
	f.epochs(2)
	a := f.mustAuditor()
	if _, err := f.pass(a); err != nil {
		t.Fatal(err)
	}
	for range 12 { // two hours of empty epochs, one every 10 minutes
		f.clock = f.clock.Add(10 * time.Minute)
		if _, err := f.log.Append(nil, f.clock); err != nil {
			t.Fatal(err)
		}
		if res, err := f.pass(a); err != nil || !res.Cosigned || res.Head.Size != f.log.Log().Size() {
			t.Fatalf("pass over an empty epoch: %+v, %v", res, err)
		}
	}
	logKey, _ := note.NewVerifier(f.log.Keys.VKey)
	cosigner, _ := kt.NewCosignatureVerifier(f.vkey)
	v := &kt.Verifier{
		Origin: origin, LogKey: logKey, VRFKey: f.log.Keys.VRF.Public(),
		Auditors: []note.Verifier{cosigner}, NeedCosignatures: 1, MaxAuditLag: time.Hour, MaxEpochAge: time.Hour,
	}
	labels := [][]byte{[]byte("alice")}
	p, err := f.log.Log().Prove(labels, 0, f.log.Entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := v.Verify(nil, labels, p, f.clock); err != nil || !res[0].Present || res[0].Counter != 1 {
		t.Fatalf("two hours after the last change: %+v, %v", res, err)
	}
}

func TestRestartReplaysFromZero(t *testing.T) {
	f := newFixture(t)
	f.epochs(4)
	if _, err := f.pass(f.mustAuditor()); err != nil {
		t.Fatal(err)
	}
	f.epochs(2)
	res, err := f.pass(f.mustAuditor())
	if err != nil || !res.Cosigned || res.Head.Size != 6 {
		t.Fatalf("after a restart: %+v, %v", res, err)
	}
}

func TestTamperedEpochs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite func(c *kt.EpochChanges)
	}{
		{"counter skips", func(c *kt.EpochChanges) { c.Leaves[0].Counter++ }},
		{"counter rewinds", func(c *kt.EpochChanges) { c.Leaves[0].Counter-- }},
		{"leaf withheld", func(c *kt.EpochChanges) { c.Leaves = c.Leaves[1:] }},
		{"commitment swapped", func(c *kt.EpochChanges) { c.Leaves[0].Commitment[0] ^= 1 }},
		{"prefix root", func(c *kt.EpochChanges) { c.Epoch.PrefixRoot[31] ^= 1 }},
		{"time goes back", func(c *kt.EpochChanges) { c.Epoch.Timestamp -= 1e6 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.epochs(3)
			f.log.Rewrite(func(i int, c *kt.EpochChanges) {
				if i == 2 {
					tc.rewrite(c)
				}
			})
			_, err := f.pass(f.mustAuditor())
			fe := f.expectFailure(err, 2)
			if !errors.Is(fe, kt.ErrAuditFailed) {
				t.Errorf("the cause is not kt.ErrAuditFailed: %v", fe)
			}
			if n := len(f.log.Posted()); n != 0 {
				t.Errorf("%d cosignatures posted", n)
			}
		})
	}
}

func TestUndecodableEpoch(t *testing.T) {
	f := newFixture(t)
	f.epochs(2)
	f.log.Corrupt(func(i int, b []byte) []byte {
		if i == 1 {
			return b[:len(b)-1]
		}
		return b
	})
	_, err := f.pass(f.mustAuditor())
	if fe := f.expectFailure(err, 1); !errors.Is(fe, kt.ErrMalformed) {
		t.Errorf("the cause is not kt.ErrMalformed: %v", fe)
	}
}

func TestFailureIsFinal(t *testing.T) {
	f := newFixture(t)
	f.epochs(2)
	a := f.mustAuditor()
	f.log.Rewrite(func(i int, c *kt.EpochChanges) { c.Leaves[0].Counter += 5 })
	_, err := f.pass(a)
	f.expectFailure(err, 0)
	// The server mends its ways; the auditor does not forget.
	f.log.Rewrite(nil)
	if _, err := f.pass(a); !errors.Is(err, ErrAuditFailure) {
		t.Fatalf("the same auditor passes again: %v", err)
	}
	if n := len(f.log.Posted()); n != 0 {
		t.Fatalf("%d cosignatures posted after a failure", n)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, failureFile))
	if err != nil || !strings.Contains(string(b), "counter") || !strings.Contains(string(b), f.srv.URL) {
		t.Fatalf("failure record: %s, %v", b, err)
	}
}

// The server signs a checkpoint of another tree than the epochs it
// publishes: a split view.
func TestSplitView(t *testing.T) {
	f := newFixture(t)
	f.epochs(3)
	other, err := auditortest.New(f.log.Keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := other.AppendLabels(t0.Add(time.Duration(i)*time.Second), "mallory"); err != nil {
			t.Fatal(err)
		}
	}
	f.log.ServeCheckpoint(other.Log().Checkpoint)
	_, err = f.pass(f.mustAuditor())
	fe := f.expectFailure(err, -1)
	if !strings.Contains(fe.Error(), "split view") {
		t.Errorf("failure: %v", fe)
	}
}

func TestBadCheckpoints(t *testing.T) {
	sign := func(f *fixture, s note.Signer, text string) []byte {
		b, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		cp   func(f *fixture) []byte
	}{
		{"another key", func(f *fixture) []byte {
			k, _ := auditortest.NewKeys(origin)
			return sign(f, k.Signer, string(lastBody(t, f))) // same origin and text
		}},
		{"bad signature", func(f *fixture) []byte {
			cp := f.log.Log().Checkpoint()
			i := bytes.Index(cp, []byte("\n\n"))
			cp[i-2] ^= 1 // in the root, under the signature
			return cp
		}},
		{"another origin", func(f *fixture) []byte {
			body := strings.Replace(string(lastBody(t, f)), origin, origin+"2", 1)
			return sign(f, f.log.Keys.Signer, body)
		}},
		{"not a checkpoint", func(f *fixture) []byte {
			return sign(f, f.log.Keys.Signer, origin+"\nthree\nroot\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.epochs(2)
			f.log.ServeCheckpoint(func() []byte { return tc.cp(f) })
			_, err := f.pass(f.mustAuditor())
			f.expectFailure(err, -1)
		})
	}
}

func lastBody(t *testing.T, f *fixture) []byte {
	cp := f.log.Log().Checkpoint()
	i := bytes.Index(cp, []byte("\n\n"))
	if i < 0 {
		t.Fatal("no checkpoint")
	}
	return cp[:i+1]
}

// Errors that prove nothing against the log are retried, not recorded.
func TestTransientErrors(t *testing.T) {
	f := newFixture(t)
	f.epochs(3)
	a := f.mustAuditor()

	f.log.FailWith(http.StatusServiceUnavailable)
	_, err := f.pass(a)
	f.expectNoFailure(err)
	f.log.FailWith(0)

	f.log.ServeCheckpoint(func() []byte { return []byte("<html>bad gateway</html>") })
	_, err = f.pass(a)
	f.expectNoFailure(err)
	f.log.ServeCheckpoint(nil)

	// The checkpoint is newer than the epochs served: not cosigned yet.
	f.log.Withhold(2)
	_, err = f.pass(a)
	f.expectNoFailure(err)
	f.log.Withhold(-1)

	if res, err := f.pass(a); err != nil || !res.Cosigned || res.Head.Size != 3 {
		t.Fatalf("after the errors: %+v, %v", res, err)
	}
}

func TestCosignatureRefused(t *testing.T) {
	l := newLog(t)
	srv := httptest.NewServer(l)
	defer srv.Close()
	if err := l.AppendLabels(t0, "alice"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := New(Config{Server: srv.URL, StateDir: dir, Name: "auditor.test/unknown", Client: srv.Client(), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Pass(context.Background())
	if err == nil || errors.Is(err, ErrAuditFailure) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("pass with an unconfigured auditor: %v", err)
	}
}

func TestPinMismatch(t *testing.T) {
	f := newFixture(t)
	f.epochs(1)
	if _, err := f.pass(f.mustAuditor()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keys func(k auditortest.Keys) *auditortest.Keys
		want string
	}{
		{"log key", func(k auditortest.Keys) *auditortest.Keys {
			n, _ := auditortest.NewKeys(origin)
			k.Signer, k.VKey = n.Signer, n.VKey
			return &k
		}, "log key"},
		{"VRF key", func(k auditortest.Keys) *auditortest.Keys {
			n, _ := auditortest.NewKeys(origin)
			k.VRF = n.VRF
			return &k
		}, "VRF key"},
		{"origin", func(k auditortest.Keys) *auditortest.Keys {
			n, _ := auditortest.NewKeys(origin + "/other")
			return n
		}, "origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFixtureWith(t, tc.keys(*f.log.Keys), f.dir)
			g.epochs(1)
			_, err := g.pass(g.mustAuditor())
			if !errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("another log: %v", err)
			}
			g.expectNoFailure(err)
			if n := len(g.log.Posted()); n != 0 {
				t.Fatalf("%d cosignatures posted", n)
			}
		})
	}
}

// After a restart the server presents the same keys but another history:
// the replay does not pass through the head cosigned before.
func TestForkAcrossRestart(t *testing.T) {
	f := newFixture(t)
	f.epochs(3)
	if _, err := f.pass(f.mustAuditor()); err != nil {
		t.Fatal(err)
	}
	g := newFixtureWith(t, f.log.Keys, f.dir)
	g.clock = t0.Add(time.Hour)
	for range 4 {
		g.clock = g.clock.Add(time.Second)
		if err := g.log.AppendLabels(g.clock, "alice", "mallory"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := g.pass(g.mustAuditor())
	fe := g.expectFailure(err, 2)
	if !strings.Contains(fe.Error(), "fork") {
		t.Errorf("failure: %v", fe)
	}
}

// A server whose newest checkpoint is older than the head cosigned before
// is not cosigned, but not failed either: nothing signed contradicts.
func TestRollback(t *testing.T) {
	f := newFixture(t)
	f.epochs(3)
	if _, err := f.pass(f.mustAuditor()); err != nil {
		t.Fatal(err)
	}
	g := newFixtureWith(t, f.log.Keys, f.dir)
	g.clock = t0
	// The same first two epochs cannot be remade (fresh openings), so
	// serve a fresh log of size 2.
	g.epochs(2)
	_, err := g.pass(g.mustAuditor())
	g.expectNoFailure(err)
	if !strings.Contains(err.Error(), "older") {
		t.Fatalf("rollback: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	vkey, created, err := LoadOrCreateKey(dir, "auditor.test/key", nil)
	if err != nil || !created {
		t.Fatalf("first: %v, %t", err, created)
	}
	if !strings.HasPrefix(vkey, "auditor.test/key+") {
		t.Errorf("vkey %q", vkey)
	}
	fi, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi.Mode(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v", di.Mode(), err)
	}
	again, created, err := LoadOrCreateKey(dir, "another name", nil)
	if err != nil || created || again != vkey {
		t.Fatalf("second: %q, %t, %v", again, created, err)
	}
	// The key file may not be readable by others.
	if err := os.Chmod(filepath.Join(dir, keyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(dir, "x", nil); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("loose key file: %v", err)
	}
	os.Chmod(filepath.Join(dir, keyFile), 0o600)
	// Halves of two key pairs.
	other := t.TempDir()
	if _, _, err := LoadOrCreateKey(other, "auditor.test/key", nil); err != nil {
		t.Fatal(err)
	}
	vb, _ := os.ReadFile(filepath.Join(other, vkeyFile))
	os.WriteFile(filepath.Join(dir, vkeyFile), vb, 0o644)
	if _, _, err := LoadOrCreateKey(dir, "x", nil); err == nil {
		t.Fatal("a mismatched key pair loaded")
	}
	// A corrupt key file names the file, not its contents.
	os.WriteFile(filepath.Join(other, keyFile), []byte("PRIVATE+KEY+secretstuff\n"), 0o600)
	if _, _, err := LoadOrCreateKey(other, "x", nil); err == nil || strings.Contains(err.Error(), "secretstuff") {
		t.Fatalf("corrupt key: %v", err)
	}
}

func TestConfig(t *testing.T) {
	for _, server := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := New(Config{Server: server, StateDir: t.TempDir(), Name: "a"}); err == nil {
			t.Errorf("server %q accepted", server)
		}
	}
	if _, err := New(Config{Server: "http://x"}); err == nil {
		t.Error("no state directory accepted")
	}
	if _, err := New(Config{Server: "http://x", StateDir: t.TempDir(), Name: "a", MaxEpochAge: -time.Hour}); err == nil {
		t.Error("a negative MaxEpochAge accepted")
	}
}

// Run passes every interval, survives transient errors and stops at an
// audit failure.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, cfg := newRunLog(t)
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()

		synctest.Wait()
		if n := len(l.Posted()); n != 1 {
			t.Fatalf("%d cosignatures after the first pass", n)
		}
		if err := l.AppendLabels(time.Now(), "bob"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultInterval)
		synctest.Wait()
		posted := l.Posted()
		if len(posted) != 2 || !bytes.Contains(posted[1], []byte("\n2\n")) {
			t.Fatalf("second pass: %d cosignatures", len(posted))
		}

		// A failing server: Run retries.
		l.FailWith(http.StatusInternalServerError)
		time.Sleep(3 * DefaultInterval)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Run stopped on a transient error: %v", err)
		default:
		}
		l.FailWith(0)

		// A bad epoch: Run stops with the failure.
		if err := l.AppendLabels(time.Now(), "alice"); err != nil {
			t.Fatal(err)
		}
		l.Rewrite(func(i int, c *kt.EpochChanges) {
			if i == 2 {
				c.Leaves[0].Counter = 7
			}
		})
		time.Sleep(DefaultInterval)
		synctest.Wait()
		select {
		case err := <-done:
			if !errors.Is(err, ErrAuditFailure) {
				t.Fatalf("Run: %v", err)
			}
		default:
			t.Fatal("Run goes on after an audit failure")
		}
		if n := len(l.Posted()); n != 2 {
			t.Fatalf("%d cosignatures", n)
		}

		// Cancelling ends Run without an error.
		l.Rewrite(nil)
		b, err := New(Config{Server: cfg.Server, StateDir: t.TempDir(), Name: "auditor.test/b", Client: cfg.Client})
		if err != nil {
			t.Fatal(err)
		}
		ctx2, cancel2 := context.WithCancel(t.Context())
		go func() { done <- b.Run(ctx2) }()
		synctest.Wait()
		cancel2()
		if err := <-done; err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	})
}

// handlerTransport serves requests with a handler in memory.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

func FuzzOpenCheckpoint(f *testing.F) {
	l := newLog(f)
	if err := l.AppendLabels(t0, "alice"); err != nil {
		f.Fatal(err)
	}
	logKey, _ := note.NewVerifier(l.Keys.VKey)
	f.Add(l.Log().Checkpoint())
	f.Add([]byte(origin + "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— x AAAA\n"))
	f.Add([]byte("<html>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := openCheckpoint(b, logKey, origin)
		if err != nil {
			if !errors.Is(err, errBadCheckpoint) && !errors.Is(err, errMalformedNote) {
				t.Fatalf("error %v is neither sentinel", err)
			}
			return
		}
		// Only the log can sign: a checkpoint that opens is the log's.
		if c.Origin != origin || !bytes.Contains(b, c.Marshal()) {
			t.Fatalf("opened %+v from %q", c, b)
		}
	})
}

// BenchmarkReplay measures a pass from epoch 0 (what a restart costs) over
// HTTP: 100 epochs of 100 changed labels each.
func BenchmarkReplay(b *testing.B) {
	l := newLog(b)
	srv := httptest.NewServer(l)
	defer srv.Close()
	const epochs, perEpoch = 100, 100
	for e := range epochs {
		labels := make([]string, perEpoch)
		for k := range labels {
			labels[k] = "user-" + string(rune('a'+k%26)) + "-" + time.Duration(e*perEpoch+k).String()
		}
		if err := l.AppendLabels(t0.Add(time.Duration(e)*time.Second), labels...); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	vkey, _, err := LoadOrCreateKey(dir, "auditor.test/bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	l.AddAuditor(vkey)
	for b.Loop() {
		os.Remove(filepath.Join(dir, cosignedFile))
		a, err := New(Config{Server: srv.URL, StateDir: dir, Client: srv.Client(), Now: func() time.Time { return t0.Add(epochs * time.Second) }})
		if err != nil {
			b.Fatal(err)
		}
		if res, err := a.Pass(context.Background()); err != nil || !res.Cosigned {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(epochs*perEpoch), "ns/leaf")
}
