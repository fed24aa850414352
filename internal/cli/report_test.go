package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/client"
)

func TestReportCommand(t *testing.T) {
	url, st := testServer(t)
	alice, bob := registerCLI(t, url, "alice"), registerCLI(t, url, "bob")
	must := func(profile string, args ...string) string { t.Helper(); return mustCLI(t, profile, args...) }
	must(alice, "send", "bob", "you will regret this")
	must(bob, "receive")
	out := must(bob, "messages", "alice")
	m := regexp.MustCompile(`alice: you will regret this\n    \[id ([0-9a-f-]{36})\]\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("bob's history shows no message id:\n%s", out)
	}
	id := m[1]
	out = must(bob, "report", "Alice", id, "--reason", "a threat")
	if !strings.HasPrefix(out, "reported message "+id+" from alice to the server's operator (report ") {
		t.Fatalf("report:\n%s", out)
	}
	reports, err := st.Reports(t.Context())
	if err != nil || len(reports) != 1 || reports[0].Body != "you will regret this" || reports[0].Reason != "a threat" {
		t.Fatalf("the server keeps %+v, %v", reports, err)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"report", "alice", id}, ExitError, "you reported that message already"},
		{[]string{"report", "alice", "no-such-id"}, ExitError, "no such message from that user"},
		{[]string{"report", "alice"}, ExitUsage, "want USERNAME MESSAGE-ID"},
	} {
		code, _, errOut := runCLI(t, bob, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %q; want %d, %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestPrintDropped(t *testing.T) {
	var b strings.Builder
	printEvent(&b, &client.DroppedMessage{From: "mal\x1b[2Jlory", FromDevice: 2, Received: time.Now()}, time.UTC)
	want := "*** a message from mal\uFFFD[2Jlory (device 2) was dropped unread: it did not match its franking commitment, so it could not have been reported\n"
	if b.String() != want {
		t.Fatalf("printed %q, want %q", b.String(), want)
	}
	if j := toJSON(&client.DroppedMessage{From: "mallory", FromDevice: 2, Received: time.UnixMilli(0)}); j.Event != "dropped" || j.From != "mallory" || j.Device != 2 || j.Text != "" {
		t.Fatalf("json %+v", j)
	}
}
