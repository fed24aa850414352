package server

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/doorless/doorless/internal/api"
)

func (e *env) queueLen(u *user) int {
	e.t.Helper()
	n, err := e.st.QueueLen(context.Background(), u.id, u.device)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func TestSendDeviceChecks(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	bob2 := e.addDevice(bob)

	check := func(devs map[uint32]uint32, status int, code string, missing, extra, stale []uint32) {
		t.Helper()
		er := e.fails(e.send(alice, "bob", api.NewUUID(), devs, "x"), status, code)
		if !slices.Equal(er.MissingDevices, missing) || !slices.Equal(er.ExtraDevices, extra) || !slices.Equal(er.StaleDevices, stale) {
			t.Fatalf("%s: missing %v extra %v stale %v; want %v %v %v", code, er.MissingDevices, er.ExtraDevices, er.StaleDevices, missing, extra, stale)
		}
	}
	check(nil, 409, api.CodeMismatchedDevices, []uint32{1, 2}, nil, nil)
	check(map[uint32]uint32{1: bob.regID}, 409, api.CodeMismatchedDevices, []uint32{2}, nil, nil)
	check(map[uint32]uint32{1: bob.regID, 2: bob2.regID, 3: 1}, 409, api.CodeMismatchedDevices, nil, []uint32{3}, nil)
	check(map[uint32]uint32{1: bob.regID, 3: 1}, 409, api.CodeMismatchedDevices, []uint32{2}, []uint32{3}, nil)
	check(map[uint32]uint32{1: bob.regID + 1, 2: bob2.regID}, 410, api.CodeStaleDevices, nil, nil, []uint32{1})
	check(map[uint32]uint32{1: bob.regID + 1, 2: bob2.regID + 1}, 410, api.CodeStaleDevices, nil, nil, []uint32{1, 2})
	if e.queueLen(bob)+e.queueLen(bob2) != 0 {
		t.Fatal("refused sends queued envelopes")
	}
	var ok api.SendResponse
	e.ok(e.send(alice, "bob", api.NewUUID(), map[uint32]uint32{1: bob.regID, 2: bob2.regID}, "x"), &ok)
	if ok.Delivered != 2 || e.queueLen(bob) != 1 || e.queueLen(bob2) != 1 {
		t.Fatalf("delivered %d", ok.Delivered)
	}

	// To one's own account: every other device, never the sending one.
	e.fails(e.send(bob, "bob", api.NewUUID(), map[uint32]uint32{1: bob.regID, 2: bob2.regID}, "x"), 409, api.CodeMismatchedDevices)
	e.ok(e.send(bob, "bob", api.NewUUID(), map[uint32]uint32{2: bob2.regID}, "sync"), nil)
	er := e.fails(e.send(alice, "alice", api.NewUUID(), map[uint32]uint32{1: alice.regID}, "x"), 409, api.CodeMismatchedDevices)
	if !slices.Equal(er.ExtraDevices, []uint32{1}) {
		t.Fatalf("sending to oneself: extra %v", er.ExtraDevices)
	}
	e.ok(e.send(alice, "alice", api.NewUUID(), nil, ""), &ok)
	if ok.Delivered != 0 || e.queueLen(alice) != 0 {
		t.Fatal("a send to oneself with no other device queued something")
	}
}

func TestSendDuplicate(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	alice2 := e.addDevice(alice)
	bob := e.register("bob", 0, 0)
	id := api.NewUUID()
	devs := map[uint32]uint32{1: bob.regID}
	e.ok(e.send(alice, "bob", id, devs, "once"), nil)
	e.fails(e.send(alice, "bob", id, devs, "twice"), 409, api.CodeDuplicate)
	e.fails(e.send(alice, "bob", id, devs, "thrice"), 409, api.CodeDuplicate)
	if n := e.queueLen(bob); n != 1 {
		t.Fatalf("queue holds %d envelopes, want 1", n)
	}
	// The id is the sending device's: another device may use it.
	e.ok(e.send(alice2, "bob", id, devs, "other device"), nil)
}

// TestSendRetryAfterDeviceChange is a send whose answer was lost, retried
// after the recipient's devices changed: the retry is a duplicate, not a
// device mismatch that would have the client re-encrypt under a new id and
// deliver twice.
func TestSendRetryAfterDeviceChange(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	id := api.NewUUID()
	devs := map[uint32]uint32{1: bob.regID}
	e.ok(e.send(alice, "bob", id, devs, "once"), nil) // the answer is lost
	e.addDevice(bob)
	e.fails(e.send(alice, "bob", id, devs, "retry"), 409, api.CodeDuplicate)
	e.fails(e.send(alice, "bob", id, map[uint32]uint32{1: bob.regID + 1}, "retry"), 409, api.CodeDuplicate)
	if n := e.queueLen(bob); n != 1 {
		t.Fatalf("bob's queue holds %d envelopes, want 1", n)
	}
}

func TestSendRefusals(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxEnvelope = 100
		c.MaxBody = 5000
	})
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	msg := func(mod func(*api.SendRequest)) api.SendRequest {
		r := newSend(api.NewUUID(), 1, api.OutgoingMessage{DeviceID: 1, RegistrationID: bob.regID, Type: api.EnvelopePreKey, Content: []byte("hi")})
		if mod != nil {
			mod(&r)
		}
		return r
	}
	for _, tt := range []struct {
		name   string
		from   *user
		to     string
		body   any
		status int
		code   string
	}{
		{"unauthenticated", nil, "bob", msg(nil), 401, api.CodeUnauthorized},
		{"no such user", alice, "carol", msg(nil), 404, api.CodeNotFound},
		{"id not a uuid", alice, "bob", msg(func(r *api.SendRequest) { r.ID = "1234" }), 400, api.CodeBadRequest},
		{"id upper case", alice, "bob", msg(func(r *api.SendRequest) { r.ID = strings.ToUpper(r.ID) }), 400, api.CodeBadRequest},
		{"no timestamp", alice, "bob", msg(func(r *api.SendRequest) { r.Timestamp = 0 }), 400, api.CodeBadRequest},
		{"unknown type", alice, "bob", msg(func(r *api.SendRequest) { r.Messages[0].Type = 1 }), 400, api.CodeBadRequest},
		{"empty content", alice, "bob", msg(func(r *api.SendRequest) { r.Messages[0].Content = nil }), 400, api.CodeBadRequest},
		{"device twice", alice, "bob", msg(func(r *api.SendRequest) { r.Messages = append(r.Messages, r.Messages[0]) }), 400, api.CodeBadRequest},
		{"no franking", alice, "bob", msg(func(r *api.SendRequest) { r.Franking = nil }), 400, api.CodeBadRequest},
		{"franking too short", alice, "bob", msg(func(r *api.SendRequest) { r.Franking = r.Franking[:31] }), 400, api.CodeBadRequest},
		{"franking too long", alice, "bob", msg(func(r *api.SendRequest) { r.Franking = append(r.Franking, 0) }), 400, api.CodeBadRequest},
		{"content too big", alice, "bob", msg(func(r *api.SendRequest) { r.Messages[0].Content = make([]byte, 101) }), 413, api.CodeTooLarge},
		{"body too big", alice, "bob", `{"id":"` + strings.Repeat("x", 6000) + `"}`, 413, api.CodeTooLarge},
		{"unknown field", alice, "bob", `{"id":"x","to":"y"}`, 400, api.CodeBadRequest},
		{"malformed", alice, "bob", `{"id":`, 400, api.CodeBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			e.fails(e.do(tt.from, "PUT", "/v1/messages/"+tt.to, tt.body), tt.status, tt.code)
			if n := e.queueLen(bob); n != 0 {
				t.Fatalf("queued %d", n)
			}
		})
	}
	e.t = t
	req, _ := http.NewRequest("PUT", e.hs.URL+"/v1/messages/bob", bodyReader(t, msg(nil)))
	req.Header.Set("Authorization", alice.auth())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e.fails(resp, 415, api.CodeUnsupportedMedia)
	e.ok(e.do(alice, "PUT", "/v1/messages/bob", msg(func(r *api.SendRequest) { r.Messages[0].Content = make([]byte, 100) })), nil)
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxQueue = 2 })
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	e.sendOK(alice, bob, "1")
	e.sendOK(alice, bob, "2")
	e.fails(e.send(alice, "bob", api.NewUUID(), map[uint32]uint32{1: bob.regID}, "3"), 429, api.CodeQueueFull)
	if n := e.queueLen(bob); n != 2 {
		t.Fatalf("queue %d", n)
	}
}
