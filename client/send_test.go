package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/session"
)

// interceptor answers chosen requests itself, in front of the real server.
type interceptor struct {
	// onSend, when set, sees every PUT /v1/messages before the server does.
	// It returns true when it has answered the request itself.
	onSend atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler) bool]
	sends  atomic.Int32
}

func (ic *interceptor) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/messages/") {
			ic.sends.Add(1)
			if f := ic.onSend.Load(); f != nil && (*f)(w, r, next) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// once installs f for the next send only.
func (ic *interceptor) once(f func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	var used atomic.Bool
	g := func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if used.Swap(true) {
			return false
		}
		f(w, r, next)
		return true
	}
	ic.onSend.Store(&g)
}

func writeAPIError(w http.ResponseWriter, status int, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&api.ErrorBody{Error: e})
}

// TestSendStaleDevices: a 410 makes the sender replace the session with a
// new one from a fresh bundle, and the message arrives.
func TestSendStaleDevices(t *testing.T) {
	t.Parallel()
	var ic interceptor
	s := newWrappedServer(t, nil, ic.wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "one")
	mustSend(t, bob, "alice", "ack")
	receive(t, alice)

	ic.once(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		writeAPIError(w, http.StatusGone, &api.Error{Code: api.CodeStaleDevices, Message: "stale", StaleDevices: []uint32{1}})
	})
	before := ic.sends.Load()
	res := mustSend(t, alice, "bob", "two")
	if res.Devices != 1 || ic.sends.Load()-before != 2 {
		t.Fatalf("result %+v after %d sends", res, ic.sends.Load()-before)
	}
	wantTexts(t, receive(t, bob), "alice", "one", "two")
}

