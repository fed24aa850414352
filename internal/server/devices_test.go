package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/store"
)

// clock is a settable Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// wantDevices checks u's account's devices and its device list.
func (e *env) wantDevices(u *user, version uint64, ids ...uint32) {
	e.t.Helper()
	var devs api.DevicesResponse
	e.ok(e.do(u, "GET", api.PathDevices, nil), &devs)
	var got []uint32
	for _, d := range devs.Devices {
		got = append(got, d.ID)
	}
	if !slices.Equal(got, ids) {
		e.t.Fatalf("devices %v, want %v", got, ids)
	}
	l, err := devicelist.Verify(u.identity.PublicKey(), devs.DeviceList)
	if err != nil {
		e.t.Fatalf("device list: %v", err)
	}
	if l.Version != version || !slices.Equal(l.Devices, ids) {
		e.t.Fatalf("device list version %d %v, want version %d %v", l.Version, l.Devices, version, ids)
	}
}

func TestRegisterDeviceList(t *testing.T) {
	e := newEnv(t, nil)
	id, other := newIdentity(t), newIdentity(t)
	for name, tt := range map[string]struct {
		list []byte
		code string
	}{
		"no list":             {nil, api.CodeBadRequest},
		"not a list":          {[]byte("garbage"), api.CodeBadRequest},
		"signed by other key": {signList(t, other, 1, 1), api.CodeBadSignature},
		"version 2":           {signList(t, id, 2, 1), api.CodeBadRequest},
		"devices 1 and 2":     {signList(t, id, 1, 1, 2), api.CodeBadRequest},
		"device 2":            {signList(t, id, 1, 2), api.CodeBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			e.t = t
			req := registerRequest(t, "alice", id, 0, 0)
			req.DeviceList = tt.list
			e.fails(e.do(nil, "POST", api.PathAccounts, req), 400, tt.code)
			e.noAccount("alice")
		})
	}
	e.t = t
	alice := e.register("alice", 1, 1)
	e.wantDevices(alice, 1, 1)
}

func TestLinkDevice(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 1, 1)
	bob := e.register("bob", 0, 0)

	before := time.Now()
	tok := e.linkToken(alice)
	if tok.DeviceID != 2 || len(tok.Token) != 43 || tok.Expires < before.Add(10*time.Minute).UnixMilli() || tok.Expires > time.Now().Add(10*time.Minute).UnixMilli() {
		t.Fatalf("link token %+v", tok)
	}
	req := e.linkRequest(alice, tok)
	var resp api.RegisterResponse
	e.ok(e.do(nil, "POST", api.PathDevices, req), &resp)
	if resp.AccountID != alice.id || resp.DeviceID != 2 || len(resp.Password) != 43 {
		t.Fatalf("link answer %+v", resp)
	}
	alice2 := &user{name: "alice", id: alice.id, device: 2, regID: req.RegistrationID, password: resp.Password, identity: alice.identity}
	d, err := e.st.Device(context.Background(), alice.id, 2)
	if err != nil || d.RegistrationID != 77 || len(d.CredentialHash) != 32 || string(d.CredentialHash) == resp.Password {
		t.Fatalf("stored device %+v, %v", d, err)
	}

	// The new device works, and both see the new list.
	e.wantDevices(alice2, 2, 1, 2)
	e.wantDevices(alice, 2, 1, 2)
	var status api.KeyStatus
	e.ok(e.do(alice2, "GET", api.PathKeyStatus, nil), &status)
	if status.PreKeys != 2 {
		t.Fatalf("the new device's keys %+v, want the 2 prekeys it uploaded", status)
	}

	// Senders get the list with the bundles, and it covers them.
	var br api.BundleResponse
	e.ok(e.do(bob, "GET", "/v1/keys/alice/*", nil), &br)
	l, err := devicelist.Verify(alice.identity.PublicKey(), br.DeviceList)
	if err != nil {
		t.Fatalf("bundle's device list: %v", err)
	}
	if len(br.Devices) != 2 || !l.Contains(br.Devices[0].DeviceID) || !l.Contains(br.Devices[1].DeviceID) || l.Version != 2 {
		t.Fatalf("bundles %+v with list %+v", br.Devices, l)
	}
	e.ok(e.send(bob, "alice", api.NewUUID(), map[uint32]uint32{1: alice.regID, 2: 77}, "to both"), nil)
	c := e.dial(alice2)
	readType(t, c, api.FrameRefill)
	readType(t, c, api.FrameEnvelope)

	// The token is spent: replaying the same request changes nothing.
	e.fails(e.do(nil, "POST", api.PathDevices, req), 403, api.CodeInvalidLinkToken)
	// So is a retry with a list made for the next version.
	req.DeviceList = signList(t, alice.identity, 3, 1, 2)
	e.fails(e.do(nil, "POST", api.PathDevices, req), 403, api.CodeInvalidLinkToken)
	e.wantDevices(alice, 2, 1, 2)

	// A secondary device may ask for a token too; ids are never reused.
	e.removeOK(alice, 2)
	alice3 := e.addDevice(alice)
	if alice3.device != 3 {
		t.Fatalf("linked device after removing 2 got id %d, want 3", alice3.device)
	}
	alice4 := e.addDevice(alice3)
	e.wantDevices(alice4, 5, 1, 3, 4)
}

