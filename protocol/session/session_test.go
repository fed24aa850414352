package session

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/keys"
)

// party is one device in a test conversation.
type party struct {
	id     *Identity
	addr   Address
	store  *MemoryPreKeyStore
	record *Record
}

func newParty(t testing.TB, name string) *party {
	t.Helper()
	kp, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := keys.GenerateRegistrationID(nil)
	return &party{
		id:     &Identity{KeyPair: kp, RegistrationID: reg},
		addr:   Address{Name: name, DeviceID: 1},
		store:  NewMemoryPreKeyStore(),
		record: &Record{},
	}
}

func (p *party) bundle(t testing.TB, withOneTime bool) *Bundle {
	t.Helper()
	now := time.Unix(1700000000, 0)
	spk, err := keys.GenerateSignedPreKey(p.id.KeyPair.Private, 11, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	kpk, err := keys.GenerateKyberPreKey(p.id.KeyPair.Private, 22, keys.KEMKyber1024, false, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.store.AddSignedPreKey(spk)
	p.store.AddKyberPreKey(kpk)
	b := &Bundle{
		RegistrationID: p.id.RegistrationID, DeviceID: 1,
		SignedPreKeyID: spk.ID, SignedPreKey: spk.KeyPair.Public, SignedPreKeySignature: spk.Signature,
		KyberPreKeyID: kpk.ID, KyberPreKey: kpk.KeyPair.Public, KyberPreKeySignature: kpk.Signature,
		IdentityKey: p.id.KeyPair.Public,
	}
	if withOneTime {
		opk, err := keys.GeneratePreKey(33, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.store.AddPreKey(opk)
		b.HasPreKey, b.PreKeyID, b.PreKey = true, opk.ID, opk.KeyPair.Public
	}
	return b
}

var testNow = time.Unix(1700000000, 0)

func (p *party) send(t testing.TB, to *party, text string) (MessageType, []byte) {
	t.Helper()
	typ, ct, err := p.record.Encrypt([]byte(text), testNow, nil)
	if err != nil {
		t.Fatalf("%s encrypt: %v", p.addr.Name, err)
	}
	return typ, ct
}

func (p *party) receive(from *party, typ MessageType, ct []byte) ([]byte, error) {
	switch typ {
	case TypePreKey:
		m, err := ParsePreKeySignalMessage(ct)
		if err != nil {
			return nil, err
		}
		pt, _, err := p.record.DecryptPreKey(m, p.id, p.addr, from.addr, p.store, nil)
		return pt, err
	default:
		m, err := ParseSignalMessage(ct)
		if err != nil {
			return nil, err
		}
		return p.record.Decrypt(m, nil)
	}
}

func setup(t testing.TB, oneTime bool) (alice, bob *party) {
	alice, bob = newParty(t, "a0000000-0000-4000-8000-000000000001"), newParty(t, "b0000000-0000-4000-8000-000000000002")
	if err := alice.record.InitiateSession(alice.id, alice.addr, bob.addr, bob.bundle(t, oneTime), testNow, nil); err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

func TestBasicExchange(t *testing.T) {
	for _, oneTime := range []bool{true, false} {
		alice, bob := setup(t, oneTime)
		typ, ct := alice.send(t, bob, "hello bob")
		if typ != TypePreKey {
			t.Fatalf("first message type %v", typ)
		}
		pt, err := bob.receive(alice, typ, ct)
		if err != nil || string(pt) != "hello bob" {
			t.Fatalf("bob got %q, %v", pt, err)
		}
		typ, ct = bob.send(t, alice, "hello alice")
		if typ != TypeWhisper {
			t.Fatalf("reply type %v", typ)
		}
		if pt, err := alice.receive(bob, typ, ct); err != nil || string(pt) != "hello alice" {
			t.Fatalf("alice got %q, %v", pt, err)
		}
		if typ, _ := alice.send(t, bob, "acknowledged"); typ != TypeWhisper {
			t.Fatalf("after a reply alice still sends %v", typ)
		}
	}
}

// inFlight is a message on its way.
type inFlight struct {
	from, to *party
	typ      MessageType
	ct       []byte
	text     string
}

// TestRandomConversation exchanges messages in random order with reordering, drops,
// replays and persistence of both records.
func TestRandomConversation(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alice, bob := setup(t, true)
	var queue []inFlight
	var delivered []inFlight
	received := 0
	for i := 0; i < 2000; i++ {
		switch op := rng.IntN(10); {
		case op < 5:
			from, to := alice, bob
			if rng.IntN(2) == 0 && bob.record.HasCurrentSession() {
				from, to = bob, alice
			}
			text := fmt.Sprintf("message %d from %s", i, from.addr.Name[:1])
			typ, ct := from.send(t, to, text)
			queue = append(queue, inFlight{from, to, typ, ct, text})
		case op < 8 && len(queue) > 0:
			// Reorder within a window of the oldest messages: a message that waits
			// for more than MaxReceiverChains ratchet steps is lost by design.
			j := rng.IntN(min(len(queue), 6))
			m := queue[j]
			queue = append(queue[:j], queue[j+1:]...)
			if rng.IntN(20) == 0 {
				continue // dropped
			}
			pt, err := m.to.receive(m.from, m.typ, m.ct)
			if err != nil {
				t.Fatalf("step %d: %s receiving %q: %v", i, m.to.addr.Name[:1], m.text, err)
			}
			if string(pt) != m.text {
				t.Fatalf("got %q want %q", pt, m.text)
			}
			received++
			delivered = append(delivered, m)
		case op == 8 && len(delivered) > 0:
			m := delivered[rng.IntN(len(delivered))]
			before, _ := m.to.record.MarshalBinary()
			// A replay fails: as a duplicate while its chain is kept, as an invalid
			// message once the chain has been dropped (MaxReceiverChains).
			_, err := m.to.receive(m.from, m.typ, m.ct)
			var dup *DuplicateMessageError
			if !errors.As(err, &dup) && !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("replay of %q: %v", m.text, err)
			}
			after, _ := m.to.record.MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Fatal("replay changed the record")
			}
		case op == 9:
			p := alice
			if rng.IntN(2) == 0 {
				p = bob
			}
			b, err := p.record.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if p.record, err = ParseRecord(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if received < 500 {
		t.Fatalf("only %d messages received", received)
	}
}

func TestTamperedMessageChangesNothing(t *testing.T) {
	alice, bob := setup(t, true)
	typ, ct := alice.send(t, bob, "first")
	if _, err := bob.receive(alice, typ, ct); err != nil {
		t.Fatal(err)
	}
	typ, ct = bob.send(t, alice, "reply")
	if _, err := alice.receive(bob, typ, ct); err != nil {
		t.Fatal(err)
	}
	// Every byte of a SignalMessage is covered by its MAC.
	typ, ct = alice.send(t, bob, "second")
	if typ != TypeWhisper {
		t.Fatalf("type %v", typ)
	}
	before, _ := bob.record.MarshalBinary()
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x20
		if _, err := bob.receive(alice, typ, bad); err == nil {
			t.Fatalf("message with byte %d changed decrypted", i)
		}
	}
	after, _ := bob.record.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("tampered messages changed the record")
	}
	if pt, err := bob.receive(alice, typ, ct); err != nil || string(pt) != "second" {
		t.Fatalf("original after tampering: %q %v", pt, err)
	}
}

func TestBadBundleSignature(t *testing.T) {
	alice, bob := newParty(t, "alice"), newParty(t, "bob")
	for _, corrupt := range []func(*Bundle){
		func(b *Bundle) { b.SignedPreKeySignature[5] ^= 1 },
		func(b *Bundle) { b.KyberPreKeySignature[40] ^= 1 },
		func(b *Bundle) { b.SignedPreKey[3] ^= 1 },
	} {
		b := bob.bundle(t, true)
		corrupt(b)
		err := alice.record.InitiateSession(alice.id, alice.addr, bob.addr, b, testNow, nil)
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("bad bundle: %v", err)
		}
		if alice.record.HasCurrentSession() {
			t.Fatal("session made from a bad bundle")
		}
	}
}

func TestArchivedSessionStillDecrypts(t *testing.T) {
	alice, bob := setup(t, true)
	typ, ct := alice.send(t, bob, "one")
	if _, err := bob.receive(alice, typ, ct); err != nil {
		t.Fatal(err)
	}
	typ, ct = bob.send(t, alice, "reply")
	if _, err := alice.receive(bob, typ, ct); err != nil {
		t.Fatal(err)
	}
	late1, late2 := alice.send(t, bob, "late")
	// Alice starts over with a new bundle; bob's old session gets archived.
	if err := alice.record.InitiateSession(alice.id, alice.addr, bob.addr, bob.bundle(t, false), testNow, nil); err != nil {
		t.Fatal(err)
	}
	typ, ct = alice.send(t, bob, "new session")
	if pt, err := bob.receive(alice, typ, ct); err != nil || string(pt) != "new session" {
		t.Fatalf("%q %v", pt, err)
	}
	if pt, err := bob.receive(alice, late1, late2); err != nil || string(pt) != "late" {
		t.Fatalf("message for the archived session: %q %v", pt, err)
	}
}

func TestStaleUnacknowledgedSession(t *testing.T) {
	alice, bob := setup(t, false)
	// Just inside the limit the session still sends, and survives being stored.
	alice.persistAndReload(t)
	typ, ct, err := alice.record.Encrypt([]byte("x"), testNow.Add(MaxUnacknowledgedSessionAge), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := bob.receive(alice, typ, ct); err != nil || string(pt) != "x" {
		t.Fatalf("%q %v", pt, err)
	}
	alice2, _ := setup(t, false)
	_, _, err = alice2.record.Encrypt([]byte("x"), testNow.Add(MaxUnacknowledgedSessionAge+time.Hour), nil)
	if !errors.Is(err, ErrStaleSession) {
		t.Fatalf("stale session: %v", err)
	}
}

func (p *party) persistAndReload(t testing.TB) {
	t.Helper()
	b, err := p.record.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if p.record, err = ParseRecord(b); err != nil {
		t.Fatal(err)
	}
}

func TestTooFarAhead(t *testing.T) {
	alice, bob := setup(t, false)
	typ, ct := alice.send(t, bob, "x")
	if _, err := bob.receive(alice, typ, ct); err != nil {
		t.Fatal(err)
	}
	st := alice.record.current
	st.sender.index += MaxForwardJumps + 2
	typ, ct = alice.send(t, bob, "far")
	_, err := bob.receive(alice, typ, ct)
	var far *TooFarAheadError
	if !errors.As(err, &far) || !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("far-ahead message: %v", err)
	}
}

func TestParseRecordRejectsGarbage(t *testing.T) {
	alice, _ := setup(t, true)
	b, _ := alice.record.MarshalBinary()
	for i := 2; i < len(b); i += 7 {
		if _, err := ParseRecord(b[:i]); err == nil {
			t.Fatalf("truncated record of %d bytes parsed", i)
		}
	}
	if _, err := ParseRecord([]byte{9}); !errors.Is(err, ErrCorruptState) {
		t.Fatalf("unknown format: %v", err)
	}
}

func TestReplayIsDuplicate(t *testing.T) {
	alice, bob := setup(t, true)
	typ, ct := alice.send(t, bob, "first")
	if _, err := bob.receive(alice, typ, ct); err != nil {
		t.Fatal(err)
	}
	typ2, ct2 := alice.send(t, bob, "second")
	if _, err := bob.receive(alice, typ2, ct2); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		typ MessageType
		ct  []byte
	}{{typ, ct}, {typ2, ct2}} {
		before, _ := bob.record.MarshalBinary()
		_, err := bob.receive(alice, m.typ, m.ct)
		var dup *DuplicateMessageError
		if !errors.As(err, &dup) {
			t.Fatalf("replay: %v", err)
		}
		after, _ := bob.record.MarshalBinary()
		if !bytes.Equal(before, after) {
			t.Fatal("replay changed the record")
		}
	}
}

// TestAddressesBound checks that the first messages bind both addresses into their MAC
// (when they are service ids): a recipient that expects another sender device refuses
// the message, and the binding survives storing the record.
func TestAddressesBound(t *testing.T) {
	alice, bob := setup(t, true)
	alice.persistAndReload(t)
	typ, ct := alice.send(t, bob, "bound")
	m, err := ParsePreKeySignalMessage(ct)
	if err != nil || typ != TypePreKey {
		t.Fatal(typ, err)
	}
	if len(m.Message().body.Addresses) != addressesSize {
		t.Fatalf("addresses field of %d bytes", len(m.Message().body.Addresses))
	}
	wrong := alice.addr
	wrong.DeviceID = 2
	if _, _, err := bob.record.DecryptPreKey(m, bob.id, bob.addr, wrong, bob.store, nil); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("message bound to device 1 accepted as from device 2: %v", err)
	}
	if bob.record.HasCurrentSession() {
		t.Fatal("refused message left a session")
	}
	if pt, err := bob.receive(alice, typ, ct); err != nil || string(pt) != "bound" {
		t.Fatalf("%q %v", pt, err)
	}
}
