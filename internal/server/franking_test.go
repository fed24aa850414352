package server

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/internal/franking"
	"github.com/doorless/doorless/internal/store"
)

// msNow is the time now in Unix milliseconds, as a sender's client stamps
// its content.
func msNow() int64 { return time.Now().UnixMilli() }

// frankingKey fetches u's account franking key, as its devices do.
func (e *env) frankingKey(u *user) [franking.KeySize]byte {
	e.t.Helper()
	var resp api.FrankingKeyResponse
	e.ok(e.do(u, "GET", api.PathFrankingKey, nil), &resp)
	if len(resp.Key) != franking.KeySize {
		e.t.Fatalf("franking key of %d bytes", len(resp.Key))
	}
	return [franking.KeySize]byte(resp.Key)
}

// franked is a message as a sender's client makes it: the content,
// franked under the sender's account key for its context, its padded
// encoding (which the tests send as the envelope's content: the server
// never looks inside) and the commitment the send carries.
type franked struct {
	c          *content.Content
	padded     []byte
	commitment []byte
}

func (e *env) frank(from *user, c *content.Content, context []byte) *franked {
	e.t.Helper()
	commitment := franking.Frank(c, e.frankingKey(from), context)
	padded, err := content.Encode(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return &franked{c: c, padded: padded, commitment: commitment[:]}
}

// sendFranked sends m from one device to the single device of to, named
// or (sealedKey not nil) sealed.
func (e *env) sendFranked(from, to *user, typ int, m *franked, sealedKey []byte) {
	e.t.Helper()
	req := newSend(api.NewUUID(), time.Now().UnixMilli(),
		api.OutgoingMessage{DeviceID: to.device, RegistrationID: to.regID, Type: typ, Content: m.padded})
	req.Franking = m.commitment
	if sealedKey != nil {
		e.ok(e.sealedRaw(to.name, headerKey(sealedKey), req), nil)
		return
	}
	e.ok(e.do(from, "PUT", "/v1/messages/"+to.name, req), nil)
}

// receive reads u's next envelope over a fresh WebSocket and acks it.
func (e *env) receive(u *user) *api.Envelope {
	e.t.Helper()
	c := e.dial(u)
	f := read(e.t, c)
	for f.Type == api.FrameRefill { // the tests' devices have no one-time keys
		f = read(e.t, c)
	}
	if f.Type != api.FrameEnvelope {
		e.t.Fatalf("frame %+v, want an envelope", f)
	}
	ack(e.t, c, f.Envelope.ID)
	readType(e.t, c, api.FrameQueueEmpty)
	c.Close(websocket1000, "")
	return f.Envelope
}

// checkTag fails unless env carries commitment and a delivery tag that
// binds it to its delivery to u.
func (e *env) checkTag(u *user, env *api.Envelope, commitment []byte) {
	e.t.Helper()
	if !bytes.Equal(env.Franking, commitment) {
		e.t.Fatalf("delivered commitment %x, want %x", env.Franking, commitment)
	}
	d := &franking.Delivery{Commitment: commitment, Recipient: u.id, RecipientDevice: u.device, Source: env.SourceAccount,
		SourceDevice: env.SourceDevice, EnvelopeType: env.Type, ServerTimestamp: env.ServerTimestamp}
	if len(env.FrankingTag) != api.FrankingSize || !e.srv.cfg.Franking.CheckTag(d, env.FrankingTag) {
		e.t.Fatalf("the delivery tag %x does not verify", env.FrankingTag)
	}
}

// reportOf is the report of m as delivered in env to u's device.
func reportOf(u *user, env *api.Envelope, m *franked, sender, reason string) api.ReportRequest {
	return api.ReportRequest{
		Content: m.padded, Sender: sender, DeviceID: u.device, Type: env.Type, SourceAccount: env.SourceAccount,
		SourceDevice: env.SourceDevice, ServerTimestamp: env.ServerTimestamp, Franking: env.Franking,
		FrankingTag: env.FrankingTag, Reason: reason,
	}
}

// report posts r as u.
func (e *env) report(u *user, r api.ReportRequest) *http.Response {
	e.t.Helper()
	return e.do(u, "POST", api.PathReports, r)
}

// reportOK posts r as u and returns the stored report.
func (e *env) reportOK(u *user, r api.ReportRequest) *store.Report {
	e.t.Helper()
	var resp api.ReportResponse
	e.ok(e.report(u, r), &resp)
	if !api.ValidUUID(resp.ID) {
		e.t.Fatalf("report id %q", resp.ID)
	}
	rep, err := e.st.Report(e.t.Context(), resp.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

func TestFrankingKey(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	alice2 := e.addDevice(alice)
	ka, kb := e.frankingKey(alice), e.frankingKey(bob)
	if ka != e.srv.cfg.Franking.AccountKey(alice.id) || ka == kb {
		t.Fatal("the franking key is not the account's")
	}
	if e.frankingKey(alice2) != ka {
		t.Fatal("two devices of one account got different keys")
	}
	e.fails(e.do(nil, "GET", api.PathFrankingKey, nil), http.StatusUnauthorized, api.CodeUnauthorized)
}

// TestDeliveryTag: every envelope handed out carries its send's commitment
// and a delivery tag for that delivery, named or sealed.
func TestDeliveryTag(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	bob2 := e.addDevice(bob)
	e.ok(e.send(alice, "bob", api.NewUUID(), map[uint32]uint32{1: bob.regID, bob2.device: bob2.regID}, "hello"), nil)
	env1, env2 := e.receive(bob), e.receive(bob2)
	e.checkTag(bob, env1, testCommitment())
	e.checkTag(bob2, env2, testCommitment())
	if bytes.Equal(env1.FrankingTag, env2.FrankingTag) {
		t.Fatal("two devices got the same delivery tag")
	}
	key := newAccessKey()
	e.setAccess(bob, key, false)
	e.ok(e.sealed("bob", headerKey(key), api.NewUUID(), map[uint32]uint32{1: bob.regID, bob2.device: bob2.regID}, "sealed"), nil)
	env := e.receive(bob)
	if env.SourceAccount != "" {
		t.Fatalf("sealed envelope names %q", env.SourceAccount)
	}
	e.checkTag(bob, env, testCommitment())
}

// TestSendNeedsFranking: a send without a well-formed commitment is refused
// and queues nothing, on every route.
func TestSendNeedsFranking(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	for _, f := range [][]byte{nil, make([]byte, 31), make([]byte, 33)} {
		req := newSend(api.NewUUID(), 1, api.OutgoingMessage{DeviceID: 1, RegistrationID: bob.regID, Type: api.EnvelopeWhisper, Content: []byte("x")})
		req.Franking = f
		e.fails(e.do(alice, "PUT", "/v1/messages/bob", req), http.StatusBadRequest, api.CodeBadRequest)
		req.Messages[0].Type = api.EnvelopeUnidentifiedSender
		e.fails(e.sealedRaw("bob", headerKey(key), req), http.StatusBadRequest, api.CodeBadRequest)
	}
	// Multi-recipient: the parameter missing, twice, padded, not URL-safe,
	// or of the wrong size.
	body := multiMessage(t, []*user{bob}, map[*user]map[uint32]uint32{bob: {1: bob.regID}})
	good := base64.RawURLEncoding.EncodeToString(testCommitment())
	short := base64.RawURLEncoding.EncodeToString(testCommitment()[:31])
	for name, set := range map[string]func(q map[string][]string){
		"missing":    func(q map[string][]string) { delete(q, api.QueryFranking) },
		"twice":      func(q map[string][]string) { q[api.QueryFranking] = []string{good, good} },
		"padded":     func(q map[string][]string) { q[api.QueryFranking] = []string{good + "="} },
		"not url":    func(q map[string][]string) { q[api.QueryFranking] = []string{"+/" + good[2:]} },
		"short":      func(q map[string][]string) { q[api.QueryFranking] = []string{short} },
		"empty":      func(q map[string][]string) { q[api.QueryFranking] = []string{""} },
		"not base64": func(q map[string][]string) { q[api.QueryFranking] = []string{strings.Repeat("*", 43)} },
	} {
		resp := e.multi(body, key, api.NewUUID(), func(r *http.Request) {
			q := r.URL.Query()
			set(q)
			r.URL.RawQuery = q.Encode()
		})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
		resp.Body.Close()
	}
	if n := e.queueLen(bob); n != 0 {
		t.Fatalf("refused sends queued %d envelopes", n)
	}
	e.ok(e.multi(body, key, api.NewUUID(), nil), nil)
	e.checkTag(bob, e.receive(bob), testCommitment())
}

// TestReportNamed: a named message reported by its recipient is accepted
// with its sender; the report keeps what the operator reviews and nothing
// else; a second report of it is a duplicate.
func TestReportNamed(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	c := &content.Content{Timestamp: msNow(), Body: "you will regret this", Attachment: &content.Attachment{
		ID: "blob-id_1", Key: bytes.Repeat([]byte{0x4b}, 64), Digest: bytes.Repeat([]byte{0x44}, 32),
		Size: 5000, BlobSize: 6000, ContentType: "image/jpeg", FileName: "threat.jpg"}}
	m := e.frank(alice, c, franking.DirectContext(bob.id))
	e.sendFranked(alice, bob, api.EnvelopeWhisper, m, nil)
	env := e.receive(bob)
	e.checkTag(bob, env, m.commitment)

	before := time.Now()
	r := reportOf(bob, env, m, alice.id, "threats")
	rep := e.reportOK(bob, r)
	want := store.Report{ID: rep.ID, Reporter: bob.id, Sender: alice.id, Sealed: false,
		CommitmentHash: labelledHash(commitmentHashLabel, m.commitment), Sent: time.UnixMilli(c.Timestamp),
		Queued: time.UnixMilli(env.ServerTimestamp), Body: "you will regret this", Reason: "threats",
		Attachment: &store.ReportAttachment{ContentType: "image/jpeg", FileName: "threat.jpg", Size: 5000}}
	if rep.Reporter != want.Reporter || rep.Sender != want.Sender || rep.Sealed || !bytes.Equal(rep.CommitmentHash, want.CommitmentHash) ||
		rep.ToMany || !rep.Sent.Equal(want.Sent) || !rep.Queued.Equal(want.Queued) || rep.DeliveryUnproven() || rep.Body != want.Body || rep.Reason != want.Reason ||
		*rep.Attachment != *want.Attachment || rep.Reported.Before(before.Add(-time.Second)) || rep.Reported.After(time.Now()) {
		t.Fatalf("stored report %+v\nwant %+v", rep, want)
	}

	// Nothing the report carried beyond that is anywhere in the store:
	// not the franking key, the sender's binding, the attachment's key or
	// id, the commitment, the delivery tag or the padded plaintext.
	dump, err := e.st.Dump(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range map[string][]byte{
		"franking key": c.Franking.Key[:], "sender tag": c.Franking.SenderTag[:], "attachment key": c.Attachment.Key,
		"attachment digest": c.Attachment.Digest, "attachment id": []byte(c.Attachment.ID), "commitment": m.commitment,
		"delivery tag": env.FrankingTag, "padded plaintext": m.padded,
	} {
		if at := dump.Find(b); len(at) > 0 {
			t.Errorf("the %s is stored in %v", what, at)
		}
	}
	if at := dump.Find([]byte("you will regret this")); !slices.Equal(at, []string{"reports.body"}) {
		t.Errorf("the reported text is in %v, want reports.body only", at)
	}

	// The same report again, or with another reason: a duplicate.
	e.fails(e.report(bob, r), http.StatusConflict, api.CodeDuplicate)
	r.Reason = "again"
	e.fails(e.report(bob, r), http.StatusConflict, api.CodeDuplicate)
	if rs, _ := e.st.Reports(t.Context()); len(rs) != 1 {
		t.Fatalf("%d reports stored, want 1", len(rs))
	}
}

// TestReportSealed: a sealed-sender message is reported with the sender its
// certificate named, proven by the sender's binding; naming anyone else
// is refused.
func TestReportSealed(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, carol := e.register("alice", 0, 0), e.register("bob", 0, 0), e.register("carol", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	m := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "sealed abuse"}, franking.DirectContext(bob.id))
	e.sendFranked(nil, bob, api.EnvelopeUnidentifiedSender, m, key)
	env := e.receive(bob)
	e.checkTag(bob, env, m.commitment)

	// Framing carol, or bob himself, or no one: refused.
	for _, sender := range []string{carol.id, bob.id} {
		e.fails(e.report(bob, reportOf(bob, env, m, sender, "")), http.StatusUnprocessableEntity, api.CodeReportRejected)
	}
	e.fails(e.report(bob, reportOf(bob, env, m, "", "")), http.StatusBadRequest, api.CodeBadRequest)
	// Claiming a named delivery from alice: the tag does not cover it.
	named := reportOf(bob, env, m, alice.id, "")
	named.SourceAccount, named.SourceDevice = alice.id, 1
	e.fails(e.report(bob, named), http.StatusUnprocessableEntity, api.CodeReportRejected)

	rep := e.reportOK(bob, reportOf(bob, env, m, alice.id, "sealed abuse report"))
	if rep.Sender != alice.id || !rep.Sealed || rep.Body != "sealed abuse" || rep.ToMany || rep.Attachment != nil {
		t.Fatalf("stored report %+v", rep)
	}
	// A binding for another context (a message franked for carol, then
	// sent to bob) does not prove alice sent it to bob.
	moved := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "meant for carol"}, franking.DirectContext(carol.id))
	e.sendFranked(nil, bob, api.EnvelopeUnidentifiedSender, moved, key)
	env = e.receive(bob)
	e.fails(e.report(bob, reportOf(bob, env, moved, alice.id, "")), http.StatusUnprocessableEntity, api.CodeReportRejected)
}

// TestReportGroup: group messages, named and sealed (multi-recipient), are
// reported under the group's context, and the report says it was a group
// message, never which group.
func TestReportGroup(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	group := bytes.Repeat([]byte{0x67}, content.GroupIDSize)

	m := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "to the group", GroupID: group}, franking.GroupContext(group))
	e.sendFranked(alice, bob, api.EnvelopeSenderKey, m, nil)
	env := e.receive(bob)
	rep := e.reportOK(bob, reportOf(bob, env, m, alice.id, ""))
	if rep.Sender != alice.id || rep.Sealed || !rep.ToMany {
		t.Fatalf("stored report %+v", rep)
	}
	if dump, _ := e.st.Dump(t.Context()); len(dump.Find(group)) > 0 {
		t.Errorf("the group id is stored in %v", dump.Find(group))
	}

	// A multi-recipient (sealed sender v2) group message.
	key := newAccessKey()
	e.setAccess(bob, key, false)
	m = e.frank(alice, &content.Content{Timestamp: msNow(), Body: "sealed to the group", GroupID: group}, franking.GroupContext(group))
	body := multiMessage(t, []*user{bob}, map[*user]map[uint32]uint32{bob: {1: bob.regID}})
	e.ok(e.multi(body, key, api.NewUUID(), func(r *http.Request) {
		q := r.URL.Query()
		q.Set(api.QueryFranking, base64.RawURLEncoding.EncodeToString(m.commitment))
		r.URL.RawQuery = q.Encode()
	}), nil)
	env = e.receive(bob)
	e.checkTag(bob, env, m.commitment)
	rep = e.reportOK(bob, reportOf(bob, env, m, alice.id, ""))
	if rep.Sender != alice.id || !rep.Sealed || !rep.ToMany || rep.Body != "sealed to the group" {
		t.Fatalf("stored report %+v", rep)
	}
	// Franked for the group, reported as a direct message (the group id
	// removed from the content): the content no longer opens its
	// commitment.
	direct := *m.c
	direct.GroupID = nil
	padded, err := content.Encode(&direct)
	if err != nil {
		t.Fatal(err)
	}
	r := reportOf(bob, env, m, alice.id, "")
	r.Content = padded
	e.fails(e.report(bob, r), http.StatusUnprocessableEntity, api.CodeReportRejected)
}

