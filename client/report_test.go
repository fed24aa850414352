package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/franking"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/internal/store"
)

// lastMessage returns the id of the newest message in c's conversation
// with, checking its text.
func lastMessage(t *testing.T, c *Client, with, text string) string {
	t.Helper()
	ms, err := c.Messages(ctxT(t), with, 1)
	if err != nil || len(ms) != 1 {
		t.Fatalf("%s's history with %s: %v, %v", c.Username(), with, ms, err)
	}
	if ms[0].Text != text {
		t.Fatalf("%s's last message with %s is %q, want %q", c.Username(), with, ms[0].Text, text)
	}
	return ms[0].ID
}

// storedReport returns the report the server keeps under id.
func (s *testServer) storedReport(t *testing.T, id string) *store.Report {
	t.Helper()
	r, err := s.st.Report(ctxT(t), id)
	if err != nil {
		t.Fatalf("the server keeps no report %s: %v", id, err)
	}
	return r
}

// TestReport: bob reports what alice sent him, named, sealed, to a group
// and with a file; the server verifies each and keeps it with alice as
// the sender. A second report of one message, a message that is not the
// user's, and a report whose content was altered on bob's device are
// refused.
func TestReport(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})

	check := func(id, reason, body string, sealed bool) *store.Report {
		t.Helper()
		rid, err := bob.Report(ctxT(t), "alice", id, reason)
		if err != nil {
			t.Fatalf("report of %q: %v", body, err)
		}
		r := s.storedReport(t, rid)
		if r.Sender != alice.AccountID() || r.Reporter != bob.AccountID() || r.Body != body || r.Reason != reason || r.Sealed != sealed {
			t.Fatalf("stored report %+v, want from alice to bob %q (sealed %v)", r, body, sealed)
		}
		return r
	}

	// Named: alice holds no access key of bob's yet.
	mustSend(t, alice, "bob", "named abuse")
	wantSealed(t, s.queued(t, bob), false)
	receive(t, bob)
	named := lastMessage(t, bob, "alice", "named abuse")
	check(named, "insults", "named abuse", false)

	// Sealed, once bob wrote back.
	mustSend(t, bob, "alice", "stop it")
	receive(t, alice)
	mustSend(t, alice, "bob", "sealed abuse")
	wantSealed(t, s.queued(t, bob), true)
	receive(t, bob)
	check(lastMessage(t, bob, "alice", "sealed abuse"), "", "sealed abuse", true)

	// With a file.
	file := filepath.Join(t.TempDir(), "threat.txt")
	if err := os.WriteFile(file, []byte("a file that threatens"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendMessage(ctxT(t), "bob", Outgoing{Text: "see the file", File: file}); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	r := check(lastMessage(t, bob, "alice", "see the file"), "a threat", "see the file", true)
	if r.Attachment == nil || r.Attachment.FileName != "threat.txt" || r.Attachment.Size != int64(len("a file that threatens")) {
		t.Fatalf("the report's attachment %+v", r.Attachment)
	}

	// To a group: alice's sender-key message, sealed to both members in
	// one multi-recipient send once she holds both access keys.
	introduce(t, alice, carol)
	if _, err := alice.CreateGroup(ctxT(t), "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	receive(t, carol)
	if _, err := alice.SendMessage(ctxT(t), "#club", Outgoing{Text: "group abuse"}); err != nil {
		t.Fatal(err)
	}
	receive(t, carol)
	receive(t, bob)
	r = check(lastMessage(t, bob, "#club", "group abuse"), "", "group abuse", true)
	if !r.ToMany {
		t.Error("the group message's report names no group")
	}
	// Carol reports it too: one message, two reporters.
	gid := lastMessage(t, carol, "#club", "group abuse")
	if _, err := carol.Report(ctxT(t), "alice", gid, ""); err != nil {
		t.Fatalf("carol's report: %v", err)
	}

	// Twice: refused.
	if _, err := bob.Report(ctxT(t), "alice", named, "again"); !errors.Is(err, ErrAlreadyReported) {
		t.Fatalf("a second report: %v, want ErrAlreadyReported", err)
	}
	// Not from that user, not there, not received.
	if _, err := bob.Report(ctxT(t), "carol", named, ""); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("report naming another sender: %v", err)
	}
	if _, err := bob.Report(ctxT(t), "alice", api.NewUUID(), ""); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("report of no message: %v", err)
	}
	if _, err := alice.Report(ctxT(t), "alice", lastMessage(t, alice, "bob", "see the file"), ""); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("report of a message sent: %v", err)
	}
	if _, err := bob.Report(ctxT(t), "alice", named, strings.Repeat("x", api.MaxReportReason+1)); err == nil {
		t.Fatal("a reason over the limit was sent")
	}

	// Altered on bob's device: the server refuses it.
	mustSend(t, alice, "bob", "what alice said")
	receive(t, bob)
	said := lastMessage(t, bob, "alice", "what alice said")
	err := bob.st.Update(ctxT(t), func(tx *profile.Tx) error {
		b, err := tx.Reportable(said)
		if err != nil || b == nil {
			t.Fatalf("nothing kept to report the message: %v", err)
		}
		var req api.ReportRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return err
		}
		i := bytes.Index(req.Content, []byte("what alice said"))
		if i < 0 {
			t.Fatal("the kept content is not the message's")
		}
		copy(req.Content[i:], "what bobby said")
		return putReportable(tx, said, &req)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Report(ctxT(t), "alice", said, ""); !errors.Is(err, ErrReportRejected) {
		t.Fatalf("altered report: %v, want ErrReportRejected", err)
	}
	reports, err := s.st.Reports(ctxT(t))
	if err != nil || len(reports) != 5 {
		t.Fatalf("the server keeps %d reports (%v), want 5", len(reports), err)
	}
}

