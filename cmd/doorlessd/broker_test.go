package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/doorless/doorless/internal/api"
)

// TestBrokerFlag: with --broker doorlessd connects to NATS before it
// listens, and refuses to start without it; it never logs the URL's
// credentials.
func TestBrokerFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := ln.Addr().String()
	ln.Close()
	cmd := command(t, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--broker", "nats://doorless:hunter2@"+nothing)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("doorlessd started without its NATS")
	}
	if !strings.Contains(string(out), "nats") || strings.Contains(string(out), "hunter2") {
		t.Fatalf("output:\n%s", out)
	}

	url := os.Getenv("DOORLESS_TEST_NATS")
	if url == "" {
		t.Skip("DOORLESS_TEST_NATS is not set (e.g. nats://127.0.0.1:4222): skipping doorlessd over NATS")
	}
	proc, base, stderr := start(t, "--data", t.TempDir(), "--broker", url)
	if code := register(t, base, "alice", ""); code != http.StatusOK {
		t.Fatalf("register: %d", code)
	}
	resp, err := http.Get(base + api.PathHealth)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	proc.Process.Signal(syscall.SIGTERM)
	if err := proc.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr:\n%s", err, stderr)
	}
	if strings.Contains(stderr.String(), "lost nats") {
		t.Fatalf("closing the broker was logged as a loss:\n%s", stderr)
	}
}

// TestBrokerPrefixFlag: doorlessd refuses a --broker-prefix that is not a
// NATS subject prefix, or one without --broker, before it opens anything.
func TestBrokerPrefixFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--broker-prefix", "staging"}, "--broker-prefix needs --broker"},
		{[]string{"--broker", "nats://127.0.0.1:1", "--broker-prefix", "a.*"}, `--broker-prefix "a.*" is not a NATS subject prefix`},
		{[]string{"--broker", "nats://127.0.0.1:1", "--broker-prefix", ">"}, "is not a NATS subject prefix"},
		{[]string{"--broker", "nats://127.0.0.1:1", "--broker-prefix", "a..b"}, "is not a NATS subject prefix"},
		{[]string{"--broker", "nats://127.0.0.1:1", "--broker-prefix", "a."}, "is not a NATS subject prefix"},
		{[]string{"--broker", "nats://127.0.0.1:1", "--broker-prefix", "a b"}, "is not a NATS subject prefix"},
		{[]string{"--broker", "nats://127.0.0.1:1", "--broker-prefix", ""}, "is not a NATS subject prefix"},
	} {
		data := filepath.Join(t.TempDir(), "data")
		cmd := command(t, append([]string{"--data", data, "--listen", "127.0.0.1:0"}, tc.args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%q: %v, want exit status 2; stderr:\n%s", tc.args, err, &stderr)
			continue
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q, want %q", tc.args, &stderr, tc.want)
		}
		if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%q: the data directory was made before the flags were checked (%v)", tc.args, err)
		}
	}
}

// TestBrokerPrefixSeparates: two deployments over copies of one database
// (a staging copy of production, say: the same accounts, so the same
// devices' subjects under one prefix) share one NATS, each with its own
// --broker-prefix. A signal for a device goes to a subject under the
// prefix of the node that sent it, and only there, so the other
// deployment, subscribed under its own prefix, never hears it.
func TestBrokerPrefixSeparates(t *testing.T) {
	url := os.Getenv("DOORLESS_TEST_NATS")
	if url == "" {
		t.Skip("DOORLESS_TEST_NATS is not set (e.g. nats://127.0.0.1:4222): skipping doorlessd's NATS subject prefix")
	}
	base := "doorlesstest." + hex.EncodeToString(randomBytes(t, 8))
	prefixA, prefixB := base+".production", base+".staging"

	// The observer hears every subject under base.
	nc, err := nats.Connect(url, nats.Name("doorless-test-observer"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	heard := make(chan string, 64)
	sub, err := nc.Subscribe(base+".>", func(m *nats.Msg) { heard <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// Production gets two accounts; staging is a copy of its data.
	dataA, dataB := t.TempDir(), t.TempDir()
	proc, urlA, stderr := start(t, "--data", dataA, "--broker", url, "--broker-prefix", prefixA)
	alice, bob := registerAccount(t, urlA, "alice"), registerAccount(t, urlA, "bob")
	proc.Process.Signal(syscall.SIGTERM)
	if err := proc.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr:\n%s", err, stderr)
	}
	if err := os.CopyFS(dataB, os.DirFS(dataA)); err != nil {
		t.Fatal(err)
	}
	_, urlA, _ = start(t, "--data", dataA, "--broker", url, "--broker-prefix", prefixA)
	_, urlB, _ := start(t, "--data", dataB, "--broker", url, "--broker-prefix", prefixB)

	// bob fetching alice's keys (which leaves her without one-time
	// prekeys) signals her device to refill, on each deployment in turn.
	var subjects []string
	for _, d := range []struct{ url, prefix string }{{urlA, prefixA}, {urlB, prefixB}} {
		req, _ := http.NewRequest("GET", d.url+"/v1/keys/alice/1", nil)
		req.SetBasicAuth(api.Login(bob.AccountID, bob.DeviceID), bob.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("bob fetches alice's keys: %d", resp.StatusCode)
		}
		select {
		case s := <-heard:
			rest, ok := strings.CutPrefix(s, d.prefix+".")
			if !ok || strings.Contains(rest, ".") || strings.Contains(s, alice.AccountID) {
				t.Fatalf("the node with prefix %s signalled on %q; want %s.<hash>", d.prefix, s, d.prefix)
			}
			subjects = append(subjects, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("no signal under %s", d.prefix)
		}
	}
	// The same device, so the same hash: only the prefix tells the
	// deployments apart.
	if a, b := strings.TrimPrefix(subjects[0], prefixA), strings.TrimPrefix(subjects[1], prefixB); a != b {
		t.Fatalf("alice's device has subjects %v: not the same device under two prefixes", subjects)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-heard:
		t.Fatalf("another signal on %q", s)
	default:
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
