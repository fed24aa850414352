package main

import (
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

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
