package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/frankingkey"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/internal/store/sqlite"
	"github.com/doorless/doorless/protocol/keys"
)

// registerAccount registers name and returns its credentials.
func registerAccount(t *testing.T, url, name string) api.RegisterResponse {
	t.Helper()
	id, err := keys.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spk, err := keys.GenerateSignedPreKey(id, 1, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kpk, err := keys.GenerateKyberPreKey(id, 1, keys.KEMKyber1024, true, time.Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	req := api.RegisterRequest{
		Username: name, IdentityKey: id.PublicKey().Bytes(), RegistrationID: 7,
		Keys: api.KeyUpload{
			SignedPreKey:          &api.SignedPreKey{ID: 1, PublicKey: spk.KeyPair.Public.Bytes(), Signature: spk.Signature},
			LastResortKyberPreKey: &api.KyberPreKey{ID: 1, PublicKey: kpk.KeyPair.Public.Bytes(), Signature: kpk.Signature},
		},
	}
	if req.DeviceList, err = devicelist.Sign(id, &devicelist.List{Version: 1, Devices: []uint32{1}}, rand.Reader); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	resp, err := http.Post(url+api.PathAccounts, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out api.RegisterResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("register %s: %d, %v", name, resp.StatusCode, err)
	}
	return out
}

// frankingKeyOf fetches the account's franking key from the server.
func frankingKeyOf(t *testing.T, url string, r api.RegisterResponse) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", url+api.PathFrankingKey, nil)
	req.SetBasicAuth(api.Login(r.AccountID, r.DeviceID), r.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var k api.FrankingKeyResponse
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil || len(k.Key) != 32 {
		t.Fatalf("franking key: %d, %v", resp.StatusCode, err)
	}
	return k.Key
}

// TestFrankingSecret: the server makes its franking secret on first start
// (32 bytes, 0600), derives the account keys it hands out from it, and
// keeps it across restarts.
func TestFrankingSecret(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cmd, url, stderr := start(t, "--data", data)
	alice := registerAccount(t, url, "alice")
	key := frankingKeyOf(t, url, alice)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr)
	}
	path := filepath.Join(data, frankingkey.File)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("%s: %v, %v; want 32 bytes, 0600", path, fi, err)
	}
	fs, err := frankingkey.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := fs.AccountKey(alice.AccountID); !bytes.Equal(key, want[:]) {
		t.Fatal("the account key is not derived from franking.key")
	}
	_, url, _ = start(t, "--data", data)
	if again := frankingKeyOf(t, url, alice); !bytes.Equal(again, key) {
		t.Fatal("the account key changed across a restart")
	}
}

// TestReportsCommand: "reports list" and "reports show" print the stored
// reports with the sender's username, or its id once the account is gone.
func TestReportsCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if out, err := command(t, "invite", "--data", data).CombinedOutput(); err != nil { // makes the database
		t.Fatalf("invite: %v\n%s", err, out)
	}
	st, err := sqlite.Open(filepath.Join(data, "doorless.db"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 18, 30, 0, 0, time.UTC)
	gone, reporter := api.NewUUID(), api.NewUUID()
	r := &store.Report{ID: api.NewUUID(), Reporter: reporter, Sender: gone, Sealed: true, CommitmentHash: make([]byte, 32),
		ToMany: true, Sent: at.Add(-time.Hour), Queued: at.Add(-time.Hour), Reported: at, Body: "the whole\nabusive text", Reason: "harassment"}
	if err := st.AddReport(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := command(t, "reports", "list", "--data", data).Output()
	if err != nil {
		t.Fatalf("reports list: %v", err)
	}
	for _, want := range []string{r.ID, "2026-11-23 18:30", gone + " (account deleted)", "yes", "unproven", "harassment"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("reports list lacks %q:\n%s", want, out)
		}
	}
	out, err = command(t, "reports", "show", r.ID, "--data", data).Output()
	if err != nil {
		t.Fatalf("reports show: %v", err)
	}
	for _, want := range []string{"report:", r.ID, "sealed sender: yes", "delivery to the reporter by this sender unproven",
		"reports of it: 1, by 1 account", "reason:", "harassment", "text:\nthe whole\nabusive text\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("reports show lacks %q:\n%s", want, out)
		}
	}
	for _, args := range [][]string{{"reports"}, {"reports", "delete"}, {"reports", "show"}, {"reports", "show", "--data", data},
		{"reports", "list", "extra", "--data", data}, {"reports", "show", api.NewUUID(), "--data", data},
		{"reports", "list", "--data", t.TempDir()}} {
		if out, err := command(t, args...).CombinedOutput(); err == nil {
			t.Errorf("%q: exit 0:\n%s", args, out)
		}
	}
}
