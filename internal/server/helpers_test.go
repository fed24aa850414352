package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/store/sqlite"
	"github.com/doorless/doorless/protocol/keys"
)

// env is a server over a fresh SQLite store, behind httptest.
type env struct {
	t   *testing.T
	st  *sqlite.Store
	srv *Server
	hs  *httptest.Server
	kt  *TransparencyConfig // nil: none

	stopSequencer func() // ends the sequencer newEnv started
}

// newEnv starts a server configured by mod, then adjusted by srvMods
// before it serves.
func newEnv(t *testing.T, mod func(*Config), srvMods ...func(*Server)) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), mod, srvMods...)
}

// newEnvIn is newEnv with the store's database in dir, as doorlessd keeps
// it in its data directory.
func newEnvIn(t *testing.T, dir string, mod func(*Config), srvMods ...func(*Server)) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(dir, "doorless.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store:        st,
		IPRate:       RateLimit{Rate: -1},
		AccountRate:  RateLimit{Rate: -1},
		Transparency: testTransparency(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range srvMods {
		m(srv)
	}
	// The sequencer alone, not all of Run: the tests that want Run's
	// sweeps start it themselves (and it then shares this sequencer).
	seqCtx, stopSeq := context.WithCancel(context.Background())
	seqDone := srv.startSequencer(seqCtx)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		stopSeq()
		<-seqDone
		hs.Close()
		st.Close()
	})
	return &env{t: t, st: st, srv: srv, hs: hs, kt: cfg.Transparency, stopSequencer: func() { stopSeq(); <-seqDone }}
}

// Kyber key generation is the slow part of making a device's keys, so a few
// KEM keys are made once and shared by every test: the server only checks
// their signatures, which differ per identity.
var (
	kemOnce sync.Once
	kemKeys [][]byte // serialized KEM public keys
)

const kemPool = 8

func kemKey(t testing.TB, i int) []byte {
	kemOnce.Do(func() {
		for range kemPool {
			kp, err := keys.GenerateKEMKeyPair(keys.KEMKyber1024, rand.Reader)
			if err != nil {
				panic(err)
			}
			kemKeys = append(kemKeys, kp.Public.Bytes())
		}
	})
	return kemKeys[i%kemPool]
}

