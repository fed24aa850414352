package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/audit"
	"github.com/doorless/doorless/internal/blob"
	"github.com/doorless/doorless/internal/store"
)

// seenCounter counts the store's SetLastSeenDay calls.
type seenCounter struct {
	store.Store
	mu   sync.Mutex
	days []int64
}

func (s *seenCounter) SetLastSeenDay(ctx context.Context, accountID string, deviceID uint32, day int64) error {
	s.mu.Lock()
	s.days = append(s.days, day)
	s.mu.Unlock()
	return s.Store.SetLastSeenDay(ctx, accountID, deviceID, day)
}

func (s *seenCounter) calls() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.days...)
}

// TestLastSeenDay: authenticated requests and WebSocket connections record
// the UTC day a device was seen, writing at most once a day.
func TestLastSeenDay(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 3, 9, 22, 0, 0, 0, time.UTC)}
	var counter *seenCounter
	e := newEnv(t, func(c *Config) {
		counter = &seenCounter{Store: c.Store}
		c.Store = counter
		c.Now = clk.now
	})
	day := store.Day(clk.now())
	bob := e.register("bob", 20, 20)
	lastSeen := func() int64 {
		t.Helper()
		d, err := e.st.Device(context.Background(), bob.id, bob.device)
		if err != nil {
			t.Fatal(err)
		}
		return d.LastSeenDay
	}
	// Registered today: seen today, nothing more to write.
	for range 3 {
		e.ok(e.do(bob, "GET", api.PathDevices, nil), nil)
	}
	if got := lastSeen(); got != day || len(counter.calls()) != 0 {
		t.Fatalf("day of registration: last seen %d, %d writes; want %d, none", got, len(counter.calls()), day)
	}
	// Three hours later it is the next day (UTC): one write, then none.
	clk.add(3 * time.Hour)
	for range 3 {
		e.ok(e.do(bob, "GET", api.PathKeyStatus, nil), nil)
	}
	if got, calls := lastSeen(), counter.calls(); got != day+1 || len(calls) != 1 || calls[0] != day+1 {
		t.Fatalf("next day: last seen %d after writes %v; want %d after one", got, calls, day+1)
	}
	// The WebSocket counts as a connection too.
	clk.add(24 * time.Hour)
	c := e.dial(bob)
	readType(t, c, api.FrameQueueEmpty)
	c.Close(websocket1000, "")
	if got, calls := lastSeen(), counter.calls(); got != day+2 || len(calls) != 2 {
		t.Fatalf("WebSocket: last seen %d after writes %v; want %d after two", got, calls, day+2)
	}
	// A refused request (wrong password) records nothing.
	clk.add(24 * time.Hour)
	e.fails(e.do(&user{id: bob.id, device: bob.device, password: "wrong"}, "GET", api.PathDevices, nil), 401, api.CodeUnauthorized)
	if got := lastSeen(); got != day+2 {
		t.Fatalf("a refused request moved the day to %d", got)
	}
	// Nothing finer than the day is kept: the device row holds the day
	// number and its creation time, no time of the later requests.
	d, err := e.st.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range d["devices"] {
		for col, v := range row {
			if ms, ok := v.(int64); ok && col != "created" && ms > 1e12 {
				t.Errorf("devices.%s holds %d, a time finer than a day", col, ms)
			}
		}
	}
}

// deletionNeedles are the bytes of what the server held for an account
// (u, and its other devices), to look for after its deletion.
func deletionNeedles(req *api.RegisterRequest, u *user, others ...*user) map[string][]byte {
	n := map[string][]byte{
		"account id":            []byte(u.id),
		"username":              []byte(u.name),
		"identity key":          req.IdentityKey,
		"identity key (x25519)": req.IdentityKey[1:],
		"first device list":     req.DeviceList,
		"signed prekey":         req.Keys.SignedPreKey.PublicKey,
		"signed prekey sig":     req.Keys.SignedPreKey.Signature,
		"last-resort key sig":   req.Keys.LastResortKyberPreKey.Signature,
	}
	if req.UnidentifiedAccessKey != nil {
		n["access key"] = req.UnidentifiedAccessKey
	}
	for i, k := range req.Keys.PreKeys {
		n["prekey "+string(rune('a'+i))] = k.PublicKey
	}
	for i, k := range req.Keys.KyberPreKeys {
		n["kyber prekey sig "+string(rune('a'+i))] = k.Signature
	}
	for _, d := range append([]*user{u}, others...) {
		h := sha256.Sum256([]byte(d.password))
		n["credential hash of device "+string(rune('0'+d.device))] = h[:]
	}
	return n
}