// TestReportableGoesWithTheMessage: what a report takes disappears with a
// disappearing message.
func TestReportableGoesWithTheMessage(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	if err := alice.SetTimer(ctxT(t), "bob", time.Hour); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, "bob", "gone within the hour")
	receive(t, bob)
	id := lastMessage(t, bob, "alice", "gone within the hour")
	kept := func() bool {
		t.Helper()
		var b []byte
		err := bob.st.View(ctxT(t), func(tx *profile.Tx) error {
			var err error
			b, err = tx.Reportable(id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return b != nil
	}
	if !kept() {
		t.Fatal("nothing kept to report the message")
	}
	later := time.Now().Add(time.Hour + time.Minute)
	bob.now = func() time.Time { return later }
	if err := bob.sweepExpired(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if kept() {
		t.Fatal("what reports the message outlived it")
	}
	if _, err := bob.Report(ctxT(t), "alice", id, ""); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("report of a message gone: %v", err)
	}
}

// liar sits in front of the server and, while on, flips a bit of the
// franking commitment of every send: what a sender does that shows its
// recipient one thing and commits to another.
type liar struct {
	on    atomic.Bool
	multi atomic.Int32 // multi-recipient sends seen
}

func (l *liar) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.on.Load() && r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/messages/") {
			if r.URL.Path == api.PathMultiRecipient {
				l.multi.Add(1)
				q := r.URL.Query()
				q.Set(api.QueryFranking, strings.Repeat("A", 43)) // 32 zero bytes
				r.URL.RawQuery = q.Encode()
			} else {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				var req api.SendRequest
				if json.Unmarshal(b, &req) == nil && len(req.Franking) > 0 {
					req.Franking[0] ^= 1
					b, _ = json.Marshal(&req)
				}
				r.Body = io.NopCloser(bytes.NewReader(b))
				r.ContentLength = int64(len(b))
			}
		}
		h.ServeHTTP(w, r)
	})
}

