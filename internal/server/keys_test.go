package server

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/keys"
)

func (e *env) status(u *user) api.KeyStatus {
	e.t.Helper()
	var s api.KeyStatus
	e.ok(e.do(u, "GET", api.PathKeyStatus, nil), &s)
	return s
}

func (e *env) bundle(u *user, path string) api.BundleResponse {
	e.t.Helper()
	var b api.BundleResponse
	e.ok(e.do(u, "GET", path, nil), &b)
	return b
}

func TestKeysUploadFetchExhaust(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", 2, 1)
	if s := e.status(bob); s != (api.KeyStatus{PreKeys: 2, KyberPreKeys: 1}) {
		t.Fatalf("status after registration %+v", s)
	}
	up := api.KeyUpload{PreKeys: preKeys(t, 10, 3), KyberPreKeys: kyberPreKeys(t, bob.identity, 10, 2)}
	resp := e.do(bob, "PUT", api.PathKeys, up)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	if s := e.status(bob); s != (api.KeyStatus{PreKeys: 5, KyberPreKeys: 3}) {
		t.Fatalf("status after upload %+v", s)
	}

	identity, err := keys.ParsePublicKey(e.bundle(alice, "/v1/keys/bob/1").IdentityKey)
	if err != nil {
		t.Fatal(err)
	}
	seenPre := map[uint32]bool{}
	seenKyber := map[uint32]bool{}
	for range 6 {
		b := e.bundle(alice, "/v1/keys/bob/1")
		if b.AccountID != bob.id || len(b.Devices) != 1 {
			t.Fatalf("bundle %+v", b)
		}
		d := b.Devices[0]
		if d.DeviceID != 1 || d.RegistrationID != bob.regID {
			t.Fatalf("device bundle %+v", d)
		}
		if !identity.Verify(d.SignedPreKey.Signature, d.SignedPreKey.PublicKey) || !identity.Verify(d.KyberPreKey.Signature, d.KyberPreKey.PublicKey) {
			t.Fatal("bundle signatures do not verify")
		}
		if d.PreKey != nil {
			if seenPre[d.PreKey.ID] {
				t.Fatalf("prekey %d handed out twice", d.PreKey.ID)
			}
			seenPre[d.PreKey.ID] = true
		}
		if d.KyberPreKey.ID != 1000 {
			if seenKyber[d.KyberPreKey.ID] {
				t.Fatalf("kyber prekey %d handed out twice", d.KyberPreKey.ID)
			}
			seenKyber[d.KyberPreKey.ID] = true
		}
	}
	// The first bundle was fetched too: 6+1 fetches, 5 prekeys, 3 kyber.
	if len(seenPre) != 4 || len(seenKyber) != 2 {
		t.Fatalf("one-time keys handed out: %d prekeys, %d kyber", len(seenPre), len(seenKyber))
	}
	if s := e.status(bob); s != (api.KeyStatus{}) {
		t.Fatalf("status when exhausted %+v", s)
	}
	d := e.bundle(alice, "/v1/keys/bob/*").Devices[0]
	if d.PreKey != nil || d.KyberPreKey.ID != 1000 {
		t.Fatalf("exhausted bundle: prekey %v, kyber %d; want none and the last resort", d.PreKey, d.KyberPreKey.ID)
	}

	// A new signed prekey and last resort replace the old ones.
	spk := signedPreKey(t, bob.identity, 2)
	lr := kyberPreKey(t, bob.identity, 2000)
	e.ok(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{SignedPreKey: spk, LastResortKyberPreKey: &lr}), nil)
	d = e.bundle(alice, "/v1/keys/bob/1").Devices[0]
	if d.SignedPreKey.ID != 2 || d.KyberPreKey.ID != 2000 {
		t.Fatalf("after replacement: signed %d, kyber %d", d.SignedPreKey.ID, d.KyberPreKey.ID)
	}
}

