package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/kt"
)

// TestTransparencyCommand: the server makes its key-transparency keys on
// first start (private files 0600), publishes a registration before
// answering, serves the keys and checkpoint that "transparency show"
// prints, keeps its origin across restarts, and refuses another origin.
func TestTransparencyCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	_, auditor, err := kt.GenerateCosignerKey(rand.Reader, "auditor.example")
	if err != nil {
		t.Fatal(err)
	}
	cmd, url, stderr := start(t, "--data", data, "--kt-origin", "chat.example/kt", "--kt-auditor", auditor)
	// The sequencer makes the log's first epoch when it starts; a
	// registration racing with it could land in that epoch. Wait for it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(url + api.PathTransparencyCheckpoint)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no first epoch: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := register(t, url, "alice", ""); code != http.StatusOK {
		t.Fatalf("register: %d", code)
	}
	resp, err := http.Get(url + api.PathTransparencyKeys)
	if err != nil {
		t.Fatal(err)
	}
	var keys api.TransparencyKeysResponse
	err = json.NewDecoder(resp.Body).Decode(&keys)
	resp.Body.Close()
	if err != nil || keys.Origin != "chat.example/kt" || len(keys.VRFKey) != 32 || len(keys.Auditors) != 1 || keys.Auditors[0] != auditor {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	resp, err = http.Get(url + api.PathTransparencyCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lk, err := note.NewVerifier(keys.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cp, note.VerifierList(lk))
	if err != nil {
		t.Fatalf("checkpoint %q: %v", cp, err)
	}
	if c, err := kt.ParseCheckpoint([]byte(n.Text)); err != nil || c.Origin != "chat.example/kt" || c.Size != 2 {
		t.Fatalf("checkpoint %+v, %v; want 2 epochs (the first, alice)", c, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr)
	}
	for name, want := range map[string]os.FileMode{"log.key": 0o600, "vrf.key": 0o600, "log.pub": 0o644, "origin": 0o644} {
		if fi, err := os.Stat(filepath.Join(data, "kt", name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("kt/%s: %v, %v", name, fi, err)
		}
	}

	out, err := command(t, "transparency", "show", "--data", data).CombinedOutput()
	for _, want := range []string{"origin: chat.example/kt\n", "log key: " + keys.LogKey + "\n",
		"vrf key: " + base64.StdEncoding.EncodeToString(keys.VRFKey) + "\n", "size: 2 epochs, 1 entries\n", "auditors: none has cosigned\n"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("transparency show: %v, lacks %q:\n%s", err, want, out)
		}
	}

	// The origin is fixed; without the flag the stored one is kept.
	if out, err := command(t, "--data", data, "--listen", "127.0.0.1:0", "--kt-origin", "other.example/kt").CombinedOutput(); err == nil {
		t.Fatalf("another origin accepted:\n%s", out)
	}
	_, url, _ = start(t, "--data", data)
	resp, err = http.Get(url + api.PathTransparencyKeys)
	if err != nil {
		t.Fatal(err)
	}
	var again api.TransparencyKeysResponse
	json.NewDecoder(resp.Body).Decode(&again)
	resp.Body.Close()
	if again.Origin != keys.Origin || again.LogKey != keys.LogKey || string(again.VRFKey) != string(keys.VRFKey) {
		t.Fatalf("keys after restart %+v, want %+v", again, keys)
	}

	for _, args := range [][]string{{"transparency"}, {"transparency", "burn"}, {"transparency", "show", "extra"},
		{"transparency", "show", "--data", t.TempDir()}} {
		if out, err := command(t, args...).CombinedOutput(); err == nil {
			t.Errorf("%q: exit 0:\n%s", args, out)
		}
	}
	if err := command(t, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--kt-auditor", "garbage").Run(); err == nil {
		t.Error("a malformed auditor key was accepted")
	}
}

// TestEpochInterval: with nothing to publish, the server still makes an
// epoch every --kt-epoch-interval; out-of-range intervals are refused.
func TestEpochInterval(t *testing.T) {
	_, url, _ := start(t, "--data", filepath.Join(t.TempDir(), "data"), "--kt-epoch-interval", "1s")
	size := func() uint64 {
		t.Helper()
		resp, err := http.Get(url + api.PathTransparencyCheckpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			return 0 // listening before its first epoch is stored
		}
		b, _ := io.ReadAll(resp.Body)
		text, _, ok := strings.Cut(string(b), "\n\n")
		c, err := kt.ParseCheckpoint([]byte(text + "\n"))
		if !ok || err != nil {
			t.Fatalf("checkpoint %q: %v", b, err)
		}
		return c.Size
	}
	// The first epoch at start, then one a second: wait (polling) for
	// two more.
	deadline := time.Now().Add(20 * time.Second)
	for size() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the log stayed at %d epochs for 20s with a 1s epoch interval", size())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, v := range []string{"0s", "500ms", "1h", "-1m", "soon"} {
		if out, err := command(t, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--kt-epoch-interval", v).CombinedOutput(); err == nil {
			t.Errorf("--kt-epoch-interval %s accepted:\n%s", v, out)
		}
	}
}