// TestDeleteAccount registers three users, has them exchange messages
// (identified and sealed, delivered and not) and upload a file, deletes one
// account from its second device, and then dumps the database and scans
// every file of the data directory for anything of it. The others work on,
// and the username can be registered again.
func TestDeleteAccount(t *testing.T) {
	dataDir := t.TempDir()
	clk := &testClock{t: time.Now()}
	blobs, err := blob.NewFS(filepath.Join(dataDir, "attachments"), clk.now)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvIn(t, dataDir, func(c *Config) {
		c.Blobs = blobs
		c.MaxAttachmentChunk = 1000
		c.Now = clk.now
	})
	ae := &attEnv{env: e, clock: clk, dir: filepath.Join(dataDir, "attachments")}

	id := newIdentity(t)
	req := registerRequest(t, "zelda_gone", id, 5, 5)
	req.UnidentifiedAccessKey = newAccessKey()
	var reg api.RegisterResponse
	e.ok(e.do(nil, "POST", api.PathAccounts, req), &reg)
	zelda := &user{name: "zelda_gone", id: reg.AccountID, device: reg.DeviceID, regID: req.RegistrationID, password: reg.Password, identity: id}
	zelda2 := e.addDevice(zelda)
	bob := e.register("bob", 20, 20)
	carol := e.register("carol", 20, 20)
	e.setAccess(bob, nil, true)

	// Messages every way: delivered and acknowledged, and still queued.
	toZelda := map[uint32]uint32{1: zelda.regID, 2: zelda2.regID}
	e.ok(e.send(bob, "zelda_gone", api.NewUUID(), toZelda, "bob to zelda, read on device 2"), nil)
	zc := e.dial(zelda2)             // connected while the account is deleted
	readType(t, zc, api.FrameRefill) // a linked test device has few one-time keys
	f := readType(t, zc, api.FrameEnvelope)
	ack(t, zc, f.Envelope.ID)
	readType(t, zc, api.FrameQueueEmpty)
	e.ok(e.send(carol, "zelda_gone", api.NewUUID(), toZelda, "carol to zelda, unread"), nil)
	e.ok(e.sealed("zelda_gone", headerKey(req.UnidentifiedAccessKey), api.NewUUID(), toZelda, "sealed to zelda"), nil)
	e.sendOK(zelda, bob, "zelda to bob, unread")
	e.sealedOK(bob, newAccessKey(), "sealed to bob, from zelda")
	e.ok(e.send(zelda, "zelda_gone", api.NewUUID(), map[uint32]uint32{2: zelda2.regID}, "zelda to her own device"), nil)
	e.sendOK(carol, bob, "carol to bob")
	e.bundle(bob, "/v1/keys/zelda_gone/*") // hands out one-time keys
	e.linkToken(zelda)                     // left pending
	file := randomBytes(1500)
	cr := ae.create(zelda, int64(len(file)))
	ae.patchOK(cr, ae.patchOK(cr, 0, file[:1000]), file[1000:])

	needles := deletionNeedles(req, zelda, zelda2)
	dump, err := e.st.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"account id", "username", "identity key", "access key", "prekey e", "credential hash of device 2"} {
		if len(dump.Find(needles[what])) == 0 {
			t.Fatalf("before deletion the dump holds no %s: the test would prove nothing", what)
		}
	}

	if found, err := audit.ScanDir(dataDir, needles); err != nil || len(found) == 0 {
		t.Fatalf("before deletion the data directory holds nothing of the account (%v): the scan would prove nothing", err)
	}

	// Deleted from the second device, not the primary.
	e.fails(e.do(nil, "DELETE", api.PathAccountMe, nil), 401, api.CodeUnauthorized)
	resp := e.do(zelda2, "DELETE", api.PathAccountMe, nil)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("DELETE /v1/accounts/me: %d", resp.StatusCode)
	}
	if err := readClose(zc); websocket.CloseStatus(err) != api.CloseRevoked {
		t.Fatalf("the deleted account's WebSocket ended with %v, want %d", err, api.CloseRevoked)
	}

	dump, err = e.st.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range needles {
		if at := dump.Find(b); len(at) > 0 {
			t.Errorf("after deletion the %s is still in %v", what, at)
		}
	}
	found, err := audit.ScanDir(dataDir, needles)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("after deletion the data directory holds the %s", f)
	}

	// The account is gone for everyone.
	for _, u := range []*user{zelda, zelda2} {
		e.fails(e.do(u, "GET", api.PathDevices, nil), 401, api.CodeUnauthorized)
	}
	e.fails(e.do(bob, "GET", "/v1/accounts/zelda_gone", nil), 404, api.CodeNotFound)
	e.fails(e.do(bob, "GET", "/v1/keys/zelda_gone/*", nil), 404, api.CodeNotFound)
	e.fails(e.send(bob, "zelda_gone", api.NewUUID(), map[uint32]uint32{1: zelda.regID}, "x"), 404, api.CodeNotFound)
	e.fails(e.sealed("zelda_gone", headerKey(req.UnidentifiedAccessKey), api.NewUUID(), map[uint32]uint32{1: zelda.regID}, "x"), 401, api.CodeUnidentifiedAccessDenied)

	// Bob gets what was sealed (it names no one) and carol's message; the
	// envelope in zelda's name was withdrawn with her account.
	bc := e.dial(bob)
	var got []string
	for {
		f := read(t, bc)
		if f.Type == api.FrameQueueEmpty {
			break
		}
		if f.Type != api.FrameEnvelope {
			continue
		}
		got = append(got, string(f.Envelope.Content))
		ack(t, bc, f.Envelope.ID)
	}
	if strings.Join(got, "|") != "sealed to bob, from zelda|carol to bob" {
		t.Fatalf("bob received %q", got)
	}
	// The others work on, and the username is free.
	e.sendOK(bob, carol, "still here")
	again := e.register("zelda_gone", 1, 1)
	if again.id == zelda.id {
		t.Fatal("the new zelda_gone has the deleted account's id")
	}
	e.sendOK(carol, again, "hello, new zelda")
	var a api.Account
	e.ok(e.do(bob, "GET", "/v1/accounts/zelda_gone", nil), &a)
	if a.ID != again.id {
		t.Fatalf("lookup gives %s, want the new account %s", a.ID, again.id)
	}
}