// TestReportSealedGroupPassedOn: a sealed group message's report proves
// that the sender sent it to a group and that its commitment reached the
// reporter, not that the sender addressed the reporter (internal/franking).
// Bob, a member, passes alice's group message on to dave, an outsider: a
// sealed envelope of his own making, carrying its commitment. Dave's
// report verifies, naming alice; the stored reports say that delivery by
// alice is unproven, and count the two reports of the one message. A
// named group message and a sealed direct one are not so marked.
func TestReportSealedGroupPassedOn(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob, dave := e.register("alice", 0, 0), e.register("bob", 0, 0), e.register("dave", 0, 0)
	bobKey, daveKey := newAccessKey(), newAccessKey()
	e.setAccess(bob, bobKey, false)
	e.setAccess(dave, daveKey, false)
	group := bytes.Repeat([]byte{0x67}, content.GroupIDSize)

	m := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "said in the club", GroupID: group}, franking.GroupContext(group))
	e.sendFranked(nil, bob, api.EnvelopeUnidentifiedSender, m, bobKey)
	env := e.receive(bob)
	rep := e.reportOK(bob, reportOf(bob, env, m, alice.id, ""))
	if !rep.Sealed || !rep.ToMany || !rep.DeliveryUnproven() {
		t.Fatalf("bob's report %+v is not marked", rep)
	}

	e.sendFranked(nil, dave, api.EnvelopeUnidentifiedSender, m, daveKey) // bob, to dave
	denv := e.receive(dave)
	moved := e.reportOK(dave, reportOf(dave, denv, m, alice.id, ""))
	if moved.Sender != alice.id || moved.Reporter != dave.id || !moved.DeliveryUnproven() ||
		!bytes.Equal(moved.CommitmentHash, rep.CommitmentHash) {
		t.Fatalf("dave's report %+v", moved)
	}
	if n, by, err := e.st.ReportCount(t.Context(), rep.CommitmentHash); err != nil || n != 2 || by != 2 {
		t.Fatalf("ReportCount = %d by %d, %v; want 2 by 2", n, by, err)
	}
	var out strings.Builder
	if err := ShowReport(t.Context(), e.st, moved.ID, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"delivery to the reporter by this sender unproven", "reports of it: 2, by 2 accounts"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ShowReport lacks %q:\n%s", want, out.String())
		}
	}

	// Named to the group, and sealed to dave alone: proven.
	named := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "named to the club", GroupID: group}, franking.GroupContext(group))
	e.sendFranked(alice, bob, api.EnvelopeSenderKey, named, nil)
	env = e.receive(bob)
	if r := e.reportOK(bob, reportOf(bob, env, named, alice.id, "")); r.Sealed || !r.ToMany || r.DeliveryUnproven() {
		t.Fatalf("named group report %+v", r)
	}
	direct := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "to dave alone"}, franking.DirectContext(dave.id))
	e.sendFranked(nil, dave, api.EnvelopeUnidentifiedSender, direct, daveKey)
	denv = e.receive(dave)
	if r := e.reportOK(dave, reportOf(dave, denv, direct, alice.id, "")); !r.Sealed || r.ToMany || r.DeliveryUnproven() {
		t.Fatalf("sealed direct report %+v", r)
	}
}