func newIdentity(t testing.TB) *keys.PrivateKey {
	t.Helper()
	k, err := keys.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, id *keys.PrivateKey, msg []byte) []byte {
	t.Helper()
	sig, err := id.Sign(rand.Reader, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func signedPreKey(t testing.TB, id *keys.PrivateKey, n uint32) *api.SignedPreKey {
	kp, err := keys.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := kp.Public.Bytes()
	return &api.SignedPreKey{ID: n, PublicKey: pub, Signature: sign(t, id, pub)}
}

func kyberPreKey(t testing.TB, id *keys.PrivateKey, n uint32) api.KyberPreKey {
	pub := kemKey(t, int(n))
	return api.KyberPreKey{ID: n, PublicKey: pub, Signature: sign(t, id, pub)}
}

func preKeys(t testing.TB, first uint32, n int) []api.PreKey {
	var out []api.PreKey
	for i := range n {
		kp, err := keys.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, api.PreKey{ID: first + uint32(i), PublicKey: kp.Public.Bytes()})
	}
	return out
}

func kyberPreKeys(t testing.TB, id *keys.PrivateKey, first uint32, n int) []api.KyberPreKey {
	var out []api.KyberPreKey
	for i := range n {
		out = append(out, kyberPreKey(t, id, first+uint32(i)))
	}
	return out
}

// registerRequest is a valid registration with pre one-time prekeys and
// kyber one-time kyber prekeys.
func registerRequest(t testing.TB, name string, id *keys.PrivateKey, pre, kyber int) *api.RegisterRequest {
	lr := kyberPreKey(t, id, 1000)
	return &api.RegisterRequest{
		Username:       name,
		IdentityKey:    id.PublicKey().Bytes(),
		RegistrationID: 42,
		Keys: api.KeyUpload{
			SignedPreKey:          signedPreKey(t, id, 1),
			LastResortKyberPreKey: &lr,
			PreKeys:               preKeys(t, 1, pre),
			KyberPreKeys:          kyberPreKeys(t, id, 1, kyber),
		},
		DeviceList: signList(t, id, 1, 1),
	}
}

// signList signs a device list of that version listing devices (made now).
func signList(t testing.TB, id *keys.PrivateKey, version uint64, devices ...uint32) []byte {
	t.Helper()
	b, err := devicelist.Sign(id, &devicelist.List{Version: version, Timestamp: time.Now().UnixMilli(), Devices: devices}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deviceList returns u's account's current device list, verified.
func (e *env) deviceList(u *user) *devicelist.List {
	e.t.Helper()
	var devs api.DevicesResponse
	e.ok(e.do(u, "GET", api.PathDevices, nil), &devs)
	l, err := devicelist.Verify(u.identity.PublicKey(), devs.DeviceList)
	if err != nil {
		e.t.Fatalf("device list: %v", err)
	}
	return l
}

// linkToken asks for a link token as u.
func (e *env) linkToken(u *user) api.LinkTokenResponse {
	e.t.Helper()
	var tok api.LinkTokenResponse
	e.ok(e.do(u, "POST", api.PathLinkTokens, nil), &tok)
	return tok
}

// linkRequest is a valid request to link the device tok reserved to u's
// account, with the account's next device list.
func (e *env) linkRequest(u *user, tok api.LinkTokenResponse) *api.LinkDeviceRequest {
	e.t.Helper()
	next, err := e.deviceList(u).With(tok.DeviceID, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	lr := kyberPreKey(e.t, u.identity, 1000)
	return &api.LinkDeviceRequest{
		AccountID:      u.id,
		LinkToken:      tok.Token,
		RegistrationID: 77,
		Keys: api.KeyUpload{
			SignedPreKey:          signedPreKey(e.t, u.identity, 1),
			LastResortKyberPreKey: &lr,
			PreKeys:               preKeys(e.t, 1, 2),
		},
		DeviceList: signedList(e.t, u.identity, next),
	}
}

func signedList(t testing.TB, id *keys.PrivateKey, l *devicelist.List) []byte {
	t.Helper()
	b, err := devicelist.Sign(id, l, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addDevice links a new device to u's account, as a client would (a link
// token asked for by u, then POST /v1/devices), and returns it as a user.
func (e *env) addDevice(u *user) *user {
	e.t.Helper()
	tok := e.linkToken(u)
	req := e.linkRequest(u, tok)
	var resp api.RegisterResponse
	e.ok(e.do(nil, "POST", api.PathDevices, req), &resp)
	if resp.AccountID != u.id || resp.DeviceID != tok.DeviceID || len(resp.Password) != 43 {
		e.t.Fatalf("link answer %+v, want account %s device %d", resp, u.id, tok.DeviceID)
	}
	return &user{name: u.name, id: u.id, device: resp.DeviceID, regID: req.RegistrationID, password: resp.Password, identity: u.identity}
}

// removeDevice asks, as by, to remove device id, with the account's next
// device list.
func (e *env) removeDevice(by *user, id uint32) *http.Response {
	e.t.Helper()
	next, err := e.deviceList(by).Without(id, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(by, "DELETE", fmt.Sprint("/v1/devices/", id), api.RemoveDeviceRequest{DeviceList: signedList(e.t, by.identity, next)})
}

// removeOK removes device id as by.
func (e *env) removeOK(by *user, id uint32) {
	e.t.Helper()
	resp := e.removeDevice(by, id)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		e.t.Fatalf("remove device %d: %d %s", id, resp.StatusCode, b)
	}
}

// user is a registered device.
type user struct {
	name     string
	id       string
	device   uint32
	regID    uint32
	password string
	identity *keys.PrivateKey
}

func (u *user) auth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(api.Login(u.id, u.device)+":"+u.password))
}

func (e *env) register(name string, pre, kyber int) *user {
	e.t.Helper()
	id := newIdentity(e.t)
	req := registerRequest(e.t, name, id, pre, kyber)
	var resp api.RegisterResponse
	e.ok(e.do(nil, "POST", api.PathAccounts, req), &resp)
	return &user{name: name, id: resp.AccountID, device: resp.DeviceID, regID: req.RegistrationID, password: resp.Password, identity: id}
}

func bodyReader(t testing.TB, body any) io.Reader {
	switch b := body.(type) {
	case nil:
		return nil
	case []byte:
		return bytes.NewReader(b)
	case string:
		return strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.NewReader(j)
	}
}

// do sends a request as u (nil: unauthenticated) with body as JSON (a
// []byte or string is sent as is).
func (e *env) do(u *user, method, path string, body any) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.hs.URL+path, bodyReader(e.t, body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if u != nil {
		req.Header.Set("Authorization", u.auth())
	}
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// ok checks a 2xx answer and decodes its body into v (when not nil).
func (e *env) ok(resp *http.Response, v any) {
	e.t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		e.t.Fatalf("%s %s: %d %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("%s %s: %v in %s", resp.Request.Method, resp.Request.URL.Path, err, b)
		}
	}
}

// fails checks an error answer and returns its body.
func (e *env) fails(resp *http.Response, status int, code string) *api.Error {
	e.t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("error content type %q", ct)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == nil {
		e.t.Fatalf("error body %s: %v", b, err)
	}
	if eb.Error.Code != code {
		e.t.Fatalf("%s %s: code %q, want %q (%s)", resp.Request.Method, resp.Request.URL.Path, eb.Error.Code, code, eb.Error.Message)
	}
	return eb.Error
}

// testCommitment is the franking commitment the tests' sends carry: any 32
// bytes do for the server, which only binds them to the delivery (the
// franking tests make real ones).
func testCommitment() []byte {
	c := sha256.Sum256([]byte("doorless test franking commitment"))
	return c[:]
}

// newSend is a send request with the given id, timestamp and messages,
// franked with testCommitment, as every send must be.
func newSend(id string, ts int64, msgs ...api.OutgoingMessage) api.SendRequest {
	return api.SendRequest{ID: id, Timestamp: ts, Franking: testCommitment(), Messages: msgs}
}

// send sends content to every device in devs (device id → registration id).
func (e *env) send(from *user, to string, id string, devs map[uint32]uint32, content string) *http.Response {
	e.t.Helper()
	req := newSend(id, time.Now().UnixMilli())
	for d, reg := range devs {
		req.Messages = append(req.Messages, api.OutgoingMessage{DeviceID: d, RegistrationID: reg, Type: api.EnvelopeWhisper, Content: []byte(content)})
	}
	return e.do(from, "PUT", "/v1/messages/"+to, req)
}

// sendOK sends content to the single device of to.
func (e *env) sendOK(from, to *user, content string) {
	e.t.Helper()
	var resp api.SendResponse
	e.ok(e.send(from, to.name, api.NewUUID(), map[uint32]uint32{to.device: to.regID}, content), &resp)
	if resp.Delivered != 1 {
		e.t.Fatalf("delivered %d", resp.Delivered)
	}
}

// dial opens u's delivery WebSocket.
func (e *env) dial(u *user) *websocket.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.hs.URL, "http")+api.PathWebSocket, &websocket.DialOptions{
		HTTPClient: e.hs.Client(),
		HTTPHeader: http.Header{"Authorization": {u.auth()}},
	})
	if err != nil {
		e.t.Fatalf("dial: %v (%v)", err, resp)
	}
	c.SetReadLimit(int64(api.MaxFrameSize(DefaultMaxEnvelope)))
	e.t.Cleanup(func() { c.CloseNow() })
	return c
}

// read reads one frame, within a generous timeout.
func read(t testing.TB, c *websocket.Conn) *api.Frame {
	t.Helper()
	f, err := tryRead(c)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tryRead(c *websocket.Conn) (*api.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	return api.ParseFrame(b)
}

// readEnvelope reads frames up to the next envelope, and checks it came
// from the expected source.
func readType(t testing.TB, c *websocket.Conn, typ string) *api.Frame {
	t.Helper()
	f := read(t, c)
	if f.Type != typ {
		t.Fatalf("frame %+v, want type %s", f, typ)
	}
	return f
}

func ack(t testing.TB, c *websocket.Conn, id string) {
	t.Helper()
	b, _ := json.Marshal(api.Frame{Type: api.FrameAck, ID: id})
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// readClose reads frames until the connection ends, and returns why.
func readClose(c *websocket.Conn) error {
	for {
		if _, err := tryRead(c); err != nil {
			return err
		}
	}
}

const websocket1000 = websocket.StatusNormalClosure

func decodeJSON(resp *http.Response, v any) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}

// decodeJSONAny decodes a body whatever the status.
func decodeJSONAny(resp *http.Response, v any) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