// TestCommitmentMismatchDropped: a message whose commitment does not
// match what it carries (named, sealed or to a group) is dropped: acked,
// never shown nor kept, and a DroppedMessage names its sender. The
// messages around it arrive.
func TestCommitmentMismatchDropped(t *testing.T) {
	t.Parallel()
	l := new(liar)
	s := newWrappedServer(t, nil, l.wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})

	lie := func(to, text string) {
		t.Helper()
		l.on.Store(true)
		defer l.on.Store(false)
		if _, err := alice.SendMessage(ctxT(t), to, Outgoing{Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	wantDropped := func(evs []Event, truths ...string) {
		t.Helper()
		var got []string
		dropped := 0
		for _, ev := range evs {
			switch ev := ev.(type) {
			case *Message:
				got = append(got, ev.Text)
			case *DroppedMessage:
				if ev.From != "alice" || ev.FromDevice != 1 || ev.Received.IsZero() {
					t.Errorf("dropped event %+v", ev)
				}
				dropped++
			}
		}
		if strings.Join(got, "|") != strings.Join(truths, "|") || dropped != 1 {
			t.Fatalf("bob got %q and %d dropped, want %q and 1", got, dropped, truths)
		}
	}

	before := bob.Stats().Dropped
	mustSend(t, alice, "bob", "first")
	lie("bob", "named lie")
	mustSend(t, alice, "bob", "second")
	wantDropped(receive(t, bob), "first", "second")

	mustSend(t, bob, "alice", "reply")
	receive(t, alice)
	lie("bob", "sealed lie")
	wantSealed(t, s.queued(t, bob), true)
	mustSend(t, alice, "bob", "third")
	wantDropped(receive(t, bob), "third")

	// To a group: first one member, so that the sender-key message goes
	// one member at a time; then two, whose access keys alice holds, so
	// that it goes in one multi-recipient send.
	if _, err := alice.CreateGroup(ctxT(t), "pair", "bob"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	if _, err := alice.SendMessage(ctxT(t), "#pair", Outgoing{Text: "group truth"}); err != nil {
		t.Fatal(err)
	}
	lie("#pair", "group lie")
	wantDropped(receive(t, bob), "group truth")

	carol, _ := s.register(t, "carol", Options{})
	introduce(t, alice, carol)
	if err := alice.AddGroupMembers(ctxT(t), "#pair", "carol"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	receive(t, carol)
	if _, err := alice.SendMessage(ctxT(t), "#pair", Outgoing{Text: "to both"}); err != nil {
		t.Fatal(err)
	}
	multi := l.multi.Load()
	lie("#pair", "multi lie")
	if l.multi.Load() != multi+1 {
		t.Fatal("the lie did not go in a multi-recipient send")
	}
	wantDropped(receive(t, bob), "to both")
	wantDropped(receive(t, carol), "to both")

	if d := bob.Stats().Dropped - before; d != 4 {
		t.Errorf("dropped %d, want 4", d)
	}
	for _, with := range []string{"alice", "#pair"} {
		ms, err := bob.Messages(ctxT(t), with, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if strings.Contains(m.Text, "lie") {
				t.Fatalf("bob keeps %q", m.Text)
			}
		}
	}
	// And nothing is waiting for him: the lies were acked.
	if q := s.queued(t, bob); len(q) != 0 {
		t.Fatalf("%d envelopes left queued", len(q))
	}
}

// TestLinkedDeviceFranks: a linked device fetches the account's franking
// key for itself, so its sealed messages are reported as the account's,
// and the transcripts it sends its other devices open their commitments.
func TestLinkedDeviceFranks(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	alice2, _ := s.link(t, alice, "alice2")
	bob, _ := s.register(t, "bob", Options{})
	receive(t, alice) // alice2's hello
	mustSend(t, bob, "alice", "hello alice")
	receive(t, alice)
	receive(t, alice2) // bob's profile key, on this device too
	mustSend(t, alice2, "bob", "from the laptop")
	wantSealed(t, s.queued(t, bob), true)
	receive(t, bob)
	rid, err := bob.Report(ctxT(t), "alice", lastMessage(t, bob, "alice", "from the laptop"), "")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.storedReport(t, rid); r.Sender != alice.AccountID() || !r.Sealed {
		t.Fatalf("stored report %+v, want sealed from alice", r)
	}
	before := alice.Stats().Dropped
	evs := receive(t, alice)
	if ms := messages(evs); len(ms) != 1 || !ms[0].Outgoing || ms[0].Text != "from the laptop" || alice.Stats().Dropped != before {
		t.Fatalf("alice's transcript: %v", evs)
	}
	mustSend(t, alice, "bob", "from the phone")
	var k1, k2 []byte
	for _, c := range []struct {
		c *Client
		k *[]byte
	}{{alice, &k1}, {alice2, &k2}} {
		err := c.c.st.View(ctxT(t), func(tx *profile.Tx) error {
			var err error
			*c.k, err = tx.FrankingKey()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if k1 == nil || !bytes.Equal(k1, k2) {
		t.Fatal("the two devices do not hold the account's one franking key")
	}
}

// TestReportOfPassedOnGroupMessage: a sealed group message's report does
// not prove that its sender addressed the reporter (internal/franking).
// Bob, a member of alice's group, passes her group message on to dave,
// who is in no group with her: one sealed envelope carrying the message's
// commitment (its content anything: the server cannot tell). Dave then
// reports alice's text as delivered to him, and the server accepts it,
// but marks it, like bob's own report of it, as a report whose delivery
// by alice is unproven, and counts the two reports of one message.
func TestReportOfPassedOnGroupMessage(t *testing.T) {
	t.Parallel()
	fs := testFrankingServer(t)
	s := newServer(t, func(c *server.Config) { c.Franking = fs })
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	carol, _ := s.register(t, "carol", Options{})
	dave, _ := s.register(t, "dave", Options{})
	introduce(t, alice, bob)
	introduce(t, alice, carol)
	if _, err := alice.CreateGroup(ctxT(t), "club", "bob", "carol"); err != nil {
		t.Fatal(err)
	}
	receive(t, bob)
	receive(t, carol)
	if _, err := alice.SendMessage(ctxT(t), "#club", Outgoing{Text: "said in the club only"}); err != nil {
		t.Fatal(err)
	}
	receive(t, carol)
	receive(t, bob)
	id := lastMessage(t, bob, "#club", "said in the club only")

	// Bob's copy of what reporting it takes.
	var rep api.ReportRequest
	if err := bob.st.View(ctxT(t), func(tx *profile.Tx) error {
		b, err := tx.Reportable(id)
		if err != nil || b == nil {
			return fmt.Errorf("nothing to report with: %v", err)
		}
		return json.Unmarshal(b, &rep)
	}); err != nil {
		t.Fatal(err)
	}
	if rep.SourceAccount != "" {
		t.Fatalf("expected a sealed group message, got source %q", rep.SourceAccount)
	}

	// Bob writes dave a sealed envelope with the group message's commitment.
	introduce(t, bob, dave)
	var reg uint32
	if err := bob.st.View(ctxT(t), func(tx *profile.Tx) error {
		rec, err := tx.Session(dave.AccountID(), 1)
		if err != nil || rec == nil {
			return fmt.Errorf("no session with dave: %v", err)
		}
		reg, _ = rec.RemoteRegistrationID()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.sendMessages(ctxT(t), "dave", &api.SendRequest{
		ID: api.NewUUID(), Timestamp: 1, Franking: rep.Franking,
		Messages: []api.OutgoingMessage{{DeviceID: 1, RegistrationID: reg, Type: api.EnvelopeWhisper, Content: []byte("junk")}},
	}); err != nil {
		t.Fatal(err)
	}
	envs, err := s.st.Queue(ctxT(t), dave.AccountID(), 1, 0, 100)
	if err != nil || len(envs) != 1 {
		t.Fatalf("dave's queue: %d, %v", len(envs), err)
	}
	e := envs[0]
	if e.SourceAccount != "" {
		t.Fatal("bob's envelope to dave went named")
	}
	// The delivery tag the server hands dave's device with it, which a
	// modified client keeps.
	tag := fs.Tag(&franking.Delivery{Commitment: e.Franking, Recipient: dave.AccountID(), RecipientDevice: 1,
		EnvelopeType: e.Type, ServerTimestamp: e.ServerTimestamp.UnixMilli()})
	passed := api.ReportRequest{Content: rep.Content, Sender: alice.AccountID(), DeviceID: 1, Type: e.Type,
		ServerTimestamp: e.ServerTimestamp.UnixMilli(), Franking: e.Franking, FrankingTag: tag[:]}
	var resp api.ReportResponse
	if err := dave.do(ctxT(t), "POST", api.PathReports, &passed, &resp); err != nil {
		t.Fatalf("dave's report: %v", err)
	}
	davesReport := s.storedReport(t, resp.ID)
	bobsID, err := bob.Report(ctxT(t), "alice", id, "")
	if err != nil {
		t.Fatal(err)
	}
	bobsReport := s.storedReport(t, bobsID)
	for _, r := range []*store.Report{davesReport, bobsReport} {
		if r.Sender != alice.AccountID() || r.Body != "said in the club only" || !r.DeliveryUnproven() {
			t.Fatalf("stored report %+v, want alice's group text marked as delivery unproven", r)
		}
	}
	if n, by, err := s.st.ReportCount(ctxT(t), davesReport.CommitmentHash); err != nil || n != 2 || by != 2 {
		t.Fatalf("ReportCount = %d by %d, %v; want 2 by 2", n, by, err)
	}
}