func TestLinkDeviceRefusals(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 0, 0)
	other := newIdentity(t)
	tok := e.linkToken(alice)
	bobTok := e.linkToken(bob)
	valid := func() *api.LinkDeviceRequest { return e.linkRequest(alice, tok) }
	tests := []struct {
		name   string
		req    func() *api.LinkDeviceRequest
		status int
		code   string
	}{
		{"no token", func() *api.LinkDeviceRequest { r := valid(); r.LinkToken = ""; return r }, 403, api.CodeInvalidLinkToken},
		{"unknown token", func() *api.LinkDeviceRequest { r := valid(); r.LinkToken = tok.Token[:42] + "x"; return r }, 403, api.CodeInvalidLinkToken},
		{"token for another account", func() *api.LinkDeviceRequest { r := valid(); r.LinkToken = bobTok.Token; return r }, 403, api.CodeInvalidLinkToken},
		{"another account's id", func() *api.LinkDeviceRequest { r := valid(); r.AccountID = bob.id; return r }, 403, api.CodeInvalidLinkToken},
		{"account id not a uuid", func() *api.LinkDeviceRequest { r := valid(); r.AccountID = "alice"; return r }, 400, api.CodeBadRequest},
		{"registration id 0", func() *api.LinkDeviceRequest { r := valid(); r.RegistrationID = 0; return r }, 400, api.CodeBadRequest},
		{"no signed prekey", func() *api.LinkDeviceRequest { r := valid(); r.Keys.SignedPreKey = nil; return r }, 400, api.CodeBadRequest},
		{"no last resort", func() *api.LinkDeviceRequest { r := valid(); r.Keys.LastResortKyberPreKey = nil; return r }, 400, api.CodeBadRequest},
		{"signed prekey by another key", func() *api.LinkDeviceRequest {
			r := valid()
			r.Keys.SignedPreKey = signedPreKey(t, other, 1)
			return r
		}, 400, api.CodeBadSignature},
		{"last resort by another key", func() *api.LinkDeviceRequest {
			r := valid()
			k := kyberPreKey(t, other, 1000)
			r.Keys.LastResortKyberPreKey = &k
			return r
		}, 400, api.CodeBadSignature},
		{"no device list", func() *api.LinkDeviceRequest { r := valid(); r.DeviceList = nil; return r }, 400, api.CodeBadRequest},
		{"list signed by another key", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, other, 2, 1, 2)
			return r
		}, 400, api.CodeBadSignature},
		{"list tampered with", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = bytes.Clone(r.DeviceList)
			r.DeviceList[len(r.DeviceList)-40] ^= 1
			return r
		}, 400, api.CodeBadSignature},
		{"list at the current version", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, alice.identity, 1, 1, 2)
			return r
		}, 409, api.CodeDeviceListConflict},
		{"list skipping a version", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, alice.identity, 3, 1, 2)
			return r
		}, 409, api.CodeDeviceListConflict},
		{"list without the new device", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, alice.identity, 2, 1)
			return r
		}, 400, api.CodeBadRequest},
		{"list with another new device", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, alice.identity, 2, 1, 3)
			return r
		}, 400, api.CodeBadRequest},
		{"list with a device more", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, alice.identity, 2, 1, 2, 3)
			return r
		}, 400, api.CodeBadRequest},
		{"list dropping device 1", func() *api.LinkDeviceRequest {
			r := valid()
			r.DeviceList = signList(t, alice.identity, 2, 2)
			return r
		}, 400, api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			e.fails(e.do(nil, "POST", api.PathDevices, tt.req()), tt.status, tt.code)
			e.wantDevices(alice, 1, 1)
			e.wantDevices(bob, 1, 1)
			if _, err := e.st.LinkToken(context.Background(), hashOf(tok.Token), time.Now()); err != nil {
				t.Fatalf("the refusal spent the token: %v", err)
			}
		})
	}
	e.t = t
	// After all that, the token still works, once.
	e.ok(e.do(nil, "POST", api.PathDevices, valid()), nil)
	e.wantDevices(alice, 2, 1, 2)
}

