package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
)

// newAccessKey returns a random unidentified access key.
func newAccessKey() []byte {
	k := make([]byte, api.UnidentifiedAccessKeySize)
	rand.Read(k)
	return k
}

func headerKey(k []byte) string {
	return api.FormatUnidentifiedAccessKey([api.UnidentifiedAccessKeySize]byte(k))
}

// setAccess sets u's account's unidentified access.
func (e *env) setAccess(u *user, key []byte, unrestricted bool) {
	e.t.Helper()
	resp := e.do(u, "PUT", api.PathAttributes, api.AccountAttributes{UnidentifiedAccessKey: key, UnrestrictedUnidentifiedAccess: unrestricted})
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		e.t.Fatalf("set attributes: %d", resp.StatusCode)
	}
}

// sealed sends, without credentials and with the Unidentified-Access-Key
// header (absent when key is ""), a type-6 message to every device in devs.
func (e *env) sealed(to, key, id string, devs map[uint32]uint32, content string) *http.Response {
	e.t.Helper()
	req := newSend(id, time.Now().UnixMilli())
	for d, reg := range devs {
		req.Messages = append(req.Messages, api.OutgoingMessage{DeviceID: d, RegistrationID: reg, Type: api.EnvelopeUnidentifiedSender, Content: []byte(content)})
	}
	return e.sealedRaw(to, key, req)
}