// TestReportWindowBySentTime: a message is refused once its own timestamp
// (the sender's clock, in the committed bytes) is over ReportWindow and
// ReportClockSkew old, however freshly its commitment was delivered: a
// sealed group message passed on again later does not restart the window.
// The stored report keeps both times.
func TestReportWindowBySentTime(t *testing.T) {
	clk := &testClock{t: time.Now()}
	e := newEnv(t, func(c *Config) { c.Now = clk.now })
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	group := bytes.Repeat([]byte{0x67}, content.GroupIDSize)
	limit := ReportWindow + ReportClockSkew
	for _, tt := range []struct {
		name string
		age  time.Duration
		ok   bool
	}{
		{"just within", limit - time.Second, true},
		{"just over", limit + time.Millisecond, false},
		{"a year old", 365 * 24 * time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			sent := clk.now().Add(-tt.age).UnixMilli()
			m := e.frank(alice, &content.Content{Timestamp: sent, Body: "old news " + tt.name, GroupID: group}, franking.GroupContext(group))
			e.sendFranked(nil, bob, api.EnvelopeUnidentifiedSender, m, key)
			env := e.receive(bob)
			r := reportOf(bob, env, m, alice.id, "")
			if !tt.ok {
				e.fails(e.report(bob, r), http.StatusUnprocessableEntity, api.CodeReportRejected)
				return
			}
			rep := e.reportOK(bob, r)
			if !rep.Sent.Equal(time.UnixMilli(sent)) || !rep.Queued.Equal(time.UnixMilli(env.ServerTimestamp)) {
				t.Fatalf("stored sent %v, queued %v; want %v, %v", rep.Sent, rep.Queued, time.UnixMilli(sent), time.UnixMilli(env.ServerTimestamp))
			}
		})
	}
	e.t = t
	if rs, err := e.st.Reports(t.Context()); err != nil || len(rs) != 1 {
		t.Fatalf("%d reports stored (%v), want 1", len(rs), err)
	}
}