func hashOf(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// TestLinkDeviceConcurrent: two devices link at once, each with the next
// version of the list: one wins, the other gets device_list_conflict and
// succeeds when it signs the version after.
func TestLinkDeviceConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	toks := []api.LinkTokenResponse{e.linkToken(alice), e.linkToken(alice)}
	reqs := []*api.LinkDeviceRequest{e.linkRequest(alice, toks[0]), e.linkRequest(alice, toks[1])}
	status := make([]int, 2)
	codes := make([]string, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			body := bodyReader(t, reqs[i])
			<-start
			req, _ := http.NewRequest("POST", e.hs.URL+api.PathDevices, body)
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.hs.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			status[i] = resp.StatusCode
			var eb api.ErrorBody
			if decodeErr := decodeJSONAny(resp, &eb); decodeErr == nil && eb.Error != nil {
				codes[i] = eb.Error.Code
			}
		})
	}
	close(start)
	wg.Wait()
	win, lose := 0, 1
	if status[1] == 200 {
		win, lose = 1, 0
	}
	if status[win] != 200 || status[lose] != 409 || codes[lose] != api.CodeDeviceListConflict {
		t.Fatalf("concurrent links answered %v %q; want one 200 and one 409 %s", status, codes, api.CodeDeviceListConflict)
	}
	e.wantDevices(alice, 2, 1, toks[win].DeviceID)
	// The loser signs the next version and retries with its token.
	e.ok(e.do(nil, "POST", api.PathDevices, e.linkRequest(alice, toks[lose])), nil)
	e.wantDevices(alice, 3, 1, 2, 3)
}

func TestLinkTokenLimits(t *testing.T) {
	clk := newClock()
	e := newEnv(t, func(c *Config) { c.Now = clk.Now })
	alice := e.register("alice", 0, 0)
	e.fails(e.do(nil, "POST", api.PathLinkTokens, nil), 401, api.CodeUnauthorized)

	// At most 3 unused tokens at a time.
	for range maxPendingLinkTokens {
		e.linkToken(alice)
	}
	resp := e.do(alice, "POST", api.PathLinkTokens, nil)
	if ra := resp.Header.Get("Retry-After"); ra != "600" {
		t.Errorf("Retry-After %q, want 600", ra)
	}
	e.fails(resp, 429, api.CodeRateLimited)

	// Once they expire, more; until the ids run out (each token spent one).
	next := uint32(maxPendingLinkTokens + 2)
	for next <= api.MaxDevicesPerAccount {
		clk.advance(linkTokenTTL)
		for range maxPendingLinkTokens {
			if next > api.MaxDevicesPerAccount {
				break
			}
			if tok := e.linkToken(alice); tok.DeviceID != next {
				t.Fatalf("token reserved %d, want %d", tok.DeviceID, next)
			}
			next++
		}
	}
	clk.advance(linkTokenTTL)
	e.fails(e.do(alice, "POST", api.PathLinkTokens, nil), 409, api.CodeTooManyDevices)
}

