package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

var reportedRE = regexp.MustCompile(`^reported message (\S+) from alice to the server's operator \(report ([0-9a-f-]{36})\)\n$`)

// TestReportThroughTheBinaries: alice sends bob an abusive message; bob
// reports it with doorless report; the operator finds it with doorlessd
// reports list and reads it, from alice, with its time, with doorlessd
// reports show.
func TestReportThroughTheBinaries(t *testing.T) {
	t.Parallel()
	s, alice, bob := startPair(t)
	const abuse = "you will regret this, bob"
	before := time.Now().UTC()
	alice.must("", "send", "bob", abuse)
	after := time.Now().UTC()
	msgs := bob.receive()
	wantTexts(t, msgs, "alice", abuse)
	id := msgs[0].ID

	// The history shows the id to report by.
	if out := bob.must("", "messages", "alice"); !strings.Contains(out, "[id "+id+"]") {
		t.Fatalf("doorless messages shows no id %s:\n%s", id, out)
	}
	out := bob.must("", "report", "alice", id, "--reason", "a threat")
	m := reportedRE.FindStringSubmatch(out)
	if m == nil || m[1] != id {
		t.Fatalf("doorless report printed %q", out)
	}
	reportID := m[2]
	if line := bob.fail("", "report", "alice", id); !strings.Contains(line, "already") {
		t.Fatalf("a second report said %q", line)
	}
	if line := alice.fail("", "report", "bob", id); !strings.Contains(line, "no such message") {
		t.Fatalf("a report of a message not received said %q", line)
	}

	list := runBinary(t, bin.doorlessd, nil, "", "reports", "list", "--data", s.data)
	if list.code != 0 || !strings.Contains(list.stdout, reportID) || !strings.Contains(list.stdout, "alice") {
		t.Fatalf("doorlessd reports list: exit %d\n%s%s", list.code, list.stdout, list.stderr)
	}
	show := runBinary(t, bin.doorlessd, nil, "", "reports", "show", reportID, "--data", s.data)
	if show.code != 0 {
		t.Fatalf("doorlessd reports show: exit %d\n%s%s", show.code, show.stdout, show.stderr)
	}
	for _, want := range []string{`(?m)^sender: +alice \(`, `(?m)^reporter: +bob \(`, `(?m)^reason: +a threat$`,
		`(?m)^text:\n` + regexp.QuoteMeta(abuse) + `$`} {
		if !regexp.MustCompile(want).MatchString(show.stdout) {
			t.Errorf("doorlessd reports show does not match %q:\n%s", want, show.stdout)
		}
	}
	// The time the server queued it.
	sm := sentRE.FindStringSubmatch(show.stdout)
	if sm == nil {
		t.Fatalf("doorlessd reports show shows no time sent:\n%s", show.stdout)
	}
	sent, err := time.Parse(time.RFC3339, sm[1])
	if err != nil || sent.Before(before.Truncate(time.Second)) || sent.After(after) {
		t.Fatalf("sent %s (%v), want between %s and %s", sm[1], err, before, after)
	}
}

var sentRE = regexp.MustCompile(`(?m)^sent: +(\S+)$`)
