package cli

import (
	"strings"
	"testing"
)

// mustCLI runs one command line against the profile, without standard
// input, and fails the test unless it succeeds; it returns standard output.
func mustCLI(t *testing.T, profile string, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, profile, "", args...)
	if code != ExitOK {
		t.Fatalf("%q: exit %d: %s", args, code, errOut)
	}
	return out
}

func TestReceiptsCommand(t *testing.T) {
	url, _ := testServer(t)
	alice, bob := registerCLI(t, url, "alice"), registerCLI(t, url, "bob")
	must := func(profile string, args ...string) string { t.Helper(); return mustCLI(t, profile, args...) }
	must(alice, "send", "bob", "are you there?")
	if out := must(bob, "receive"); !strings.Contains(out, "are you there?") {
		t.Fatalf("bob's receive:\n%s", out)
	}
	if out := must(alice, "receive"); !strings.Contains(out, "*** bob got 1 of your message\n") {
		t.Fatalf("alice's receive after delivery:\n%s", out)
	}
	if out := must(alice, "messages", "bob"); !strings.Contains(out, "[delivered to bob]") {
		t.Fatalf("alice's history:\n%s", out)
	}
	must(bob, "messages", "alice") // shown: read
	if out := must(alice, "receive", "--json"); !strings.Contains(out, `"event":"receipt","from":"bob"`) || !strings.Contains(out, `"read":true`) {
		t.Fatalf("alice's receive after reading:\n%s", out)
	}
	if out := must(alice, "messages", "bob"); !strings.Contains(out, "[read by bob]") {
		t.Fatalf("alice's history:\n%s", out)
	}

	if out := must(bob, "receipts"); out != "delivery receipts: on\nread receipts: on\n" {
		t.Fatalf("receipts:\n%s", out)
	}
	if out := must(bob, "receipts", "read", "off"); out != "delivery receipts: on\nread receipts: off\n" {
		t.Fatalf("receipts read off:\n%s", out)
	}
	must(alice, "send", "bob", "read quietly")
	must(bob, "receive")
	must(bob, "messages", "alice")
	if out := must(alice, "receive"); !strings.Contains(out, "bob got 1") || strings.Contains(out, "bob read") {
		t.Fatalf("alice's receive with bob's read receipts off:\n%s", out)
	}
	if out := must(bob, "receipts", "off"); out != "delivery receipts: off\nread receipts: off\n" {
		t.Fatalf("receipts off:\n%s", out)
	}
	for _, args := range [][]string{{"receipts", "maybe"}, {"receipts", "read", "on", "now"}} {
		if code, _, _ := runCLI(t, bob, "", args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, ExitUsage)
		}
	}
}