// TestWithdrawnEnvelope: an envelope whose sender's account no longer
// exists is not delivered (DeleteAccount removes such envelopes; one read
// just before is skipped), and the envelopes after it are.
func TestWithdrawnEnvelope(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 20, 20)
	gone := api.NewUUID()
	err := e.st.Enqueue(context.Background(), &store.Send{
		SourceAccount: gone, SourceDevice: 1, SendID: api.NewUUID(),
		Envelopes: []store.Envelope{{ID: api.NewUUID(), AccountID: bob.id, DeviceID: 1, Type: api.EnvelopeWhisper,
			SourceAccount: gone, SourceDevice: 1, ClientTimestamp: time.Now(), ServerTimestamp: time.Now(), Content: []byte("from no one")}},
	}, 10)
	if err != nil {
		t.Fatal(err)
	}
	e.sendOK(alice, bob, "from alice")
	c := e.dial(bob)
	f := readType(t, c, api.FrameEnvelope)
	if string(f.Envelope.Content) != "from alice" {
		t.Fatalf("first envelope %q, want alice's", f.Envelope.Content)
	}
	ack(t, c, f.Envelope.ID)
	readType(t, c, api.FrameQueueEmpty)
}

// TestLogIPs: request lines carry no IP address unless LogIPs asks.
func TestLogIPs(t *testing.T) {
	for _, on := range []bool{false, true} {
		var logs syncBuffer
		e := newEnv(t, func(c *Config) {
			c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			c.LogIPs = on
		})
		e.ok(e.do(nil, "GET", api.PathHealth, nil), nil)
		e.fails(e.do(nil, "GET", api.PathDevices, nil), 401, api.CodeUnauthorized)
		var lines int
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			if m["msg"] != "request" {
				continue
			}
			lines++
			ip, has := m["ip"]
			if has != on || (on && ip != "127.0.0.1") {
				t.Errorf("LogIPs %v: request line %s", on, l)
			}
		}
		if lines != 2 {
			t.Fatalf("LogIPs %v: %d request lines, want 2:\n%s", on, lines, logs.String())
		}
		if !on && strings.Contains(logs.String(), "127.0.0.1") {
			t.Errorf("logs carry the address without LogIPs:\n%s", logs.String())
		}
	}
}
