package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/sqlite"
)

// testServer runs doorlessd's server in-process over a fresh store.
func testServer(t *testing.T) (url string, st *sqlite.Store) {
	t.Helper()
	return testServerWith(t, nil)
}

// testServerWith is testServer with its configuration changed by mod.
func testServerWith(t *testing.T, mod func(*server.Config)) (url string, st *sqlite.Store) {
	t.Helper()
	return testServerWrapped(t, mod, nil)
}

// testServerWrapped is testServerWith with the server's handler wrapped
// by wrap (nil: none), for a test that plays a hostile server.
func testServerWrapped(t *testing.T, mod func(*server.Config), wrap func(http.Handler) http.Handler) (url string, st *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doorless.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Transparency: testTransparency(t)}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	// Run publishes account changes in the transparency log.
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		srv.Run(runCtx)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		stopRun()
		<-runDone
		hs.Close()
		st.Close()
	})
	dbPaths.Store(st, path)
	return hs.URL, st
}

// dbPaths holds the database file of each testServer's store.
var dbPaths sync.Map

// serverDB returns the database file of a testServer's store, for a test
// that plays the operator writing it behind the server's back.
func serverDB(t *testing.T, st *sqlite.Store) string {
	t.Helper()
	p, ok := dbPaths.Load(st)
	if !ok {
		t.Fatal("not a testServer's store")
	}
	return p.(string)
}

// testTransparency is a key transparency configuration with fresh keys.
func testTransparency(t *testing.T) *server.TransparencyConfig {
	t.Helper()
	k, err := ktkeys.Generate(rand.Reader, "doorless.test/kt")
	if err != nil {
		t.Fatal(err)
	}
	return &server.TransparencyConfig{Log: k.LogConfig(), LogKey: k.LogKey, PollInterval: 100 * time.Millisecond}
}

// runCLI runs one command line against the profile with stdin, and returns
// the exit status, standard output and standard error.
func runCLI(t *testing.T, profile, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), append([]string{"--profile", profile}, args...),
		Env{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	return code, stdout.String(), stderr.String()
}

func registerCLI(t *testing.T, url, name string) string {
	t.Helper()
	profile := filepath.Join(t.TempDir(), name)
	if code, _, stderr := runCLI(t, profile, "", "register", "--server", url, name); code != ExitOK {
		t.Fatalf("register %s: exit %d: %s", name, code, stderr)
	}
	return profile
}

func TestAccountDelete(t *testing.T) {
	url, st := testServer(t)
	alice := registerCLI(t, url, "alice")
	ctx := context.Background()
	a, err := st.AccountByUsername(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}

	// Anything but the username typed back deletes nothing.
	for _, typed := range []string{"", "bob\n", "Alice\n", "alice2\n"} {
		code, stdout, stderr := runCLI(t, alice, typed, "account", "delete")
		if code != ExitError || !strings.Contains(stdout, "Type the username to confirm") || !strings.Contains(stderr, "not deleted") {
			t.Fatalf("typed %q: exit %d, stdout %q, stderr %q", typed, code, stdout, stderr)
		}
		if _, err := st.AccountByID(ctx, a.ID); err != nil {
			t.Fatalf("typed %q: the account went: %v", typed, err)
		}
		if _, err := os.Stat(alice); err != nil {
			t.Fatalf("typed %q: the profile went: %v", typed, err)
		}
	}
	code, stdout, stderr := runCLI(t, alice, "  alice \n", "account", "delete")
	if code != ExitOK || !strings.Contains(stdout, "account alice deleted") {
		t.Fatalf("confirmed: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := st.AccountByID(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the account is still on the server: %v", err)
	}
	if _, err := os.Stat(alice); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the profile is still there: %v", err)
	}
	code, _, stderr = runCLI(t, alice, "", "account", "delete", "--yes")
	if code != ExitError || !strings.Contains(stderr, "no profile") {
		t.Fatalf("deleting again: exit %d, %q", code, stderr)
	}

	// --yes asks nothing; the username was free again.
	again := registerCLI(t, url, "alice")
	if code, stdout, stderr := runCLI(t, again, "", "account", "delete", "--yes"); code != ExitOK || strings.Contains(stdout, "confirm") {
		t.Fatalf("--yes: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := st.AccountByUsername(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after --yes: %v", err)
	}
}

func TestAccountSealedFromAnyone(t *testing.T) {
	url, st := testServer(t)
	bob := registerCLI(t, url, "bob")
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"on"}, true},
		{nil, true},
		{[]string{"off"}, false},
	} {
		code, stdout, stderr := runCLI(t, bob, "", append([]string{"account", "sealed-from-anyone"}, tt.args...)...)
		state := "off"
		if tt.want {
			state = "on"
		}
		if code != ExitOK || !strings.Contains(stdout, "from anyone: "+state) {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", tt.args, code, stdout, stderr)
		}
		a, err := st.AccountByUsername(context.Background(), "bob")
		if err != nil || a.UnrestrictedUnidentifiedAccess != tt.want {
			t.Fatalf("%q: the server holds %+v, %v", tt.args, a, err)
		}
	}
}