// TestReportRejected: forged, altered, misattributed, foreign, unfranked,
// malformed and stale reports are refused and store nothing.
func TestReportRejected(t *testing.T) {
	clk := &testClock{t: time.Now()}
	e := newEnv(t, func(c *Config) { c.Now = clk.now })
	alice, bob, carol := e.register("alice", 0, 0), e.register("bob", 0, 0), e.register("carol", 0, 0)
	m := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "abuse"}, franking.DirectContext(bob.id))
	e.sendFranked(alice, bob, api.EnvelopeWhisper, m, nil)
	env := e.receive(bob)
	good := reportOf(bob, env, m, alice.id, "")

	altered := *m.c
	altered.Body = "something alice never wrote"
	alteredPadded, err := content.Encode(&altered)
	if err != nil {
		t.Fatal(err)
	}
	unfranked, err := content.Encode(&content.Content{Timestamp: msNow(), Body: "abuse"})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte { b = slices.Clone(b); b[i] ^= 1; return b }
	for _, tt := range []struct {
		name   string
		as     *user
		mod    func(r *api.ReportRequest)
		status int
		code   string
	}{
		{"forged tag", bob, func(r *api.ReportRequest) { r.FrankingTag = flip(r.FrankingTag, 7) }, 422, api.CodeReportRejected},
		{"altered content", bob, func(r *api.ReportRequest) { r.Content = alteredPadded }, 422, api.CodeReportRejected},
		{"altered commitment", bob, func(r *api.ReportRequest) { r.Franking = flip(r.Franking, 0) }, 422, api.CodeReportRejected},
		{"other sender", bob, func(r *api.ReportRequest) { r.Sender = carol.id }, 422, api.CodeReportRejected},
		{"other source", bob, func(r *api.ReportRequest) { r.SourceAccount, r.Sender = carol.id, carol.id }, 422, api.CodeReportRejected},
		{"other device", bob, func(r *api.ReportRequest) { r.DeviceID = 2 }, 422, api.CodeReportRejected},
		{"other type", bob, func(r *api.ReportRequest) { r.Type = api.EnvelopePreKey }, 422, api.CodeReportRejected},
		{"other time", bob, func(r *api.ReportRequest) { r.ServerTimestamp-- }, 422, api.CodeReportRejected},
		{"another account reports", carol, nil, 422, api.CodeReportRejected},
		{"the sender reports", alice, nil, 422, api.CodeReportRejected},
		{"unfranked content", bob, func(r *api.ReportRequest) { r.Content = unfranked }, 422, api.CodeReportRejected},
		{"not content", bob, func(r *api.ReportRequest) { r.Content = []byte("ciphertext?") }, 422, api.CodeReportRejected},
		{"no content", bob, func(r *api.ReportRequest) { r.Content = nil }, 400, api.CodeBadRequest},
		{"short tag", bob, func(r *api.ReportRequest) { r.FrankingTag = r.FrankingTag[:31] }, 400, api.CodeBadRequest},
		{"no commitment", bob, func(r *api.ReportRequest) { r.Franking = nil }, 400, api.CodeBadRequest},
		{"sender not an id", bob, func(r *api.ReportRequest) { r.Sender = "alice" }, 400, api.CodeBadRequest},
		{"device 0", bob, func(r *api.ReportRequest) { r.DeviceID = 0 }, 400, api.CodeBadRequest},
		{"device 128", bob, func(r *api.ReportRequest) { r.DeviceID = 128 }, 400, api.CodeBadRequest},
		{"no time", bob, func(r *api.ReportRequest) { r.ServerTimestamp = 0 }, 400, api.CodeBadRequest},
		{"reason too long", bob, func(r *api.ReportRequest) { r.Reason = strings.Repeat("x", api.MaxReportReason+1) }, 400, api.CodeBadRequest},
		{"content too big", bob, func(r *api.ReportRequest) { r.Content = make([]byte, DefaultMaxEnvelope+1) }, 413, api.CodeTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			r := good
			if tt.mod != nil {
				tt.mod(&r)
			}
			e.fails(e.report(tt.as, r), tt.status, tt.code)
		})
	}
	e.t = t
	e.fails(e.report(nil, good), http.StatusUnauthorized, api.CodeUnauthorized)
	e.fails(e.do(bob, "POST", api.PathReports, `{"content":"AA==","extra":1}`), http.StatusBadRequest, api.CodeBadRequest)

	// Too old: 90 days after the server queued it, and no later.
	clk.add(ReportWindow + time.Millisecond)
	e.fails(e.report(bob, good), http.StatusUnprocessableEntity, api.CodeReportRejected)
	if rs, err := e.st.Reports(t.Context()); err != nil || len(rs) != 0 {
		t.Fatalf("refused reports stored %d: %v", len(rs), err)
	}
	clk.add(-2 * time.Millisecond)
	e.reportOK(bob, good)
}