func TestKeysUploadRefusals(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 1, 1)
	other := newIdentity(t)
	lr := kyberPreKey(t, other, 5)
	for _, body := range []api.KeyUpload{
		{SignedPreKey: signedPreKey(t, other, 2), PreKeys: preKeys(t, 50, 2)},
		{LastResortKyberPreKey: &lr},
		{KyberPreKeys: append(kyberPreKeys(t, bob.identity, 50, 2), kyberPreKey(t, other, 60))},
	} {
		e.fails(e.do(bob, "PUT", api.PathKeys, body), 400, api.CodeBadSignature)
	}
	e.fails(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{KyberPreKeys: kyberPreKeys(t, bob.identity, 1, api.MaxPreKeysPerUpload+1)}), 400, api.CodeBadRequest)
	e.fails(e.do(bob, "PUT", api.PathKeys, `{"pre_keys":[],"extra":1}`), 400, api.CodeBadRequest)
	e.fails(e.do(bob, "PUT", api.PathKeys, `{"pre_keys":[{"id":1,"public_key":"BQ=="}]}`), 400, api.CodeBadRequest)
	if s := e.status(bob); s != (api.KeyStatus{PreKeys: 1, KyberPreKeys: 1}) {
		t.Fatalf("refused uploads changed the keys: %+v", s)
	}
	d := e.bundle(bob, "/v1/keys/bob/1").Devices[0]
	if d.SignedPreKey.ID != 1 || d.KyberPreKey.ID != 1 {
		t.Fatalf("refused uploads changed the keys: %+v", d)
	}
}

// TestKeysStoredCap: a device holds at most api.MaxStoredPreKeys one-time
// keys of each kind; an upload that would take it over is refused whole.
func TestKeysStoredCap(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register("bob", 0, 0)
	n := api.MaxPreKeysPerUpload
	for i := range api.MaxStoredPreKeys / n {
		first := uint32(1 + i*n)
		e.ok(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{PreKeys: preKeys(t, first, n), KyberPreKeys: kyberPreKeys(t, bob.identity, first, n)}), nil)
	}
	full := api.KeyStatus{PreKeys: api.MaxStoredPreKeys, KyberPreKeys: api.MaxStoredPreKeys}
	if s := e.status(bob); s != full {
		t.Fatalf("status after filling %+v, want %+v", s, full)
	}
	next := uint32(api.MaxStoredPreKeys + 1)
	e.fails(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{PreKeys: preKeys(t, next, 1)}), 400, api.CodeBadRequest)
	e.fails(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{KyberPreKeys: kyberPreKeys(t, bob.identity, next, 1)}), 400, api.CodeBadRequest)
	if s := e.status(bob); s != full {
		t.Fatalf("status after refused uploads %+v, want %+v", s, full)
	}
	// Keys that replace no one-time key are still accepted.
	e.ok(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{SignedPreKey: signedPreKey(t, bob.identity, 2)}), nil)
	// Once a bundle took one of each, there is room for one more.
	e.bundle(e.register("alice", 0, 0), "/v1/keys/bob/1")
	e.ok(e.do(bob, "PUT", api.PathKeys, api.KeyUpload{PreKeys: preKeys(t, next, 1), KyberPreKeys: kyberPreKeys(t, bob.identity, next, 1)}), nil)
	if s := e.status(bob); s != full {
		t.Fatalf("status after refill %+v, want %+v", s, full)
	}
}

