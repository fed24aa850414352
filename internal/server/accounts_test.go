package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
)

// noAccount checks that username was not stored.
func (e *env) noAccount(username string) {
	e.t.Helper()
	if _, err := e.st.AccountByUsername(context.Background(), username); !errors.Is(err, store.ErrNotFound) {
		e.t.Fatalf("account %s: %v, want not found", username, err)
	}
}

func TestRegisterOpen(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 3, 3)
	if !api.ValidUUID(alice.id) || alice.device != api.PrimaryDeviceID || len(alice.password) != 43 {
		t.Fatalf("registration answer %+v", alice)
	}
	d, err := e.st.Device(context.Background(), alice.id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.CredentialHash) == alice.password || len(d.CredentialHash) != 32 {
		t.Fatal("credential not stored as a SHA-256")
	}
	var devs api.DevicesResponse
	e.ok(e.do(alice, "GET", api.PathDevices, nil), &devs)
	if len(devs.Devices) != 1 || devs.Devices[0].ID != 1 || devs.Devices[0].RegistrationID != 42 {
		t.Fatalf("devices %+v", devs)
	}

	req := registerRequest(t, "alice", newIdentity(t), 0, 0)
	e.fails(e.do(nil, "POST", api.PathAccounts, req), http.StatusConflict, api.CodeUsernameTaken)
}

func TestRegisterClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = api.RegistrationClosed })
	req := registerRequest(t, "alice", newIdentity(t), 0, 0)
	e.fails(e.do(nil, "POST", api.PathAccounts, req), http.StatusForbidden, api.CodeForbidden)
	e.noAccount("alice")
}