// TestReportRemovedDevice: a message delivered to a device since removed
// can still be reported by another device of the account.
func TestReportRemovedDevice(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	bob2 := e.addDevice(bob)
	m := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "to the tablet"}, franking.DirectContext(bob.id))
	req := newSend(api.NewUUID(), 1,
		api.OutgoingMessage{DeviceID: 1, RegistrationID: bob.regID, Type: api.EnvelopeWhisper, Content: m.padded},
		api.OutgoingMessage{DeviceID: bob2.device, RegistrationID: bob2.regID, Type: api.EnvelopeWhisper, Content: m.padded})
	req.Franking = m.commitment
	e.ok(e.do(alice, "PUT", "/v1/messages/bob", req), nil)
	env := e.receive(bob2)
	e.removeOK(bob, bob2.device)
	rep := e.reportOK(bob, reportOf(bob2, env, m, alice.id, "seen on the tablet"))
	if rep.Reporter != bob.id || rep.Sender != alice.id {
		t.Fatalf("stored report %+v", rep)
	}
}

// TestReportOutlivesSender: the report of a sender who then deletes its
// account stays.
func TestReportOutlivesSender(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	m := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "hit and run"}, franking.DirectContext(bob.id))
	e.sendFranked(alice, bob, api.EnvelopeWhisper, m, nil)
	env := e.receive(bob)
	rep := e.reportOK(bob, reportOf(bob, env, m, alice.id, ""))
	resp := e.do(alice, "DELETE", api.PathAccountMe, nil)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if got, err := e.st.Report(t.Context(), rep.ID); err != nil || got.Sender != alice.id {
		t.Fatalf("after the sender's deletion Report = %+v, %v", got, err)
	}
}