// TestLinkTokenExpiry: a token works until its expiry, not after, and the
// sweep deletes it.
func TestLinkTokenExpiry(t *testing.T) {
	clk := newClock()
	e := newEnv(t, func(c *Config) { c.Now = clk.Now })
	alice := e.register("alice", 0, 0)
	tok := e.linkToken(alice)
	req := e.linkRequest(alice, tok)
	clk.advance(linkTokenTTL)
	e.fails(e.do(nil, "POST", api.PathDevices, req), 403, api.CodeInvalidLinkToken)
	e.wantDevices(alice, 1, 1)

	fresh := e.linkToken(alice)
	clk.advance(linkTokenTTL - time.Millisecond)
	e.srv.sweep(context.Background())
	// The first token is gone from the store, the second is not.
	if _, err := e.st.LinkToken(context.Background(), hashOf(tok.Token), time.UnixMilli(0)); !errors.Is(err, store.ErrInvalidLinkToken) {
		t.Fatalf("expired token after the sweep: %v", err)
	}
	e.ok(e.do(nil, "POST", api.PathDevices, e.linkRequest(alice, fresh)), nil)
	e.wantDevices(alice, 2, 1, fresh.DeviceID)
}

func TestRemoveDeviceRefusals(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	e.addDevice(alice)
	e.addDevice(alice) // devices 1, 2, 3 at version 3
	other := newIdentity(t)
	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"no body", nil, 415, api.CodeUnsupportedMedia},
		{"no list", api.RemoveDeviceRequest{}, 400, api.CodeBadRequest},
		{"unknown field", `{"device_list":"","x":1}`, 400, api.CodeBadRequest},
		{"oversized", `{"device_list":"` + string(bytes.Repeat([]byte("A"), 8<<10)) + `"}`, 413, api.CodeTooLarge},
		{"signed by another key", api.RemoveDeviceRequest{DeviceList: signList(t, other, 4, 1, 3)}, 400, api.CodeBadSignature},
		{"current version", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 3, 1, 3)}, 409, api.CodeDeviceListConflict},
		{"skipped version", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 5, 1, 3)}, 409, api.CodeDeviceListConflict},
		{"still listing it", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1, 2, 3)}, 400, api.CodeBadRequest},
		{"removing another", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1, 2)}, 400, api.CodeBadRequest},
		{"removing two", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1)}, 400, api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			e.fails(e.do(alice, "DELETE", "/v1/devices/2", tt.body), tt.status, tt.code)
			e.wantDevices(alice, 3, 1, 2, 3)
		})
	}
	e.t = t
	e.ok(e.do(alice, "DELETE", "/v1/devices/2", api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1, 3)}), nil)
	e.wantDevices(alice, 4, 1, 3)
}

// TestRemoveDeviceConcurrent: two removals signed from the same version:
// one lands, the other gets device_list_conflict.
func TestRemoveDeviceConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	e.addDevice(alice)
	e.addDevice(alice)
	bodies := map[uint32]any{
		2: api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1, 3)},
		3: api.RemoveDeviceRequest{DeviceList: signList(t, alice.identity, 4, 1, 2)},
	}
	var mu sync.Mutex
	results := map[uint32]int{}
	var wg sync.WaitGroup
	for id, body := range bodies {
		wg.Go(func() {
			req, _ := http.NewRequest("DELETE", fmt.Sprint(e.hs.URL, "/v1/devices/", id), bodyReader(t, body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", alice.auth())
			resp, err := e.hs.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			results[id] = resp.StatusCode
			mu.Unlock()
		})
	}
	wg.Wait()
	switch {
	case results[2] == 204 && results[3] == 409:
		e.wantDevices(alice, 4, 1, 3)
	case results[3] == 204 && results[2] == 409:
		e.wantDevices(alice, 4, 1, 2)
	default:
		t.Fatalf("concurrent removals answered %v; want one 204 and one 409", results)
	}
}
