package server

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/sealedsender"
)

// multiMessage seals a dummy content to the users' devices (reg: the
// registration ids to claim, by device) with sealed sender v2.
func multiMessage(t *testing.T, to []*user, reg map[*user]map[uint32]uint32) []byte {
	t.Helper()
	sender := newIdentity(t)
	server, serverKey := newIdentity(t), newIdentity(t)
	sc, err := sealedsender.NewServerCertificate(1, serverKey.PublicKey(), server, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sealedsender.NewSenderCertificate(sealedsender.Sender{UUID: api.NewUUID(), DeviceID: 1, IdentityKey: sender.PublicKey()},
		time.Now().Add(time.Hour), sc, serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rs []sealedsender.Recipient
	for _, u := range to {
		sid, err := sealedsender.NewACI(u.id)
		if err != nil {
			t.Fatal(err)
		}
		r := sealedsender.Recipient{ServiceID: sid, IdentityKey: u.identity.PublicKey()}
		for d, rid := range reg[u] {
			r.Devices = append(r.Devices, sealedsender.Device{ID: d, RegistrationID: rid})
		}
		rs = append(rs, r)
	}
	b, err := sealedsender.EncryptMulti(nil, rs, sender, &sealedsender.Content{Type: sealedsender.TypeSenderKey, Sender: cert, Contents: []byte("group message")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) multi(body []byte, key []byte, id string, mod func(*http.Request)) *http.Response {
	e.t.Helper()
	q := url.Values{"id": {id}, "timestamp": {strconv.FormatInt(time.Now().UnixMilli(), 10)},
		api.QueryFranking: {base64.RawURLEncoding.EncodeToString(testCommitment())}}
	r, err := http.NewRequest("PUT", e.hs.URL+api.PathMultiRecipient+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	r.Header.Set("Content-Type", api.ContentTypeMultiRecipient)
	if key != nil {
		r.Header.Set(api.HeaderUnidentifiedAccessKey, headerKey(key))
	}
	if mod != nil {
		mod(r)
	}
	resp, err := e.hs.Client().Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func xorKeys(ks ...[]byte) []byte {
	var arr [][api.UnidentifiedAccessKeySize]byte
	for _, k := range ks {
		arr = append(arr, [api.UnidentifiedAccessKeySize]byte(k))
	}
	out := api.CombineAccessKeys(arr...)
	return out[:]
}

func TestMultiRecipientSend(t *testing.T) {
	e := newEnv(t, nil)
	bob, carol := e.register("bob", 0, 0), e.register("carol", 0, 0)
	carol2 := e.addDevice(carol)
	kb, kc := newAccessKey(), newAccessKey()
	e.setAccess(bob, kb, false)
	e.setAccess(carol, kc, false)
	regs := map[*user]map[uint32]uint32{bob: {1: bob.regID}, carol: {1: carol.regID, carol2.device: carol2.regID}}
	body := multiMessage(t, []*user{bob, carol}, regs)
	combined := xorKeys(kb, kc)

	// Refusals change nothing.
	e.fails(e.multi(body, kb, api.NewUUID(), nil), http.StatusUnauthorized, api.CodeUnidentifiedAccessDenied)
	e.fails(e.multi(body, nil, api.NewUUID(), nil), http.StatusUnauthorized, api.CodeUnidentifiedAccessDenied)
	e.fails(e.multi(body, combined, api.NewUUID(), func(r *http.Request) { r.Header.Set("Authorization", bob.auth()) }),
		http.StatusBadRequest, api.CodeBadRequest)
	e.fails(e.multi(body, combined, api.NewUUID(), func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }),
		http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia)
	e.fails(e.multi(body[:40], combined, api.NewUUID(), nil), http.StatusBadRequest, api.CodeBadRequest)
	e.fails(e.multi(body, combined, "not-a-uuid", nil), http.StatusBadRequest, api.CodeBadRequest)
	// A recipient with a device missing: 409 naming carol only.
	short := multiMessage(t, []*user{bob, carol}, map[*user]map[uint32]uint32{bob: regs[bob], carol: {1: carol.regID}})
	ae := e.fails(e.multi(short, combined, api.NewUUID(), nil), http.StatusConflict, api.CodeMismatchedDevices)
	if len(ae.Recipients) != 1 || ae.Recipients[0].AccountID != carol.id || len(ae.Recipients[0].MissingDevices) != 1 ||
		ae.Recipients[0].MissingDevices[0] != carol2.device {
		t.Fatalf("mismatch answer %+v", ae.Recipients)
	}
	// A stale registration id: 410 naming bob.
	stale := multiMessage(t, []*user{bob, carol}, map[*user]map[uint32]uint32{bob: {1: bob.regID + 1}, carol: regs[carol]})
	ae = e.fails(e.multi(stale, combined, api.NewUUID(), nil), http.StatusGone, api.CodeStaleDevices)
	if len(ae.Recipients) != 1 || ae.Recipients[0].AccountID != bob.id || len(ae.Recipients[0].StaleDevices) != 1 {
		t.Fatalf("stale answer %+v", ae.Recipients)
	}
	for _, a := range []struct {
		u *user
		d uint32
	}{{bob, 1}, {carol, 1}, {carol, carol2.device}} {
		if n, _ := e.st.QueueLen(t.Context(), a.u.id, a.d); n != 0 {
			t.Fatalf("%s.%d has %d envelopes after refusals", a.u.name, a.d, n)
		}
	}

	// Delivered: one envelope per device, no source, each recipient's own
	// share of the message.
	id := api.NewUUID()
	var resp api.SendResponse
	e.ok(e.multi(body, combined, id, nil), &resp)
	if resp.Delivered != 3 {
		t.Fatalf("delivered %d", resp.Delivered)
	}
	parsed, err := sealedsender.ParseSent(body)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range []struct {
		u *user
		d uint32
	}{{bob, 1}, {carol, 1}, {carol, carol2.device}} {
		envs, err := e.st.Queue(t.Context(), a.u.id, a.d, 0, 10)
		if err != nil || len(envs) != 1 {
			t.Fatalf("%s.%d: %v, %v", a.u.name, a.d, envs, err)
		}
		want := parsed.ForRecipient(min(i, 1))
		if env := envs[0]; env.Type != api.EnvelopeUnidentifiedSender || env.SourceAccount != "" || env.SourceDevice != 0 || !bytes.Equal(env.Content, want) {
			t.Fatalf("%s.%d got %+v", a.u.name, a.d, env)
		}
	}
	// The same id again is a duplicate.
	e.fails(e.multi(body, combined, id, nil), http.StatusConflict, api.CodeDuplicate)
	if used, err := e.st.SealedSendUsed(t.Context(), "", id); err != nil || !used {
		t.Fatalf("send id not recorded: %v, %v", used, err)
	}
	// And still, after bob's devices changed: a retry of a send that
	// landed must not be told to re-encrypt.
	e.addDevice(bob)
	e.fails(e.multi(body, combined, id, nil), http.StatusConflict, api.CodeDuplicate)
}

// TestMultiRecipientRefusesKeylessAndRepeats: an account without an access key
// (and not open to anyone) cannot be reached by a multi-recipient send, and a
// device listed twice is refused; nothing is queued.
func TestMultiRecipientRefusesKeylessAndRepeats(t *testing.T) {
	e := newEnv(t, nil)
	bob, carol := e.register("bob", 0, 0), e.register("carol", 0, 0)
	regs := map[*user]map[uint32]uint32{bob: {1: bob.regID}, carol: {1: carol.regID}}
	body := multiMessage(t, []*user{bob, carol}, regs)
	zero := make([]byte, api.UnidentifiedAccessKeySize)
	e.fails(e.multi(body, zero, api.NewUUID(), nil), http.StatusUnauthorized, api.CodeUnidentifiedAccessDenied)

	// Open to anyone and keyless: adds nothing, and the send goes.
	e.setAccess(bob, nil, true)
	kc := newAccessKey()
	e.setAccess(carol, kc, false)
	e.ok(e.multi(body, kc, api.NewUUID(), nil), nil)

	// The same device of carol's twice: EncryptMulti refuses to write
	// that, so the device entry of a one-device message is repeated by
	// hand (0x23, count, 17-byte service id, then device id and a 16-bit
	// field whose top bit says another device follows).
	one := multiMessage(t, []*user{carol}, map[*user]map[uint32]uint32{carol: {1: carol.regID}})
	if one[0] != 0x23 || one[1] != 1 || one[19] != 1 {
		t.Fatalf("unexpected layout %x", one[:22])
	}
	b := append(append(bytes.Clone(one[:19]), one[19], one[20]|0x80, one[21]), one[19:]...)
	if _, err := sealedsender.ParseSent(b); err != nil {
		t.Fatalf("the hand-made message does not parse: %v", err)
	}
	before, _ := e.st.QueueLen(t.Context(), carol.id, 1)
	e.fails(e.multi(b, kc, api.NewUUID(), nil), http.StatusBadRequest, api.CodeBadRequest)
	if after, _ := e.st.QueueLen(t.Context(), carol.id, 1); after != before {
		t.Fatalf("queue grew from %d to %d", before, after)
	}
}