func (e *env) sealedRaw(to, key string, body any) *http.Response {
	e.t.Helper()
	r, err := http.NewRequest("PUT", e.hs.URL+"/v1/messages/"+to, bodyReader(e.t, body))
	if err != nil {
		e.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set(api.HeaderUnidentifiedAccessKey, key)
	}
	resp, err := e.hs.Client().Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// sealedOK sends one sealed message to the single device of to.
func (e *env) sealedOK(to *user, key []byte, content string) {
	e.t.Helper()
	var resp api.SendResponse
	e.ok(e.sealed(to.name, headerKey(key), api.NewUUID(), map[uint32]uint32{to.device: to.regID}, content), &resp)
	if resp.Delivered != 1 {
		e.t.Fatalf("delivered %d", resp.Delivered)
	}
}

// TestSealedSendDelivered: a sealed send with the recipient's key is
// delivered as type 6 with no source, in the store and on the wire.
func TestSealedSendDelivered(t *testing.T) {
	e := newEnv(t, nil)
	key := newAccessKey()
	id := newIdentity(t)
	req := registerRequest(t, "bob", id, 20, 20)
	req.UnidentifiedAccessKey = key // given at registration
	var reg api.RegisterResponse
	e.ok(e.do(nil, "POST", api.PathAccounts, req), &reg)
	bob := &user{name: "bob", id: reg.AccountID, device: reg.DeviceID, regID: req.RegistrationID, password: reg.Password, identity: id}
	alice := e.register("alice", 0, 0)
	e.sendOK(alice, bob, "identified")
	e.sealedOK(bob, key, "sealed ciphertext")

	q, err := e.st.Queue(context.Background(), bob.id, bob.device, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 2 || q[0].SourceAccount != alice.id || q[1].SourceAccount != "" || q[1].SourceDevice != 0 || q[1].Type != api.EnvelopeUnidentifiedSender {
		t.Fatalf("bob's queue %+v, want alice's envelope then a sealed one without a source", q)
	}

	c := e.dial(bob)
	f := readType(t, c, api.FrameEnvelope)
	if f.Envelope.SourceAccount != alice.id || f.Envelope.SourceUsername != "alice" {
		t.Fatalf("identified envelope %+v", f.Envelope)
	}
	ack(t, c, f.Envelope.ID)
	_, raw, err := c.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("source")) {
		t.Errorf("sealed envelope frame %s names a source field", raw)
	}
	sf, err := api.ParseFrame(raw)
	if err != nil {
		t.Fatal(err)
	}
	se := sf.Envelope
	if se.Type != api.EnvelopeUnidentifiedSender || se.SourceAccount != "" || se.SourceUsername != "" || se.SourceDevice != 0 || string(se.Content) != "sealed ciphertext" {
		t.Fatalf("sealed envelope %+v", se)
	}
	ack(t, c, se.ID)
	readType(t, c, api.FrameQueueEmpty)
	if strings.Contains(e.metrics(), `scope="recipient"`) {
		t.Error("a send within the limit was counted as rate limited")
	}
}

// TestSealedSendAccessDenied: a wrong, malformed or missing key and an
// unknown user get the same 401, which says nothing about the user.
func TestSealedSendAccessDenied(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 0, 0)
	carol := e.register("carol", 0, 0) // no key
	key := newAccessKey()
	e.setAccess(bob, key, false)
	devs := map[uint32]uint32{1: bob.regID}

	answer := func(resp *http.Response) string {
		t.Helper()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d: %s, want 401", resp.StatusCode, b)
		}
		var eb api.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error == nil || eb.Error.Code != api.CodeUnidentifiedAccessDenied {
			t.Fatalf("body %s, want code %s", b, api.CodeUnidentifiedAccessDenied)
		}
		h := resp.Header.Clone()
		h.Del("Date")
		h.Del("Content-Length")
		hb, _ := json.Marshal(h)
		return string(b) + string(hb)
	}
	wrong := answer(e.sealed("bob", headerKey(newAccessKey()), api.NewUUID(), devs, "x"))
	for name, resp := range map[string]*http.Response{
		"unknown user":       e.sealed("nobody", headerKey(key), api.NewUUID(), devs, "x"),
		"invalid username":   e.sealed("No-Body", headerKey(key), api.NewUUID(), devs, "x"),
		"user without key":   e.sealed("carol", headerKey(key), api.NewUUID(), map[uint32]uint32{1: carol.regID}, "x"),
		"malformed key":      e.sealed("bob", "not base64", api.NewUUID(), devs, "x"),
		"unpadded key":       e.sealed("bob", strings.TrimRight(headerKey(key), "="), api.NewUUID(), devs, "x"),
		"key of 15 bytes":    e.sealed("bob", api.FormatUnidentifiedAccessKey([16]byte(key))[:20]+"==", api.NewUUID(), devs, "x"),
		"empty key":          e.sealed("bob", "", api.NewUUID(), devs, "x"), // no header: the authenticated path
		"wrong key, no body": e.sealedRaw("bob", headerKey(newAccessKey()), nil),
	} {
		if name == "empty key" {
			e.fails(resp, http.StatusUnauthorized, api.CodeUnauthorized)
			continue
		}
		if got := answer(resp); got != wrong {
			t.Errorf("%s: answer %s\ndiffers from a wrong key's %s", name, got, wrong)
		}
	}
	// The header twice is no key.
	r, _ := http.NewRequest("PUT", e.hs.URL+"/v1/messages/bob", bodyReader(t, newSend(api.NewUUID(), 1)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Add(api.HeaderUnidentifiedAccessKey, headerKey(key))
	r.Header.Add(api.HeaderUnidentifiedAccessKey, headerKey(key))
	resp, err := e.hs.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := answer(resp); got != wrong {
		t.Errorf("two keys: answer %s differs from a wrong key's", got)
	}
	// Credentials and a key at once: 400, whatever they are.
	r, _ = http.NewRequest("PUT", e.hs.URL+"/v1/messages/bob", bodyReader(t, newSend(api.NewUUID(), 1)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", bob.auth())
	r.Header.Set(api.HeaderUnidentifiedAccessKey, headerKey(key))
	if resp, err = e.hs.Client().Do(r); err != nil {
		t.Fatal(err)
	}
	e.fails(resp, http.StatusBadRequest, api.CodeBadRequest)
	if n := e.queueLen(bob); n != 0 {
		t.Fatalf("refused sends queued %d envelopes", n)
	}
	// The right key still works.
	e.sealedOK(bob, key, "finally")
}

// TestSealedSendUnrestricted: an unrestricted account takes any
// well-formed key, and says so on lookup.
func TestSealedSendUnrestricted(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	carol := e.register("carol", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, true)
	e.setAccess(carol, nil, true) // unrestricted without a key

	lookup := func(name string) bool {
		t.Helper()
		var a api.Account
		e.ok(e.do(alice, "GET", "/v1/accounts/"+name, nil), &a)
		return a.UnrestrictedUnidentifiedAccess
	}
	if !lookup("bob") || !lookup("carol") || lookup("alice") {
		t.Fatal("lookups do not tell who is unrestricted")
	}
	e.sealedOK(bob, newAccessKey(), "any key")
	e.sealedOK(bob, key, "the key")
	e.sealedOK(carol, newAccessKey(), "any key")
	e.fails(e.sealed("carol", "junk", api.NewUUID(), map[uint32]uint32{1: carol.regID}, "x"), 401, api.CodeUnidentifiedAccessDenied)

	// Restricted again, keeping the key.
	e.setAccess(bob, nil, false)
	if lookup("bob") {
		t.Fatal("bob still looks unrestricted")
	}
	e.fails(e.sealed("bob", headerKey(newAccessKey()), api.NewUUID(), map[uint32]uint32{1: bob.regID}, "x"), 401, api.CodeUnidentifiedAccessDenied)
	e.sealedOK(bob, key, "the kept key")
	if n := e.queueLen(bob); n != 3 {
		t.Fatalf("bob's queue %d, want 3", n)
	}
}

// TestSendTypesByRoute: type 6 only without credentials, 2, 3 and 7 only
// with them.
func TestSendTypesByRoute(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	body := func(typ int) api.SendRequest {
		return newSend(api.NewUUID(), 1, api.OutgoingMessage{DeviceID: 1, RegistrationID: bob.regID, Type: typ, Content: []byte("c")})
	}
	for _, typ := range []int{api.EnvelopeWhisper, api.EnvelopePreKey, api.EnvelopeSenderKey, 1, 8} {
		e.fails(e.sealedRaw("bob", headerKey(key), body(typ)), 400, api.CodeBadRequest)
	}
	for _, typ := range []int{api.EnvelopeUnidentifiedSender, 1, 8} {
		e.fails(e.do(alice, "PUT", "/v1/messages/bob", body(typ)), 400, api.CodeBadRequest)
	}
	if n := e.queueLen(bob); n != 0 {
		t.Fatalf("queued %d", n)
	}
	e.ok(e.sealedRaw("bob", headerKey(key), body(api.EnvelopeUnidentifiedSender)), nil)
	for _, typ := range []int{api.EnvelopeWhisper, api.EnvelopePreKey, api.EnvelopeSenderKey} {
		e.ok(e.do(alice, "PUT", "/v1/messages/bob", body(typ)), nil)
	}
}

// TestSealedSendDeviceChecks: the same 409 and 410 as an authenticated send.
func TestSealedSendDeviceChecks(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 0, 0)
	bob2 := e.addDevice(bob)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	k := headerKey(key)
	check := func(devs map[uint32]uint32, status int, code string, missing, extra, stale []uint32) {
		t.Helper()
		er := e.fails(e.sealed("bob", k, api.NewUUID(), devs, "x"), status, code)
		if !slices.Equal(er.MissingDevices, missing) || !slices.Equal(er.ExtraDevices, extra) || !slices.Equal(er.StaleDevices, stale) {
			t.Fatalf("%s: missing %v extra %v stale %v; want %v %v %v", code, er.MissingDevices, er.ExtraDevices, er.StaleDevices, missing, extra, stale)
		}
	}
	check(map[uint32]uint32{1: bob.regID}, 409, api.CodeMismatchedDevices, []uint32{2}, nil, nil)
	check(map[uint32]uint32{1: bob.regID, 2: bob2.regID, 5: 1}, 409, api.CodeMismatchedDevices, nil, []uint32{5}, nil)
	check(map[uint32]uint32{1: bob.regID, 2: bob2.regID + 1}, 410, api.CodeStaleDevices, nil, nil, []uint32{2})
	var ok api.SendResponse
	e.ok(e.sealed("bob", k, api.NewUUID(), map[uint32]uint32{1: bob.regID, 2: bob2.regID}, "x"), &ok)
	if ok.Delivered != 2 || e.queueLen(bob) != 1 || e.queueLen(bob2) != 1 {
		t.Fatalf("delivered %d", ok.Delivered)
	}
}

// TestSealedSendIdempotent: a sealed send id is refused a second time for
// the same recipient, whoever sends it, and is independent of other
// recipients and of authenticated sends.
func TestSealedSendIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	carol := e.register("carol", 0, 0)
	kb, kc := newAccessKey(), newAccessKey()
	e.setAccess(bob, kb, false)
	e.setAccess(carol, kc, false)
	id := api.NewUUID()
	toBob := map[uint32]uint32{1: bob.regID}
	e.ok(e.sealed("bob", headerKey(kb), id, toBob, "once"), nil)
	e.fails(e.sealed("bob", headerKey(kb), id, toBob, "twice"), 409, api.CodeDuplicate)
	// A retry after bob's devices changed is still a duplicate.
	bob2 := e.addDevice(bob)
	e.fails(e.sealed("bob", headerKey(kb), id, toBob, "retry"), 409, api.CodeDuplicate)
	e.ok(e.sealed("carol", headerKey(kc), id, map[uint32]uint32{1: carol.regID}, "to carol"), nil)
	e.ok(e.send(alice, "carol", id, map[uint32]uint32{1: carol.regID}, "identified"), nil)
	if n := e.queueLen(bob); n != 1 || e.queueLen(bob2) != 0 {
		t.Fatalf("bob's queues %d and %d, want 1 and 0", n, e.queueLen(bob2))
	}

	// The send-id record of a sealed send is not the one the sender's
	// device would have made: the sender's identity is not in it.
	used, err := e.st.SendUsed(context.Background(), alice.id, alice.device, id)
	if err != nil || !used {
		t.Fatalf("alice's own send id: %v, %v", used, err)
	}
	fresh := api.NewUUID()
	e.ok(e.sealed("bob", headerKey(kb), fresh, map[uint32]uint32{1: bob.regID, 2: bob2.regID}, "x"), nil)
	for _, u := range []*user{alice, bob, carol} {
		if used, err := e.st.SendUsed(context.Background(), u.id, u.device, fresh); err != nil || used {
			t.Errorf("the sealed send id is recorded under %s's device: %v, %v", u.name, used, err)
		}
	}
	if used, err := e.st.SealedSendUsed(context.Background(), bob.id, fresh); err != nil || !used {
		t.Errorf("SealedSendUsed(bob) = %v, %v", used, err)
	}
}

// TestUnidentifiedRateLimit: unidentified sends are limited per recipient;
// refused attempts cost the recipient nothing, and authenticated sends to
// the same recipient are not affected.
func TestUnidentifiedRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UnidentifiedRate = RateLimit{Rate: 0.001, Burst: 2} })
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	carol := e.register("carol", 0, 0)
	key := newAccessKey()
	e.setAccess(bob, key, false)
	e.setAccess(carol, nil, true)
	for range 3 {
		e.fails(e.sealed("bob", headerKey(newAccessKey()), api.NewUUID(), map[uint32]uint32{1: bob.regID}, "x"), 401, api.CodeUnidentifiedAccessDenied)
	}
	e.sealedOK(bob, key, "1")
	e.sealedOK(bob, key, "2")
	resp := e.sealed("bob", headerKey(key), api.NewUUID(), map[uint32]uint32{1: bob.regID}, "3")
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	e.fails(resp, 429, api.CodeRateLimited)
	// Other recipients have their own bucket; authenticated sends none of it.
	e.sealedOK(carol, newAccessKey(), "to carol")
	for range 3 {
		e.sendOK(alice, bob, "identified")
	}
	if n := e.queueLen(bob); n != 5 {
		t.Fatalf("bob's queue %d, want 5", n)
	}
	if !strings.Contains(e.metrics(), `doorless_rate_limited_total{scope="recipient"} 1`) {
		t.Error("the refusal is not counted under scope recipient")
	}
}

