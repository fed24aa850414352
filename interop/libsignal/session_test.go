package libsignal_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// Service ids as names, so that libsignal and we bind the addresses into the first
// messages' MAC.
const (
	goName  = "6f0a1e3c-54b7-4c1e-9d8a-2b9f3c4d5e6f"
	libName = "0c4b7a9e-1d2f-4e3a-8b5c-6d7e8f9a0b1c"
)

// goPeer is our implementation's side of a conversation with one libsignal device.
type goPeer struct {
	id     *session.Identity
	addr   session.Address
	store  *session.MemoryPreKeyStore
	record *session.Record
	nextID uint32 // for prekey ids
}

func newGoPeer(t *testing.T) *goPeer {
	t.Helper()
	kp, err := keys.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := keys.GenerateRegistrationID(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &goPeer{
		id:     &session.Identity{KeyPair: kp, RegistrationID: reg},
		addr:   session.Address{Name: goName, DeviceID: 1},
		store:  session.NewMemoryPreKeyStore(),
		record: &session.Record{},
	}
}

// bundle makes fresh prekeys and returns them as the harness's bundle type.
func (g *goPeer) bundle(t *testing.T, withOneTime bool) libsignal.Bundle {
	t.Helper()
	now := time.Now()
	g.nextID++
	spk, err := keys.GenerateSignedPreKey(g.id.KeyPair.Private, 100+g.nextID, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	kpk, err := keys.GenerateKyberPreKey(g.id.KeyPair.Private, 200+g.nextID, keys.KEMKyber1024, false, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.store.AddSignedPreKey(spk)
	g.store.AddKyberPreKey(kpk)
	b := libsignal.Bundle{
		RegistrationID:        g.id.RegistrationID,
		DeviceID:              g.addr.DeviceID,
		SignedPreKeyID:        spk.ID,
		SignedPreKeyPublic:    spk.KeyPair.Public.Bytes(),
		SignedPreKeySignature: spk.Signature,
		KyberPreKeyID:         kpk.ID,
		KyberPreKeyPublic:     kpk.KeyPair.Public.Bytes(),
		KyberPreKeySignature:  kpk.Signature,
		IdentityKey:           g.id.KeyPair.Public.Bytes(),
	}
	if withOneTime {
		opk, err := keys.GeneratePreKey(300+g.nextID, nil)
		if err != nil {
			t.Fatal(err)
		}
		g.store.AddPreKey(opk)
		b.PreKeyID, b.PreKeyPublic = opk.ID, opk.KeyPair.Public.Bytes()
	}
	return b
}

// toSessionBundle converts a libsignal bundle into ours, as a client would from a
// server's answer.
func toSessionBundle(t *testing.T, b libsignal.Bundle) *session.Bundle {
	t.Helper()
	out := &session.Bundle{
		RegistrationID:        b.RegistrationID,
		DeviceID:              b.DeviceID,
		SignedPreKeyID:        b.SignedPreKeyID,
		SignedPreKeySignature: b.SignedPreKeySignature,
		KyberPreKeyID:         b.KyberPreKeyID,
		KyberPreKeySignature:  b.KyberPreKeySignature,
	}
	var err error
	if out.IdentityKey, err = keys.ParsePublicKey(b.IdentityKey); err != nil {
		t.Fatalf("identity key: %v", err)
	}
	if out.SignedPreKey, err = keys.ParsePublicKey(b.SignedPreKeyPublic); err != nil {
		t.Fatalf("signed prekey: %v", err)
	}
	if out.KyberPreKey, err = keys.ParseKEMPublicKey(b.KyberPreKeyPublic); err != nil {
		t.Fatalf("kyber prekey: %v", err)
	}
	if b.PreKeyPublic != nil {
		out.HasPreKey, out.PreKeyID = true, b.PreKeyID
		if out.PreKey, err = keys.ParsePublicKey(b.PreKeyPublic); err != nil {
			t.Fatalf("one-time prekey: %v", err)
		}
	}
	return out
}

func (g *goPeer) encrypt(t *testing.T, to session.Address, text string) libsignal.Ciphertext {
	t.Helper()
	typ, body, err := g.record.Encrypt([]byte(text), time.Now(), nil)
	if err != nil {
		t.Fatalf("go encrypt: %v", err)
	}
	return libsignal.Ciphertext{Type: int(typ), Body: body}
}

func (g *goPeer) decrypt(from session.Address, c libsignal.Ciphertext) ([]byte, error) {
	switch session.MessageType(c.Type) {
	case session.TypePreKey:
		m, err := session.ParsePreKeySignalMessage(c.Body)
		if err != nil {
			return nil, err
		}
		pt, used, err := g.record.DecryptPreKey(m, g.id, g.addr, from, g.store, nil)
		if err == nil && used != nil && used.HasPreKeyID {
			g.store.RemovePreKey(used.PreKeyID)
		}
		return pt, err
	case session.TypeWhisper:
		m, err := session.ParseSignalMessage(c.Body)
		if err != nil {
			return nil, err
		}
		return g.record.Decrypt(m, nil)
	}
	return nil, fmt.Errorf("unknown message type %d", c.Type)
}

// persist round-trips the Go record through its serialization.
func (g *goPeer) persist(t *testing.T) {
	t.Helper()
	b, err := g.record.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if g.record, err = session.ParseRecord(b); err != nil {
		t.Fatal(err)
	}
}

// libPeer is a libsignal device in a harness process that can be restarted.
type libPeer struct {
	p  *libsignal.Peer
	id libsignal.Identity
}

func newLibPeer(t *testing.T) *libPeer {
	p, id := libsignal.StartTest(t, libName, 2)
	return &libPeer{p: p, id: id}
}

func (l *libPeer) addr() session.Address {
	return session.Address{Name: l.id.Name, DeviceID: l.id.DeviceID}
}

// restart exports every libsignal store, starts a new harness process and imports them.
func (l *libPeer) restart(t *testing.T) {
	t.Helper()
	blob, err := l.p.ExportState()
	if err != nil {
		t.Fatal(err)
	}
	fresh := libsignal.StartBare(t)
	if _, err := fresh.ImportState(blob); err != nil {
		t.Fatal(err)
	}
	l.p.Close()
	l.p = fresh
}

func goAddr(g *goPeer) libsignal.Address {
	return libsignal.Address{Name: g.addr.Name, DeviceID: g.addr.DeviceID}
}

// start makes a session in the given direction and exchanges the first message and a
// reply, checking both decrypt.
func start(t *testing.T, goInitiates, withOneTime bool) (*goPeer, *libPeer) {
	t.Helper()
	g, l := newGoPeer(t), newLibPeer(t)
	if goInitiates {
		b, err := l.p.NewBundle(libsignal.BundleParams{WithOneTimePreKey: withOneTime})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.record.InitiateSession(g.id, g.addr, l.addr(), toSessionBundle(t, b), time.Now(), nil); err != nil {
			t.Fatalf("processing libsignal's bundle: %v", err)
		}
		c := g.encrypt(t, l.addr(), "hello from Go")
		if c.Type != int(session.TypePreKey) {
			t.Fatalf("first message type %d", c.Type)
		}
		pt, err := l.p.Decrypt(goAddr(g), c)
		if err != nil || string(pt) != "hello from Go" {
			t.Fatalf("libsignal decrypting Go's first message: %q, %v", pt, err)
		}
		r, err := l.p.Encrypt(goAddr(g), []byte("hello from libsignal"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := g.decrypt(l.addr(), r); err != nil || string(pt) != "hello from libsignal" {
			t.Fatalf("Go decrypting libsignal's reply: %q, %v", pt, err)
		}
		return g, l
	}
	if err := l.p.ProcessBundle(goAddr(g), g.bundle(t, withOneTime)); err != nil {
		t.Fatalf("libsignal processing Go's bundle: %v", err)
	}
	c, err := l.p.Encrypt(goAddr(g), []byte("hello from libsignal"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != int(session.TypePreKey) {
		t.Fatalf("libsignal's first message type %d", c.Type)
	}
	pt, err := g.decrypt(l.addr(), c)
	if err != nil || string(pt) != "hello from libsignal" {
		t.Fatalf("Go decrypting libsignal's first message: %q, %v", pt, err)
	}
	if withOneTime && g.store.PreKeys() != 0 {
		t.Fatal("one-time prekey not reported as used")
	}
	r := g.encrypt(t, l.addr(), "hello from Go")
	if r.Type != int(session.TypeWhisper) {
		t.Fatalf("Go's reply type %d", r.Type)
	}
	if pt, err := l.p.Decrypt(goAddr(g), r); err != nil || string(pt) != "hello from Go" {
		t.Fatalf("libsignal decrypting Go's reply: %q, %v", pt, err)
	}
	return g, l
}

// bothDirections runs f with Go as the initiator and with libsignal as the initiator.
func bothDirections(t *testing.T, withOneTime bool, f func(t *testing.T, goInitiates bool)) {
	for _, goInitiates := range []bool{true, false} {
		name := "libsignal-initiates"
		if goInitiates {
			name = "go-initiates"
		}
		t.Run(name, func(t *testing.T) { f(t, goInitiates) })
	}
}

func TestInteropSessionSetup(t *testing.T) {
	for _, withOneTime := range []bool{true, false} {
		t.Run(fmt.Sprintf("one-time-prekey=%t", withOneTime), func(t *testing.T) {
			bothDirections(t, withOneTime, func(t *testing.T, goInitiates bool) {
				start(t, goInitiates, withOneTime)
			})
		})
	}
}

// TestInteropConversation runs 1,000 messages, mixed in both directions, with random interleaving,
// reordering within a window, drops, and persistence of both sides along the way.
func TestInteropConversation(t *testing.T) {
	bothDirections(t, true, func(t *testing.T, goInitiates bool) {
		g, l := start(t, goInitiates, true)
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 7))

		type flight struct {
			fromGo bool
			c      libsignal.Ciphertext
			text   string
		}
		var toLib, toGo []flight
		deliver := func(q *[]flight) {
			// Reorder within the oldest few: a message that waits across more than
			// five ratchet steps is lost by design in both implementations.
			j := rng.IntN(min(len(*q), 4))
			m := (*q)[j]
			*q = append((*q)[:j], (*q)[j+1:]...)
			if rng.IntN(25) == 0 {
				return // dropped
			}
			var pt []byte
			var err error
			if m.fromGo {
				pt, err = l.p.Decrypt(goAddr(g), m.c)
			} else {
				pt, err = g.decrypt(l.addr(), m.c)
			}
			if err != nil {
				t.Fatalf("delivering %q (from Go: %t): %v", m.text, m.fromGo, err)
			}
			if string(pt) != m.text {
				t.Fatalf("got %q want %q", pt, m.text)
			}
		}
		sent := 0
		for sent < 1000 || len(toLib)+len(toGo) > 0 {
			switch op := rng.IntN(20); {
			case op < 8 && sent < 1000:
				text := fmt.Sprintf("go message %d %x", sent, rng.Uint64())
				toLib = append(toLib, flight{true, g.encrypt(t, l.addr(), text), text})
				sent++
			case op < 16 && sent < 1000:
				text := fmt.Sprintf("libsignal message %d %x", sent, rng.Uint64())
				c, err := l.p.Encrypt(goAddr(g), []byte(text))
				if err != nil {
					t.Fatal(err)
				}
				toGo = append(toGo, flight{false, c, text})
				sent++
			case op == 16:
				g.persist(t)
			case op == 17 && rng.IntN(8) == 0:
				l.restart(t)
			default:
				if len(toLib) > 0 && (len(toGo) == 0 || rng.IntN(2) == 0) {
					deliver(&toLib)
				} else if len(toGo) > 0 {
					deliver(&toGo)
				}
			}
		}
	})
}

func TestInteropReplayRejected(t *testing.T) {
	bothDirections(t, true, func(t *testing.T, goInitiates bool) {
		g, l := start(t, goInitiates, true)

		c := g.encrypt(t, l.addr(), "once")
		if _, err := l.p.Decrypt(goAddr(g), c); err != nil {
			t.Fatal(err)
		}
		if _, err := l.p.Decrypt(goAddr(g), c); !errors.Is(err, libsignal.ErrDuplicatedMessage) {
			t.Fatalf("libsignal accepted a replay of Go's message: %v", err)
		}

		r, err := l.p.Encrypt(goAddr(g), []byte("once"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.decrypt(l.addr(), r); err != nil {
			t.Fatal(err)
		}
		before, _ := g.record.MarshalBinary()
		_, err = g.decrypt(l.addr(), r)
		var dup *session.DuplicateMessageError
		if !errors.As(err, &dup) {
			t.Fatalf("Go accepted a replay of libsignal's message: %v", err)
		}
		after, _ := g.record.MarshalBinary()
		if !bytes.Equal(before, after) {
			t.Fatal("the replay changed Go's session")
		}
		// Both sessions still work.
		if _, err := l.p.Decrypt(goAddr(g), g.encrypt(t, l.addr(), "still fine")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInteropBadBundleSignature(t *testing.T) {
	t.Run("go-rejects-libsignal-bundle", func(t *testing.T) {
		g, l := newGoPeer(t), newLibPeer(t)
		for _, corrupt := range []func(*libsignal.Bundle){
			func(b *libsignal.Bundle) { b.SignedPreKeySignature[10] ^= 1 },
			func(b *libsignal.Bundle) { b.KyberPreKeySignature[20] ^= 1 },
		} {
			b, err := l.p.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
			if err != nil {
				t.Fatal(err)
			}
			corrupt(&b)
			err = g.record.InitiateSession(g.id, g.addr, l.addr(), toSessionBundle(t, b), time.Now(), nil)
			if !errors.Is(err, session.ErrBadSignature) {
				t.Fatalf("Go accepted a bundle with a bad signature: %v", err)
			}
			if g.record.HasCurrentSession() {
				t.Fatal("session made from a bad bundle")
			}
		}
	})
	t.Run("libsignal-rejects-go-bundle", func(t *testing.T) {
		g, l := newGoPeer(t), newLibPeer(t)
		for _, corrupt := range []func(*libsignal.Bundle){
			func(b *libsignal.Bundle) { b.SignedPreKeySignature[10] ^= 1 },
			func(b *libsignal.Bundle) { b.KyberPreKeySignature[20] ^= 1 },
		} {
			b := g.bundle(t, true)
			corrupt(&b)
			err := l.p.ProcessBundle(goAddr(g), b)
			if !errors.Is(err, libsignal.ErrSignatureValidationFailed) {
				t.Fatalf("libsignal accepted Go's bundle with a bad signature: %v", err)
			}
		}
		// The uncorrupted bundle is accepted: the signatures Go makes verify.
		if err := l.p.ProcessBundle(goAddr(g), g.bundle(t, true)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestInteropPersistReloadContinue stores both sides mid-conversation, reloads them (libsignal
// in a new process) and continues.
func TestInteropPersistReloadContinue(t *testing.T) {
	bothDirections(t, false, func(t *testing.T, goInitiates bool) {
		g, l := start(t, goInitiates, false)
		// Leave messages in flight across the reload, in both directions.
		inFlightToLib := g.encrypt(t, l.addr(), "sent before the reload")
		inFlightToGo, err := l.p.Encrypt(goAddr(g), []byte("sent before the reload"))
		if err != nil {
			t.Fatal(err)
		}
		g.persist(t)
		l.restart(t)
		// Three round trips: fewer ratchet steps than MaxReceiverChains, so that the
		// chains of the messages in flight are still kept.
		for i := 0; i < 3; i++ {
			text := fmt.Sprintf("after reload %d", i)
			if pt, err := l.p.Decrypt(goAddr(g), g.encrypt(t, l.addr(), text)); err != nil || string(pt) != text {
				t.Fatalf("libsignal after reload: %q %v", pt, err)
			}
			c, err := l.p.Encrypt(goAddr(g), []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := g.decrypt(l.addr(), c); err != nil || string(pt) != text {
				t.Fatalf("Go after reload: %q %v", pt, err)
			}
		}
		if pt, err := l.p.Decrypt(goAddr(g), inFlightToLib); err != nil || string(pt) != "sent before the reload" {
			t.Fatalf("libsignal, message from before the reload: %q %v", pt, err)
		}
		if pt, err := g.decrypt(l.addr(), inFlightToGo); err != nil || string(pt) != "sent before the reload" {
			t.Fatalf("Go, message from before the reload: %q %v", pt, err)
		}
	})
}

// TestInteropArchivedSession sends a message under one session, replaces the session
// with a new one, and checks that the old message still decrypts on the other side from
// its archived session.
func TestInteropArchivedSession(t *testing.T) {
	t.Run("go-restarts", func(t *testing.T) {
		g, l := start(t, true, true)
		old := g.encrypt(t, l.addr(), "under the first session")
		b, err := l.p.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true, PreKeyID: 900, SignedPreKeyID: 901, KyberPreKeyID: 902})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.record.InitiateSession(g.id, g.addr, l.addr(), toSessionBundle(t, b), time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if pt, err := l.p.Decrypt(goAddr(g), g.encrypt(t, l.addr(), "under the second session")); err != nil || string(pt) != "under the second session" {
			t.Fatalf("second session: %q %v", pt, err)
		}
		if pt, err := l.p.Decrypt(goAddr(g), old); err != nil || string(pt) != "under the first session" {
			t.Fatalf("libsignal, message of the archived session: %q %v", pt, err)
		}
	})
	t.Run("libsignal-restarts", func(t *testing.T) {
		g, l := start(t, false, true)
		old, err := l.p.Encrypt(goAddr(g), []byte("under the first session"))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.p.ProcessBundle(goAddr(g), g.bundle(t, true)); err != nil {
			t.Fatal(err)
		}
		c, err := l.p.Encrypt(goAddr(g), []byte("under the second session"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := g.decrypt(l.addr(), c); err != nil || string(pt) != "under the second session" {
			t.Fatalf("second session: %q %v", pt, err)
		}
		if pt, err := g.decrypt(l.addr(), old); err != nil || string(pt) != "under the first session" {
			t.Fatalf("Go, message of the archived session: %q %v", pt, err)
		}
		// The archived session came back as current: Go's reply goes out under it and
		// libsignal reads it.
		if pt, err := l.p.Decrypt(goAddr(g), g.encrypt(t, l.addr(), "reply")); err != nil || string(pt) != "reply" {
			t.Fatalf("reply: %q %v", pt, err)
		}
	})
}