func TestRegisterInvite(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = api.RegistrationInvite })
	ctx := context.Background()
	codes, err := CreateInvites(ctx, e.st, 2, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 2 || codes[0] == codes[1] || len(codes[0]) != 32 {
		t.Fatalf("codes %q", codes)
	}
	expired, err := CreateInvites(ctx, e.st, 1, time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	try := func(name, code string) *http.Response {
		req := registerRequest(t, name, newIdentity(t), 0, 0)
		req.InviteCode = code
		return e.do(nil, "POST", api.PathAccounts, req)
	}
	e.fails(try("alice", ""), http.StatusForbidden, api.CodeInvalidInvite)
	e.fails(try("alice", "not-a-code"), http.StatusForbidden, api.CodeInvalidInvite)
	e.fails(try("alice", strings.ToUpper(codes[0])), http.StatusForbidden, api.CodeInvalidInvite)
	e.fails(try("alice", expired[0]), http.StatusForbidden, api.CodeInvalidInvite)
	e.noAccount("alice")

	e.ok(try("alice", codes[0]), nil)
	e.fails(try("bob", codes[0]), http.StatusForbidden, api.CodeInvalidInvite) // used
	e.noAccount("bob")
	// A taken username does not consume the invite.
	e.fails(try("alice", codes[1]), http.StatusConflict, api.CodeUsernameTaken)
	e.ok(try("bob", codes[1]), nil)
}

func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t, nil)
	id := newIdentity(t)
	other := newIdentity(t)
	valid := func() *api.RegisterRequest { return registerRequest(t, "alice", id, 2, 2) }
	tests := []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{"malformed", `{"username":`, "", 400, api.CodeBadRequest},
		{"not an object", `[1,2]`, "", 400, api.CodeBadRequest},
		{"unknown field", `{"username":"alice","admin":true}`, "", 400, api.CodeBadRequest},
		{"trailing data", `{"username":"alice"} {}`, "", 400, api.CodeBadRequest},
		{"wrong type", `{"username":7}`, "", 400, api.CodeBadRequest},
		{"bad base64", `{"username":"alice","identity_key":"!!!"}`, "", 400, api.CodeBadRequest},
		{"text/plain", valid(), "text/plain", 415, api.CodeUnsupportedMedia},
		{"no content type", valid(), "-", 415, api.CodeUnsupportedMedia},
		{"oversized", `{"username":"` + strings.Repeat("a", 2<<20) + `"}`, "", 413, api.CodeTooLarge},
		{"bad username", func() any { r := valid(); r.Username = "Alice"; return r }(), "", 400, api.CodeBadRequest},
		{"short username", func() any { r := valid(); r.Username = "al"; return r }(), "", 400, api.CodeBadRequest},
		{"identity key prefix", func() any { r := valid(); r.IdentityKey = append([]byte{6}, r.IdentityKey[1:]...); return r }(), "", 400, api.CodeBadRequest},
		{"identity key length", func() any { r := valid(); r.IdentityKey = r.IdentityKey[:32]; return r }(), "", 400, api.CodeBadRequest},
		{"registration id 0", func() any { r := valid(); r.RegistrationID = 0; return r }(), "", 400, api.CodeBadRequest},
		{"registration id too big", func() any { r := valid(); r.RegistrationID = api.MaxRegistrationID + 1; return r }(), "", 400, api.CodeBadRequest},
		{"no signed prekey", func() any { r := valid(); r.Keys.SignedPreKey = nil; return r }(), "", 400, api.CodeBadRequest},
		{"no last resort", func() any { r := valid(); r.Keys.LastResortKyberPreKey = nil; return r }(), "", 400, api.CodeBadRequest},
		{"signed prekey signed by another key", func() any {
			r := valid()
			r.Keys.SignedPreKey = signedPreKey(t, other, 1)
			return r
		}(), "", 400, api.CodeBadSignature},
		{"last resort signed by another key", func() any {
			r := valid()
			k := kyberPreKey(t, other, 9)
			r.Keys.LastResortKyberPreKey = &k
			return r
		}(), "", 400, api.CodeBadSignature},
		{"one kyber prekey signed by another key", func() any {
			r := valid()
			r.Keys.KyberPreKeys[1] = kyberPreKey(t, other, 7)
			return r
		}(), "", 400, api.CodeBadSignature},
		{"signature over other bytes", func() any {
			r := valid()
			r.Keys.SignedPreKey.Signature = sign(t, id, []byte("something else"))
			return r
		}(), "", 400, api.CodeBadSignature},
		{"kyber key of unknown type", func() any {
			r := valid()
			pub := append([]byte{0x07}, r.Keys.KyberPreKeys[0].PublicKey[1:]...)
			r.Keys.KyberPreKeys[0] = api.KyberPreKey{ID: 1, PublicKey: pub, Signature: sign(t, id, pub)}
			return r
		}(), "", 400, api.CodeBadRequest},
		{"prekey not a key", func() any { r := valid(); r.Keys.PreKeys[0].PublicKey = []byte{5, 1}; return r }(), "", 400, api.CodeBadRequest},
		{"prekey id twice", func() any { r := valid(); r.Keys.PreKeys[1].ID = r.Keys.PreKeys[0].ID; return r }(), "", 400, api.CodeBadRequest},
		{"too many prekeys", func() any {
			r := valid()
			r.Keys.PreKeys = preKeys(t, 1, api.MaxPreKeysPerUpload+1)
			return r
		}(), "", 400, api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			req, _ := http.NewRequest("POST", e.hs.URL+api.PathAccounts, bodyReader(t, tt.body))
			switch tt.ctype {
			case "":
				req.Header.Set("Content-Type", "application/json; charset=utf-8")
			case "-":
			default:
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := e.hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			e.fails(resp, tt.status, tt.code)
			e.noAccount("alice")
		})
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 3, 3)
	ctx := context.Background()
	before, err := e.st.KeyCounts(ctx, alice.id, 1)
	if err != nil {
		t.Fatal(err)
	}
	upload := api.KeyUpload{PreKeys: preKeys(t, 100, 5)}
	variants := map[string]*user{
		"no credentials":  nil,
		"wrong password":  {id: alice.id, device: 1, password: alice.password[:42] + "x"},
		"empty password":  {id: alice.id, device: 1},
		"other device":    {id: alice.id, device: 2, password: alice.password},
		"unknown account": {id: api.NewUUID(), device: 1, password: alice.password},
	}
	for name, u := range variants {
		t.Run(name, func(t *testing.T) {
			e.t = t
			e.fails(e.do(u, "PUT", api.PathKeys, upload), 401, api.CodeUnauthorized)
			r2 := e.do(u, "GET", api.PathDevices, nil)
			if r2.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			e.fails(r2, 401, api.CodeUnauthorized)
		})
	}
	e.t = t
	for _, login := range []string{"", "x", alice.id, alice.id + ".", alice.id + ".0", alice.id + ".01", alice.id + ".1.1", strings.ToUpper(alice.id) + ".1"} {
		req, _ := http.NewRequest("GET", e.hs.URL+api.PathDevices, nil)
		req.SetBasicAuth(login, alice.password)
		resp, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		e.fails(resp, 401, api.CodeUnauthorized)
	}
	after, err := e.st.KeyCounts(ctx, alice.id, 1)
	if err != nil || after != before {
		t.Fatalf("key counts %+v → %+v, %v", before, after, err)
	}
}