func TestBundleConcurrentFetches(t *testing.T) {
	e := newEnv(t, nil)
	const keys = 30
	e.register("bob", keys, keys)
	var fetchers []*user
	for i := range 4 {
		fetchers = append(fetchers, e.register(fmt.Sprintf("fetcher%d", i), 0, 0))
	}
	const fetches = 40
	var (
		mu     sync.Mutex
		pre    = map[uint32]int{}
		kyber  = map[uint32]int{}
		wg     sync.WaitGroup
		failed = make(chan error, fetches)
	)
	for i := range fetches {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", e.hs.URL+"/v1/keys/bob/1", nil)
			req.Header.Set("Authorization", fetchers[i%len(fetchers)].auth())
			resp, err := e.hs.Client().Do(req)
			if err != nil {
				failed <- err
				return
			}
			defer resp.Body.Close()
			var b api.BundleResponse
			if err := decodeJSON(resp, &b); err != nil {
				failed <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if p := b.Devices[0].PreKey; p != nil {
				pre[p.ID]++
			}
			kyber[b.Devices[0].KyberPreKey.ID]++
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Fatal(err)
	}
	if len(pre) != keys {
		t.Errorf("%d distinct prekeys handed out, want %d", len(pre), keys)
	}
	for id, n := range pre {
		if n != 1 {
			t.Errorf("prekey %d handed out %d times", id, n)
		}
	}
	for id, n := range kyber {
		if id != 1000 && n != 1 {
			t.Errorf("kyber prekey %d handed out %d times", id, n)
		}
	}
	if kyber[1000] != fetches-keys {
		t.Errorf("last resort handed out %d times, want %d", kyber[1000], fetches-keys)
	}
}

func TestBundleDevices(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 1, 1)
	alice2 := e.addDevice(alice)
	bob := e.register("bob", 1, 1)

	b := e.bundle(bob, "/v1/keys/alice/*")
	if len(b.Devices) != 2 || b.Devices[0].DeviceID != 1 || b.Devices[1].DeviceID != 2 || b.Devices[1].RegistrationID != 77 {
		t.Fatalf("all devices %+v", b.Devices)
	}
	// "*" on one's own account leaves out the caller.
	b = e.bundle(alice2, "/v1/keys/alice/*")
	if len(b.Devices) != 1 || b.Devices[0].DeviceID != 1 {
		t.Fatalf("own account's other devices %+v", b.Devices)
	}
	b = e.bundle(alice, "/v1/keys/alice/2")
	if len(b.Devices) != 1 || b.Devices[0].DeviceID != 2 {
		t.Fatalf("one device %+v", b.Devices)
	}
	e.fails(e.do(bob, "GET", "/v1/keys/alice/3", nil), 404, api.CodeNotFound)
	e.fails(e.do(bob, "GET", "/v1/keys/alice/x", nil), 400, api.CodeBadRequest)
	e.fails(e.do(bob, "GET", "/v1/keys/alice/01", nil), 400, api.CodeBadRequest)
	e.fails(e.do(bob, "GET", "/v1/keys/carol/1", nil), 404, api.CodeNotFound)
	e.fails(e.do(nil, "GET", "/v1/keys/alice/1", nil), 401, api.CodeUnauthorized)
}

func TestRefill(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register("alice", 0, 0)
	bob := e.register("bob", api.RefillThreshold+1, api.RefillThreshold+5)

	// Short of keys at connect: refill first.
	c := e.dial(alice)
	f := readType(t, c, api.FrameRefill)
	if *f.Keys != (api.KeyStatus{}) {
		t.Fatalf("refill %+v", f.Keys)
	}
	readType(t, c, api.FrameQueueEmpty)

	c = e.dial(bob)
	readType(t, c, api.FrameQueueEmpty)
	e.bundle(alice, "/v1/keys/bob/1") // 10 and 14 left: enough
	e.bundle(alice, "/v1/keys/bob/1") // 9 left: refill
	f = readType(t, c, api.FrameRefill)
	if *f.Keys != (api.KeyStatus{PreKeys: api.RefillThreshold - 1, KyberPreKeys: api.RefillThreshold + 3}) {
		t.Fatalf("refill %+v", f.Keys)
	}
	// And it comes again on the next connect.
	c.Close(websocket1000, "")
	c = e.dial(bob)
	readType(t, c, api.FrameRefill)
	readType(t, c, api.FrameQueueEmpty)
	e.sendOK(alice, bob, "after refill")
	readType(t, c, api.FrameEnvelope) // the refill frame was not sent twice
}
