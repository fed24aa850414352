package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/client"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
)

// TestTransparencyCommands: status on a quiet log, then a ghost identity
// key written into the server's store behind alice's back: her status
// shows the alert loudly and exits 3, every other command warns, bob's
// send to her is refused, and clear clears.
func TestTransparencyCommands(t *testing.T) {
	url, st := testServer(t)
	alice, bob := registerCLI(t, url, "alice"), registerCLI(t, url, "bob")

	code, out, errOut := runCLI(t, alice, "", "transparency", "status")
	if code != ExitOK || !strings.Contains(out, "log:          doorless.test/kt\n") || !strings.Contains(out, "alerts:       none\n") ||
		!strings.Contains(out, "auditors:     none required\n") || strings.Contains(out, "last check:   never") || errOut != "" {
		t.Fatalf("status: exit %d\n%s\nstderr: %s", code, out, errOut)
	}

	// The operator (or whoever forces it) swaps alice's identity key in
	// the store, and has the sequencer publish it.
	a, err := st.AccountByUsername(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+serverDB(t, st)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE accounts SET identity_key = ? WHERE id = ?`, ghost.Public.Bytes(), a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO kt_pending (username, account_id, identity_key, device_list)
		SELECT a.username, a.id, a.identity_key, l.signed FROM accounts a JOIN device_lists l ON l.account_id = a.id
		WHERE a.id = ?`, a.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut = runCLI(t, alice, "", "transparency", "status")
		if code != ExitOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != ExitAlert || !strings.Contains(out, "!!! KEY TRANSPARENCY ALERT") || !strings.Contains(out, "(identity_key)") ||
		!strings.Contains(out, "doorless transparency clear") {
		t.Fatalf("status with a ghost key: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	// Every command warns while the alert is stored.
	code, _, errOut = runCLI(t, alice, "", "receipts")
	if code != ExitOK || !strings.Contains(errOut, "!!! KEY TRANSPARENCY ALERT") || !strings.Contains(errOut, "doorless transparency status") {
		t.Fatalf("receipts with an alert: exit %d, stderr %q", code, errOut)
	}
	// Bob gets a proof of the ghost key, which the server's bundle (the
	// ghost key too, now) matches... but alice's devices hold no such key:
	// the bundle's prekeys are not signed by it.
	if code, _, errOut := runCLI(t, bob, "", "send", "alice", "hi"); code != ExitError {
		t.Fatalf("bob's send to the ghost: exit %d, stderr %q", code, errOut)
	}

	code, out, _ = runCLI(t, alice, "", "transparency", "clear")
	if code != ExitOK || !strings.HasPrefix(out, "cleared ") {
		t.Fatalf("clear: exit %d: %s", code, out)
	}
	code, out, errOut = runCLI(t, alice, "", "transparency", "status", "--offline")
	if code != ExitOK || !strings.Contains(out, "alerts:       none") || errOut != "" {
		t.Fatalf("status after clearing: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, alice, "", "receipts"); code != ExitOK || errOut != "" {
		t.Fatalf("receipts after clearing: exit %d, stderr %q", code, errOut)
	}
}

// TestRequireAuditor: a profile that requires an auditor's cosignatures
// refuses lookups from a log no such auditor cosigned.
func TestRequireAuditor(t *testing.T) {
	url, _ := testServer(t)
	alice := registerCLI(t, url, "alice")
	registerCLI(t, url, "bob")
	_, vkey, err := kt.GenerateCosignerKey(rand.Reader, "auditor.example")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, alice, "", "transparency", "require-auditor", vkey, "--max-lag", "2d")
	if code != ExitOK || out != "lookups now need 1 of 1 auditors' cosignatures, at most 48h old\n" {
		t.Fatalf("require-auditor: exit %d: %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, alice, "", "transparency", "status", "--offline")
	if code != ExitOK || !strings.Contains(out, "auditors:     1 of 1 must have cosigned within 48h\n") || !strings.Contains(out, vkey) {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	code, _, errOut = runCLI(t, alice, "", "send", "bob", "hi")
	if code != ExitError || !strings.Contains(errOut, "auditor cosignatures you require") {
		t.Fatalf("send without cosignatures: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runCLI(t, alice, "", "transparency", "require-auditor", "not-a-key"); code != ExitError {
		t.Fatalf("a malformed key: exit %d", code)
	}
}

// TestStaleLog: a server whose log's newest epoch is two hours old (here,
// a server whose clock is two hours behind: it makes its epochs, but dated
// then) is refused with a clear message, and the owner's status shows the
// stale alert.
func TestStaleLog(t *testing.T) {
	url, _ := testServerWith(t, func(c *server.Config) {
		c.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	})
	alice, bob := registerCLI(t, url, "alice"), registerCLI(t, url, "bob")
	const msg = "the server's key transparency log has not moved for over an hour: it may be showing this device an old log"
	code, _, errOut := runCLI(t, alice, "", "send", "bob", "hi")
	if code != ExitError || !strings.Contains(errOut, msg) {
		t.Fatalf("send on a stale log: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut := runCLI(t, bob, "", "transparency", "status")
	if code != ExitAlert || !strings.Contains(out, "(stale)") || !strings.Contains(out, "epoch age:    at most 1h") || !strings.Contains(errOut, msg) {
		t.Fatalf("status on a stale log: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
}

func TestPrintAlert(t *testing.T) {
	a := &client.TransparencyAlert{ID: 3, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: client.AlertIdentityKey,
		Subject: "alice", Detail: "your account's entry holds another identity key\x1b[2J"}
	var out bytes.Buffer
	printEvent(&out, a, time.UTC)
	if !strings.Contains(out.String(), "!!! KEY TRANSPARENCY ALERT") || !strings.Contains(out.String(), "[2026-01-02 03:04:05] alice (identity_key)") ||
		strings.Contains(out.String(), "\x1b") {
		t.Fatalf("printed:\n%s", out.String())
	}
	j := toJSON(a)
	if j.Event != "transparency_alert" || j.Alert == nil || j.Alert.ID != 3 || j.Alert.Kind != "identity_key" {
		t.Fatalf("json %+v", j)
	}
}

// TestTransparencyUnchecked: the server answers alice's lookups of her own
// entry with an error (and only those), and her last check that succeeded
// is four hours old: status says when that was, shows the unchecked alert
// and exits 3.
func TestTransparencyUnchecked(t *testing.T) {
	var refuse atomic.Bool
	url, _ := testServerWrapped(t, nil, func(h http.Handler) http.Handler {
		own := strings.Replace(api.PathTransparencyLookup, "{username}", "alice", 1)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if refuse.Load() && r.URL.Path == own {
				http.Error(w, "no", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	alice := registerCLI(t, url, "alice")
	refuse.Store(true)
	// The last check that succeeded, four hours ago.
	last := time.Now().Add(-4 * time.Hour).Truncate(time.Second)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(alice, client.ProfileFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE kt_owner SET checked = ?`, last.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, alice, "", "transparency", "status")
	if code != ExitAlert || !strings.Contains(out, "last check:   failed now; the last that succeeded: "+last.Format(time.DateTime)+"\n") ||
		!strings.Contains(out, "unchecked:    an alert after 3h without a check that succeeds\n") ||
		!strings.Contains(out, "!!! KEY TRANSPARENCY ALERT: 1 alert(s).") || !strings.Contains(out, "could not check your account's entry") ||
		!strings.Contains(out, "(unchecked): this device could not check your account's entry in the log for over 3h") ||
		!strings.Contains(errOut, "the check failed") {
		t.Fatalf("status with checks failing for four hours: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	// Once the checks succeed again, the alert stays until cleared.
	refuse.Store(false)
	code, out, _ = runCLI(t, alice, "", "transparency", "status")
	if code != ExitAlert || !strings.Contains(out, "(unchecked)") || strings.Contains(out, "failed now") {
		t.Fatalf("status once the check succeeds: exit %d\n%s", code, out)
	}
}

// TestDeviceAddedNotice: alice's laptop, which her first device approved,
// approves a tablet: her first device's status shows a notice (not an
// alert) naming the tablet and how to remove it, and exits 3; every other
// command shows the notice.
func TestDeviceAddedNotice(t *testing.T) {
	url, _ := testServer(t)
	alice := registerCLI(t, url, "alice")
	link := func(approve func(code string) error) *client.Client {
		t.Helper()
		codes := make(chan string, 1)
		errs := make(chan error, 1)
		go func() {
			errs <- approve(<-codes)
		}()
		c, err := client.Link(context.Background(), filepath.Join(t.TempDir(), "device"), url, client.Options{}, func(code string) error {
			codes <- code
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	laptop := link(func(code string) error {
		if code, _, errOut := runCLI(t, alice, "", "devices", "add", code); code != ExitOK {
			return errors.New(errOut)
		}
		return nil
	})
	if code, out, errOut := runCLI(t, alice, "", "transparency", "status"); code != ExitOK {
		t.Fatalf("status after alice's own link: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	tablet := link(func(code string) error {
		_, err := laptop.ApproveLink(context.Background(), code)
		return err
	})
	code, out, errOut := runCLI(t, alice, "", "transparency", "status")
	want := fmt.Sprintf("if you did not add it: doorless devices remove %d\n", tablet.DeviceID())
	if code != ExitAlert || !strings.Contains(out, "!!! KEY TRANSPARENCY NOTICE: 1 notice(s).") || strings.Contains(out, "ALERT") ||
		!strings.Contains(out, "Another of your devices added a device to your account. If you approved that link, all is well.") ||
		!strings.Contains(out, "(device_added)") || !strings.Contains(out, want) {
		t.Fatalf("status after the laptop linked a tablet: exit %d\n%s\nstderr: %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, alice, "", "receipts")
	if code != ExitOK || !strings.Contains(errOut, "!!! KEY TRANSPARENCY NOTICE") {
		t.Fatalf("receipts with a notice: exit %d, stderr %q", code, errOut)
	}
}