// TestAttributes: PUT /v1/accounts/me/attributes sets and keeps the key,
// and refuses a key of the wrong size; registration and linking refuse one
// too, and linking with a key replaces the account's.
func TestAttributes(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 0, 0)
	e.fails(e.do(nil, "PUT", api.PathAttributes, api.AccountAttributes{UnrestrictedUnidentifiedAccess: true}), 401, api.CodeUnauthorized)
	for _, bad := range [][]byte{{}, make([]byte, 15), make([]byte, 17)} {
		b, _ := json.Marshal(bad)
		e.fails(e.do(bob, "PUT", api.PathAttributes, `{"unidentified_access_key":`+string(b)+`}`), 400, api.CodeBadRequest)
	}
	e.fails(e.do(bob, "PUT", api.PathAttributes, `{"unrestricted":true}`), 400, api.CodeBadRequest)
	acct := func() *store.Account {
		t.Helper()
		a, err := e.st.AccountByID(context.Background(), bob.id)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := acct(); a.UnidentifiedAccessKey != nil || a.UnrestrictedUnidentifiedAccess {
		t.Fatalf("refused attribute changes changed %+v", a)
	}
	k1 := newAccessKey()
	e.setAccess(bob, k1, false)
	e.ok(e.do(bob, "PUT", api.PathAttributes, `{"unrestricted_unidentified_access":true}`), nil)
	if a := acct(); !bytes.Equal(a.UnidentifiedAccessKey, k1) || !a.UnrestrictedUnidentifiedAccess {
		t.Fatalf("after keeping the key: %+v", a)
	}

	req := registerRequest(t, "carol", newIdentity(t), 0, 0)
	req.UnidentifiedAccessKey = make([]byte, 8)
	e.fails(e.do(nil, "POST", api.PathAccounts, req), 400, api.CodeBadRequest)
	e.noAccount("carol")

	tok := e.linkToken(bob)
	link := e.linkRequest(bob, tok)
	link.UnidentifiedAccessKey = make([]byte, 20)
	e.fails(e.do(nil, "POST", api.PathDevices, link), 400, api.CodeBadRequest)
	k2 := newAccessKey()
	link.UnidentifiedAccessKey = k2
	e.ok(e.do(nil, "POST", api.PathDevices, link), nil)
	if a := acct(); !bytes.Equal(a.UnidentifiedAccessKey, k2) {
		t.Fatalf("linking with a key left %x", a.UnidentifiedAccessKey)
	}
}