// TestSendExtraDevices: a session with a device the user no longer has
// (that the user's device list in the log does not name) is dropped, and
// the message goes to the others.
func TestSendExtraDevices(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "one")
	// A session with a device 2 that does not exist.
	err := alice.st.Update(ctxT(t), func(tx *profile.Tx) error {
		rec, err := tx.Session(bob.AccountID(), 1)
		if err != nil {
			return err
		}
		return tx.PutSession(bob.AccountID(), 2, rec, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	res := mustSend(t, alice, "bob", "two")
	if res.Devices != 1 {
		t.Fatalf("result %+v", res)
	}
	wantTexts(t, receive(t, bob), "alice", "one", "two")
	var devices []uint32
	alice.st.View(ctxT(t), func(tx *profile.Tx) error {
		devices, err = tx.SessionDevices(bob.AccountID())
		return err
	})
	if len(devices) != 1 || devices[0] != 1 {
		t.Errorf("sessions with devices %v", devices)
	}
}

// TestSendLostAnswer: the server queued the message but its answer was lost;
// the sender repeats the request, the server says "duplicate", and the
// message is delivered once.
func TestSendLostAnswer(t *testing.T) {
	t.Parallel()
	var ic interceptor
	s := newWrappedServer(t, nil, ic.wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	ic.once(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(discard{}, r)
		// Cut the connection instead of answering.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	})
	res := mustSend(t, alice, "bob", "once")
	if res.Devices != 1 || ic.sends.Load() != 2 {
		t.Fatalf("result %+v after %d sends", res, ic.sends.Load())
	}
	wantTexts(t, receive(t, bob), "alice", "once")
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// TestLastResortReplayRefused: a first message made with the last-resort
// Kyber prekey, sent again after its session is gone, is refused rather than
// starting a second session.
func TestLastResortReplayRefused(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	// Take every one-time key of bob's, so that the next bundle has the
	// last-resort Kyber prekey and no one-time prekey.
	for range targetPreKeys {
		var br api.BundleResponse
		if err := alice.do(ctxT(t), http.MethodGet, bundlePath("bob", 1), nil, &br); err != nil {
			t.Fatal(err)
		}
	}
	msgs, commitment, err := alice.encryptFor(ctxT(t), "bob", textContent("first"), nil, new(SendResult))
	if err != nil {
		t.Fatal(err)
	}
	rawSend := func() {
		t.Helper()
		req := &api.SendRequest{ID: api.NewUUID(), Timestamp: time.Now().UnixMilli(), Franking: commitment, Messages: msgs}
		if _, err := alice.putMessages(ctxT(t), "bob", req, nil); err != nil {
			t.Fatal(err)
		}
	}
	rawSend()
	wantTexts(t, receive(t, bob), "alice", "first")
	// Bob's session with alice is lost; the same first message comes again.
	err = bob.st.Update(ctxT(t), func(tx *profile.Tx) error { return tx.DeleteSession(alice.AccountID(), 1) })
	if err != nil {
		t.Fatal(err)
	}
	rawSend()
	if evs := receive(t, bob); len(evs) != 0 {
		t.Fatalf("replayed first message accepted: %v", evs)
	}
	if d := bob.Stats().Dropped; d != 1 {
		t.Errorf("dropped %d, want 1", d)
	}
	// Dropped for the reason meant: the message used the last-resort Kyber
	// prekey and no one-time prekey, and bob remembers its pair of Kyber
	// prekey id and base key.
	m, err := session.ParsePreKeySignalMessage(msgs[0].Content)
	if err != nil {
		t.Fatal(err)
	}
	if _, has := m.PreKeyID(); has {
		t.Fatal("the first message used a one-time prekey")
	}
	errRollback := errors.New("roll back")
	err = bob.st.Update(ctxT(t), func(tx *profile.Tx) error {
		lastResort, err := tx.IsLastResort(m.KyberPreKeyID())
		if err != nil {
			return err
		}
		if !lastResort {
			t.Errorf("kyber prekey %d is not the last-resort one", m.KyberPreKeyID())
		}
		seen, err := tx.UseLastResort(m.KyberPreKeyID(), m.BaseKey(), time.Now())
		if err != nil {
			return err
		}
		if !seen {
			t.Error("the pair of last-resort kyber prekey and base key is not remembered")
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
}

// TestSendHostileDeviceLists: device lists in 409/410 answers and bundle
// answers are deduplicated, and refused when longer than a user's devices
// may be or naming impossible devices, so that a hostile server cannot make
// Send fetch bundles without limit.
func TestSendHostileDeviceLists(t *testing.T) {
	t.Parallel()
	var (
		ic      interceptor
		bundles atomic.Int32
		dup     atomic.Bool
	)
	wrap := func(next http.Handler) http.Handler {
		next = ic.wrap(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != bundlePath("bob", 1) && r.URL.Path != bundlePath("bob", 0) {
				next.ServeHTTP(w, r)
				return
			}
			bundles.Add(1)
			if !dup.Load() {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var br api.BundleResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &br); err != nil || len(br.Devices) != 1 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			for range 200 {
				br.Devices = append(br.Devices, br.Devices[0])
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(&br)
		})
	}
	s := newWrappedServer(t, nil, wrap)
	alice, _ := s.register(t, "alice", Options{})
	bob, _ := s.register(t, "bob", Options{})
	mustSend(t, alice, "bob", "one")

	mismatched := func(missing ...uint32) {
		ic.once(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			writeAPIError(w, http.StatusConflict, &api.Error{Code: api.CodeMismatchedDevices, Message: "mismatched", MissingDevices: missing})
		})
	}
	many := make([]uint32, 100_000)
	for i := range many {
		many[i] = 1
	}
	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"409 listing a device 100000 times", func() { mismatched(many...) }},
		{"409 naming device 0", func() { mismatched(0) }},
		{"410 naming device 128", func() {
			ic.once(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
				writeAPIError(w, http.StatusGone, &api.Error{Code: api.CodeStaleDevices, Message: "stale", StaleDevices: []uint32{api.MaxDevicesPerAccount + 1}})
			})
		}},
	} {
		tc.setup()
		before := bundles.Load()
		if _, err := alice.Send(ctxT(t), "bob", "refused"); err == nil {
			t.Errorf("%s: Send succeeded", tc.name)
		}
		if n := bundles.Load() - before; n != 0 {
			t.Errorf("%s: %d bundle fetches", tc.name, n)
		}
	}

	// A short list with duplicates: one fetch for the device.
	mismatched(1, 1, 1, 1)
	before := bundles.Load()
	mustSend(t, alice, "bob", "two")
	if n := bundles.Load() - before; n != 1 {
		t.Errorf("a device listed four times: %d bundle fetches", n)
	}
	wantTexts(t, receive(t, bob), "alice", "one", "two")

	// A bundle answer listing the device 201 times.
	dup.Store(true)
	ic.once(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		writeAPIError(w, http.StatusGone, &api.Error{Code: api.CodeStaleDevices, Message: "stale", StaleDevices: []uint32{1}})
	})
	if _, err := alice.Send(ctxT(t), "bob", "refused"); err == nil {
		t.Error("Send with a bundle answer listing a device 201 times succeeded")
	}
}

// TestRefillBounded: a server asking for refills over and over gets one a
// minute, so that it cannot grow the profile without limit.
func TestRefillBounded(t *testing.T) {
	t.Parallel()
	var uploads atomic.Int32
	s := newWrappedServer(t, nil, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.URL.Path == api.PathKeys {
				uploads.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	})
	bob, _ := s.register(t, "bob", Options{})
	before := uploads.Load()
	if err := bob.refill(ctxT(t), &api.KeyStatus{}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := bob.refill(ctxT(t), &api.KeyStatus{}); !errors.Is(err, errRefillTooSoon) {
			t.Fatalf("another refill at once: %v", err)
		}
	}
	if n := uploads.Load() - before; n != 1 {
		t.Fatalf("%d uploads", n)
	}
}
