package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/auditor/auditortest"
	"github.com/doorless/doorless/kt"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// newLog serves a new, empty log over HTTP and makes, in a new state
// directory, an auditor key whose cosignatures the log collects.
func newLog(t *testing.T) (l *auditortest.Server, url, state string) {
	t.Helper()
	keys, err := auditortest.NewKeys("doorless.test/kt")
	if err != nil {
		t.Fatal(err)
	}
	if l, err = auditortest.New(keys); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	state = t.TempDir()
	code, vkey, stderr := runCmd(t, "key", "--state", state, "--name", "auditor.test/cmd")
	if code != 0 {
		t.Fatalf("key: %d %q", code, stderr)
	}
	l.AddAuditor(strings.TrimSpace(vkey))
	return l, srv.URL, state
}

func TestKey(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	code, out, errOut := runCmd(t, "key", "--state", state, "--name", "auditor.test/cmd")
	if code != 0 || !strings.HasPrefix(out, "auditor.test/cmd+") || !strings.Contains(errOut, "made a cosigner key") {
		t.Fatalf("key: %d %q %q", code, out, errOut)
	}
	if fi, err := os.Stat(filepath.Join(state, "cosigner.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v", err)
	}
	code, again, errOut := runCmd(t, "key", "--state", state)
	if code != 0 || again != out || errOut != "" {
		t.Fatalf("key again: %d %q %q", code, again, errOut)
	}
	if _, err := kt.NewCosignatureVerifier(strings.TrimSpace(out)); err != nil {
		t.Fatalf("printed key: %v", err)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--server", "http://x", "extra"},
		{"--server", "http://x", "--interval", "0s"},
		{"--server", "http://x", "--max-epoch-age", "0s"},
		{"--server", "http://x", "--max-epoch-age", "-1h"},
		{"--server", "http://x", "--log-format", "xml"},
		{"--bogus"},
		{"key", "extra"},
	} {
		if code, _, _ := runCmd(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestOnce(t *testing.T) {
	l, url, state := newLog(t)
	start := time.Now()
	for i := range 3 {
		if err := l.AppendLabels(start.Add(time.Duration(i)*time.Second), "alice", "bob"); err != nil {
			t.Fatal(err)
		}
	}

	code, stdout, stderr := runCmd(t, "--server", url, "--state", state, "--once")
	if code != 0 || stdout != "log size 3, cosigned: true\n" {
		t.Fatalf("once: %d %q %q", code, stdout, stderr)
	}
	if n := len(l.Posted()); n != 1 {
		t.Fatalf("%d cosignatures", n)
	}

	// A transient error: exit 1, and the next run is fine.
	l.Withhold(1)
	if err := l.AppendLabels(start.Add(10*time.Second), "carol"); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, "--server", url, "--state", state, "--once"); code != exitError {
		t.Fatalf("withheld epochs: exit %d %q", code, stderr)
	}
	l.Withhold(-1)

	// An audit failure: exit 3, recorded, and every later run exits 3.
	l.Rewrite(func(i int, c *kt.EpochChanges) {
		if i == 3 {
			c.Leaves[0].Counter += 2
		}
	})
	code, _, stderr = runCmd(t, "--server", url, "--state", state, "--once")
	if code != exitFailure || !strings.Contains(stderr, "AUDIT FAILURE at epoch 3") || !strings.Contains(stderr, "failure.json") {
		t.Fatalf("bad epoch: exit %d %q", code, stderr)
	}
	l.Rewrite(nil)
	code, _, stderr = runCmd(t, "--server", url, "--state", state, "--once")
	if code != exitFailure || !strings.Contains(stderr, "earlier run") {
		t.Fatalf("after the failure: exit %d %q", code, stderr)
	}
	if n := len(l.Posted()); n != 1 {
		t.Fatalf("%d cosignatures", n)
	}
}

// Without --once the auditor runs until it is stopped.
func TestRunUntilCancelled(t *testing.T) {
	_, url, _ := newLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var o, e bytes.Buffer
	code := run(ctx, []string{"--server", url, "--state", t.TempDir(), "--interval", "10ms", "--name", "auditor.test/run"}, &o, &e)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e.String())
	}
}

// A log whose newest epoch is older than --max-epoch-age is not cosigned:
// exit 4, and no failure is recorded.
func TestOnceStale(t *testing.T) {
	l, url, state := newLog(t)
	if err := l.AppendLabels(time.Now().Add(-2*time.Hour), "alice"); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCmd(t, "--server", url, "--state", state, "--once")
	if code != exitStale || stdout != "" || !strings.Contains(stderr, "NOT COSIGNING") || !strings.Contains(stderr, "too old") {
		t.Fatalf("stale log: exit %d %q %q", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "failure.json")); err == nil {
		t.Fatal("a stale log was recorded as an audit failure")
	}
	if n := len(l.Posted()); n != 0 {
		t.Fatalf("%d cosignatures of a stale log", n)
	}
	code, stdout, stderr = runCmd(t, "--server", url, "--state", state, "--once", "--max-epoch-age", "3h")
	if code != 0 || stdout != "log size 1, cosigned: true\n" {
		t.Fatalf("--max-epoch-age 3h: exit %d %q %q", code, stdout, stderr)
	}
}
