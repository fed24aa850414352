package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var linkCodeRE = regexp.MustCompile(`doorless devices add (doorless-link:[A-Za-z0-9_-]+)`)

// link runs "doorless link" for u, approves the code it prints with
// approver's "devices add", and waits for the link to finish.
func (u *user) link(s *server, approver *user) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.doorless, "--profile", u.profile, "link", "--server", s.url)
	cmd.Env = append(cleanEnv(), u.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		u.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	var out strings.Builder
	code := ""
	sc := bufio.NewScanner(stdout)
	for code == "" && sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if m := linkCodeRE.FindStringSubmatch(sc.Text()); m != nil {
			code = m[1]
		}
	}
	if code == "" {
		cmd.Wait()
		u.t.Fatalf("link printed no code:\n%s%s", out.String(), stderr.String())
	}
	approved := approver.must("", "devices", "add", code)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		u.t.Fatalf("link: %v\n%s%s", err, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "linked: "+approver.name) || !strings.Contains(approved, "approved") {
		u.t.Fatalf("link said %q, devices add said %q", out.String(), approved)
	}
}

// TestLinkedDevicesGroupsTimers drives linking, transcripts, a group and a
// disappearing-message timer through the real binaries.
func TestLinkedDevicesGroupsTimers(t *testing.T) {
	t.Parallel()
	s, alice, bob := startPair(t)
	alice2 := newUser(t, "alice")
	alice2.profile = filepath.Join(t.TempDir(), "alice2")
	alice2.link(s, alice)

	if out := alice.must("", "devices"); strings.Count(out, "device ") != 2 || !strings.Contains(out, "(this device)") {
		t.Fatalf("devices:\n%s", out)
	}
	alice.must("", "send", "bob", "hello from the laptop")
	wantTexts(t, bob.receive(), "alice", "hello from the laptop")
	// The transcript, then bob's delivery receipt, which reaches every
	// device of alice's.
	sent := alice2.receive()
	if len(sent) != 2 || !sent[0].Outgoing || sent[0].To != "bob" || sent[0].Text != "hello from the laptop" ||
		sent[1].Event != "receipt" || sent[1].From != "bob" {
		t.Fatalf("alice's second device got %+v", sent)
	}

	alice.must("", "group", "create", "club", "bob")
	if out := bob.must("", "receive"); !strings.Contains(out, "alice added you to #club") {
		t.Fatalf("bob's receive:\n%s", out)
	}
	bob.must("", "group", "send", "club", "hi club")
	for _, u := range []*user{alice, alice2} {
		got := u.receive()
		var found bool
		for _, m := range got {
			if m.Event == "message" && m.Text == "hi club" && m.From == "bob" && m.Group != nil && m.Group.Title == "club" {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s's device got %+v", u.profile, got)
		}
	}
	if out := alice.must("", "group", "show", "club"); !strings.Contains(out, "alice (admin)") || !strings.Contains(out, "bob") {
		t.Fatalf("group show:\n%s", out)
	}
	if out := bob.fail("", "group", "add", "club", "alice"); !strings.Contains(out, "admin") {
		t.Fatalf("a member's change: %s", out)
	}

	alice.must("", "timer", "bob", "1h")
	if out := bob.must("", "receive"); !strings.Contains(out, "set disappearing messages to 1h") {
		t.Fatalf("bob's receive after the timer:\n%s", out)
	}
	alice.must("", "send", "bob", "this one disappears")
	if out := bob.must("", "receive"); !strings.Contains(out, "[disappears after 1h]") {
		t.Fatalf("bob's receive:\n%s", out)
	}
	if out := bob.must("", "messages", "alice"); !strings.Contains(out, "this one disappears") {
		t.Fatalf("bob's history:\n%s", out)
	}

	alice.must("", "devices", "remove", "2")
	if out := alice2.fail("", "receive"); !strings.Contains(out, "removed") {
		t.Fatalf("the removed device's receive: %s", out)
	}
	if _, err := os.Stat(alice2.profile); err != nil {
		t.Fatal(err)
	}
}

// TestFileThroughTheBinaries: send --file, saved by receive under the
// profile's downloads with a sanitised name; the server's data directory
// holds no byte of the file in the clear.
func TestFileThroughTheBinaries(t *testing.T) {
	t.Parallel()
	s, alice, bob := startPair(t)
	secret := strings.Repeat("confidential attachment line\n", 2000)
	src := filepath.Join(t.TempDir(), "report.txt")
	if err := os.WriteFile(src, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	alice.must("", "send", "bob", "--file", src, "the report")
	got := bob.receive()
	if len(got) != 1 || got[0].Text != "the report" || got[0].Attachment == nil {
		t.Fatalf("bob got %+v", got)
	}
	a := got[0].Attachment
	if filepath.Base(a.Path) != "report.txt" || !strings.HasPrefix(a.ContentType, "text/plain") || filepath.Dir(a.Path) != filepath.Join(bob.profile, "downloads") {
		t.Fatalf("attachment %+v", a)
	}
	b, err := os.ReadFile(a.Path)
	if err != nil || string(b) != secret {
		t.Fatalf("saved file differs: %v", err)
	}
	if scanFiles(t, s.data, "confidential attachment") == 0 {
		t.Fatal("the server's data directory holds no files")
	}
}