// TestReportAfterSenderDeleted: a message, named or sealed, can be
// reported after its sender deleted the account (hit and run).
func TestReportAfterSenderDeleted(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	named := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "hit"}, franking.DirectContext(bob.id))
	e.sendFranked(alice, bob, api.EnvelopeWhisper, named, nil)
	namedEnv := e.receive(bob)
	sealed := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "and run"}, franking.DirectContext(bob.id))
	e.sendFranked(nil, bob, api.EnvelopeUnidentifiedSender, sealed, key)
	sealedEnv := e.receive(bob)
	resp := e.do(alice, "DELETE", api.PathAccountMe, nil)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	for _, r := range []api.ReportRequest{reportOf(bob, namedEnv, named, alice.id, ""), reportOf(bob, sealedEnv, sealed, alice.id, "")} {
		if rep := e.reportOK(bob, r); rep.Sender != alice.id {
			t.Fatalf("stored report %+v", rep)
		}
	}
}

// TestReportNothingToReview: a message from one's own account (a sync
// transcript) and a message without text or attachment (a receipt) verify
// but are not kept.
func TestReportNothingToReview(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register("alice", 0, 0), e.register("bob", 0, 0)
	alice2 := e.addDevice(alice)
	sync := e.frank(alice, &content.Content{Timestamp: msNow(), Body: "note to self", Sync: true, Destination: "bob"}, franking.DirectContext(alice.id))
	e.sendFranked(alice, alice2, api.EnvelopeWhisper, sync, nil)
	env := e.receive(alice2)
	e.fails(e.report(alice2, reportOf(alice2, env, sync, alice.id, "")), http.StatusUnprocessableEntity, api.CodeReportRejected)

	receipt := e.frank(alice, &content.Content{Timestamp: msNow(), Receipt: &content.Receipt{Type: content.ReceiptRead, Timestamps: []int64{1}}},
		franking.DirectContext(bob.id))
	e.sendFranked(alice, bob, api.EnvelopeWhisper, receipt, nil)
	env = e.receive(bob)
	e.fails(e.report(bob, reportOf(bob, env, receipt, alice.id, "")), http.StatusUnprocessableEntity, api.CodeReportRejected)
	if rs, err := e.st.Reports(t.Context()); err != nil || len(rs) != 0 {
		t.Fatalf("stored %d reports: %v", len(rs), err)
	}
}

// FuzzParseFrankingQuery: a multi-recipient send's franking parameter is
// accepted exactly when it is the canonical unpadded URL-safe base64 of
// api.FrankingSize bytes.
func FuzzParseFrankingQuery(f *testing.F) {
	good := base64.RawURLEncoding.EncodeToString(testCommitment())
	for _, s := range []string{good, good + "=", good[:42], "", "+/" + good[2:], good[:42] + "B", strings.Repeat("A", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseFrankingQuery(map[string][]string{api.QueryFranking: {s}})
		if err != nil {
			return
		}
		if len(b) != api.FrankingSize || base64.RawURLEncoding.EncodeToString(b) != s {
			t.Fatalf("accepted %q as %x", s, b)
		}
	})
}