func TestRemoveDevice(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	alice2 := e.addDevice(alice)
	e.ok(e.send(bob, "alice", api.NewUUID(), map[uint32]uint32{1: alice.regID, 2: alice2.regID}, "for both devices"), nil)

	c := e.dial(alice2)
	readType(t, c, api.FrameRefill)
	readType(t, c, api.FrameEnvelope)

	// A secondary device may not remove another; nobody may remove
	// another account's device.
	e.fails(e.do(alice2, "DELETE", "/v1/devices/1", nil), 403, api.CodeForbidden)
	e.fails(e.do(bob, "DELETE", "/v1/devices/2", api.RemoveDeviceRequest{DeviceList: signList(t, bob.identity, 2, 1)}), 404, api.CodeNotFound)
	e.fails(e.do(alice, "DELETE", "/v1/devices/0", nil), 400, api.CodeBadRequest)
	e.fails(e.do(alice, "DELETE", "/v1/devices/9", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 3, 1, 2)}), 404, api.CodeNotFound)

	e.removeOK(alice, 2)
	if err := readClose(c); websocket.CloseStatus(err) != api.CloseRevoked {
		t.Fatalf("revoked device's websocket: %v, want close %d", err, api.CloseRevoked)
	}
	e.fails(e.do(alice2, "GET", api.PathDevices, nil), 401, api.CodeUnauthorized)
	ctx := context.Background()
	if _, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.hs.URL, "http")+api.PathWebSocket, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {alice2.auth()}},
	}); err == nil {
		t.Fatal("revoked device connected")
	}
	var devs api.DevicesResponse
	e.ok(e.do(alice, "GET", api.PathDevices, nil), &devs)
	if len(devs.Devices) != 1 {
		t.Fatalf("devices after removal %+v", devs)
	}
	if l := e.deviceList(alice); l.Version != 3 || !slices.Equal(l.Devices, []uint32{1}) {
		t.Fatalf("device list after removal %+v, want version 3 listing [1]", l)
	}

	// The last device may not remove itself.
	e.fails(e.do(alice, "DELETE", "/v1/devices/1", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1)}), 403, api.CodeForbidden)
	e.ok(e.do(alice, "GET", api.PathDevices, nil), nil)
}

func TestAccountLookup(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	e.register("bob", 0, 0)
	var a api.Account
	e.ok(e.do(alice, "GET", "/v1/accounts/bob", nil), &a)
	if a.Username != "bob" || !api.ValidUUID(a.ID) || len(a.IdentityKey) != 33 {
		t.Fatalf("account %+v", a)
	}
	e.fails(e.do(alice, "GET", "/v1/accounts/carol", nil), 404, api.CodeNotFound)
	e.fails(e.do(alice, "GET", "/v1/accounts/NOT_VALID", nil), 404, api.CodeNotFound)
	e.fails(e.do(nil, "GET", "/v1/accounts/bob", nil), 401, api.CodeUnauthorized)
}

// TestRemovePrimaryDevice: as docs/api.md says, the other devices go on
// working without a primary (none may remove another), and the last device
// stays.
func TestRemovePrimaryDevice(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 0, 0)
	carol := e.register("carol", 0, 0)
	carol2, carol3 := e.addDevice(carol), e.addDevice(carol)
	e.removeOK(carol, 1)
	e.ok(e.do(carol2, "GET", api.PathDevices, nil), nil)
	e.fails(e.removeDevice(carol2, 3), 403, api.CodeForbidden)
	e.ok(e.send(bob, "carol", api.NewUUID(), map[uint32]uint32{2: carol2.regID, 3: carol3.regID}, "x"), nil)
	e.removeOK(carol2, 2)
	e.fails(e.do(carol3, "DELETE", "/v1/devices/3", api.RemoveDeviceRequest{DeviceList: signList(t, carol.identity, 6, 3)}), 403, api.CodeForbidden)
	e.ok(e.send(bob, "carol", api.NewUUID(), map[uint32]uint32{3: carol3.regID}, "y"), nil)
	if l := e.deviceList(carol3); l.Version != 5 || !slices.Equal(l.Devices, []uint32{3}) {
		t.Fatalf("device list %+v, want version 5 listing [3]", l)
	}
}
