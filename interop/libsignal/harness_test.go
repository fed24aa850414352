package libsignal_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/interop/libsignal"
)

// These tests prove the harness with libsignal on both ends, before any Go protocol code
// is involved: whatever fails here is the harness's fault.

// harnessPair starts Alice (alice.1) and Bob (bob.1) and returns them with their identities.
func harnessPair(t *testing.T) (alice *libsignal.Peer, aliceID libsignal.Identity, bob *libsignal.Peer, bobID libsignal.Identity) {
	t.Helper()
	alice, aliceID = libsignal.StartTest(t, "alice", 1)
	bob, bobID = libsignal.StartTest(t, "bob", 1)
	return alice, aliceID, bob, bobID
}

func libEncrypt(t *testing.T, from *libsignal.Peer, to libsignal.Address, msg string, wantType int) libsignal.Ciphertext {
	t.Helper()
	c, err := from.Encrypt(to, []byte(msg))
	if err != nil {
		t.Fatalf("encrypt %q: %v", msg, err)
	}
	if c.Type != wantType {
		t.Fatalf("encrypt %q: type %d, want %d", msg, c.Type, wantType)
	}
	return c
}

func libDecrypt(t *testing.T, at *libsignal.Peer, from libsignal.Address, c libsignal.Ciphertext, want string) {
	t.Helper()
	got, err := at.Decrypt(from, c)
	if err != nil {
		t.Fatalf("decrypt (want %q): %v", want, err)
	}
	if string(got) != want {
		t.Fatalf("decrypt: got %q, want %q", got, want)
	}
}

// harnessEstablish has Alice start a session from Bob's bundle and both exchange one message.
func harnessEstablish(t *testing.T, alice *libsignal.Peer, aliceID libsignal.Identity, bob *libsignal.Peer, bobID libsignal.Identity, oneTime bool) {
	t.Helper()
	bundle, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: oneTime})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.ProcessBundle(bobID.Address(), bundle); err != nil {
		t.Fatal(err)
	}
	c := libEncrypt(t, alice, bobID.Address(), "hello bob", libsignal.TypePreKey)
	libDecrypt(t, bob, aliceID.Address(), c, "hello bob")
	r := libEncrypt(t, bob, aliceID.Address(), "hello alice", libsignal.TypeSignal)
	libDecrypt(t, alice, bobID.Address(), r, "hello alice")
}

func TestHarnessPing(t *testing.T) {
	p := libsignal.StartBare(t)
	v, err := p.Ping()
	if err != nil {
		t.Fatal(err)
	}
	if v != libsignal.PinnedVersion {
		t.Fatalf("harness loaded libsignal %s, want %s", v, libsignal.PinnedVersion)
	}
}

func TestHarnessBundleShape(t *testing.T) {
	bob, bobID := libsignal.StartTest(t, "bob", 7)
	b, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true, PreKeyID: 42, SignedPreKeyID: 9, KyberPreKeyID: 11})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  []byte
		size int
		typ  byte
	}{
		{"identity key", b.IdentityKey, 33, 0x05},
		{"prekey", b.PreKeyPublic, 33, 0x05},
		{"signed prekey", b.SignedPreKeyPublic, 33, 0x05},
		{"kyber prekey", b.KyberPreKeyPublic, 1569, 0x08},
	}
	for _, c := range checks {
		if len(c.got) != c.size || c.got[0] != c.typ {
			t.Errorf("%s: %d bytes, type %#x; want %d bytes, type %#x", c.name, len(c.got), c.got[0], c.size, c.typ)
		}
	}
	if len(b.SignedPreKeySignature) != 64 || len(b.KyberPreKeySignature) != 64 {
		t.Errorf("signatures: %d and %d bytes, want 64", len(b.SignedPreKeySignature), len(b.KyberPreKeySignature))
	}
	if b.PreKeyID != 42 || b.SignedPreKeyID != 9 || b.KyberPreKeyID != 11 || b.DeviceID != 7 {
		t.Errorf("ids: prekey %d signed %d kyber %d device %d", b.PreKeyID, b.SignedPreKeyID, b.KyberPreKeyID, b.DeviceID)
	}
	if b.RegistrationID != bobID.RegistrationID || !bytes.Equal(b.IdentityKey, bobID.IdentityKey) {
		t.Error("bundle does not carry the peer's registration id and identity key")
	}
	for name, sig := range map[string][2][]byte{
		"signed prekey": {b.SignedPreKeyPublic, b.SignedPreKeySignature},
		"kyber prekey":  {b.KyberPreKeyPublic, b.KyberPreKeySignature},
	} {
		ok, err := bob.Verify(b.IdentityKey, sig[0], sig[1])
		if err != nil || !ok {
			t.Errorf("%s signature does not verify: %v %v", name, ok, err)
		}
	}
	noOneTime, err := bob.NewBundle(libsignal.BundleParams{})
	if err != nil {
		t.Fatal(err)
	}
	if noOneTime.PreKeyPublic != nil {
		t.Error("bundle without a one-time prekey has one")
	}
}

func TestHarnessConversation(t *testing.T) {
	for _, oneTime := range []bool{true, false} {
		t.Run(fmt.Sprintf("oneTimePreKey=%v", oneTime), func(t *testing.T) {
			alice, aliceID, bob, bobID := harnessPair(t)
			bundle, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: oneTime})
			if err != nil {
				t.Fatal(err)
			}
			if err := alice.ProcessBundle(bobID.Address(), bundle); err != nil {
				t.Fatal(err)
			}
			info, err := alice.SessionInfo(bobID.Address())
			if err != nil {
				t.Fatal(err)
			}
			if !info.Exists || !info.HasCurrentState || !info.PendingPreKey || info.SessionVersion != 4 ||
				info.RemoteRegistrationID != bobID.RegistrationID || info.LocalRegistrationID != aliceID.RegistrationID {
				t.Fatalf("alice's session after processBundle: %+v", info)
			}

			// Until Bob answers, every message from Alice is a PreKeySignalMessage.
			m1 := libEncrypt(t, alice, bobID.Address(), "one", libsignal.TypePreKey)
			m2 := libEncrypt(t, alice, bobID.Address(), "two", libsignal.TypePreKey)
			pm, err := bob.ParseMessage(m1)
			if err != nil {
				t.Fatal(err)
			}
			if pm.Version != 4 || pm.RegistrationID != aliceID.RegistrationID || pm.SignedPreKeyID != bundle.SignedPreKeyID ||
				(pm.PreKeyID != nil) != oneTime || (oneTime && *pm.PreKeyID != bundle.PreKeyID) {
				t.Fatalf("parsed PreKeySignalMessage: %+v", pm)
			}
			// Out of order.
			libDecrypt(t, bob, aliceID.Address(), m2, "two")
			libDecrypt(t, bob, aliceID.Address(), m1, "one")

			r1 := libEncrypt(t, bob, aliceID.Address(), "three", libsignal.TypeSignal)
			libDecrypt(t, alice, bobID.Address(), r1, "three")
			info, err = alice.SessionInfo(bobID.Address())
			if err != nil {
				t.Fatal(err)
			}
			if info.PendingPreKey {
				t.Fatal("alice's session still has a pending prekey after bob's reply")
			}
			// Several ratchet turns, with an empty and a large message.
			for i := range 5 {
				a := libEncrypt(t, alice, bobID.Address(), fmt.Sprint("ping ", i), libsignal.TypeSignal)
				libDecrypt(t, bob, aliceID.Address(), a, fmt.Sprint("ping ", i))
				b := libEncrypt(t, bob, aliceID.Address(), fmt.Sprint("pong ", i), libsignal.TypeSignal)
				libDecrypt(t, alice, bobID.Address(), b, fmt.Sprint("pong ", i))
			}
			empty := libEncrypt(t, alice, bobID.Address(), "", libsignal.TypeSignal)
			libDecrypt(t, bob, aliceID.Address(), empty, "")
			big := string(bytes.Repeat([]byte("x"), 100_000))
			libDecrypt(t, bob, aliceID.Address(), libEncrypt(t, alice, bobID.Address(), big, libsignal.TypeSignal), big)

			sm, err := bob.ParseMessage(empty)
			if err != nil {
				t.Fatal(err)
			}
			if sm.Version != 4 || len(sm.Body) == 0 {
				t.Fatalf("parsed SignalMessage: %+v", sm)
			}
		})
	}
}

func TestHarnessReplayAndTampering(t *testing.T) {
	alice, aliceID, bob, bobID := harnessPair(t)
	bundle, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.ProcessBundle(bobID.Address(), bundle); err != nil {
		t.Fatal(err)
	}
	first := libEncrypt(t, alice, bobID.Address(), "first", libsignal.TypePreKey)
	libDecrypt(t, bob, aliceID.Address(), first, "first")

	// A replayed PreKeySignalMessage finds its session and is a duplicate.
	_, err = bob.Decrypt(aliceID.Address(), first)
	if !errors.Is(err, libsignal.ErrDuplicatedMessage) {
		t.Fatalf("replayed PreKeySignalMessage: %v, want a duplicated message", err)
	}
	var re *libsignal.RemoteError
	if !errors.As(err, &re) || re.Code != 1 || re.CodeName != "DuplicatedMessage" || re.Operation == "" {
		t.Fatalf("replay error details: %#v", re)
	}

	reply := libEncrypt(t, bob, aliceID.Address(), "reply", libsignal.TypeSignal)
	libDecrypt(t, alice, bobID.Address(), reply, "reply")
	if _, err := alice.Decrypt(bobID.Address(), reply); libsignal.KindOf(err) != libsignal.KindDuplicatedMessage {
		t.Fatalf("replayed SignalMessage: %v, want a duplicated message", err)
	}

	// A flipped bit in the MAC (the last 8 bytes) is an invalid message, not a replay.
	m := libEncrypt(t, alice, bobID.Address(), "tampered", libsignal.TypeSignal)
	bad := libsignal.Ciphertext{Type: m.Type, Body: bytes.Clone(m.Body)}
	bad.Body[len(bad.Body)-1] ^= 1
	if _, err := bob.Decrypt(aliceID.Address(), bad); !errors.Is(err, libsignal.ErrInvalidMessage) {
		t.Fatalf("tampered MAC: %v, want an invalid message", err)
	}
	// ... and the failure changed nothing: the genuine message still decrypts.
	libDecrypt(t, bob, aliceID.Address(), m, "tampered")

	// Garbage is refused without crashing the harness.
	if _, err := bob.Decrypt(aliceID.Address(), libsignal.Ciphertext{Type: libsignal.TypeSignal, Body: []byte{0x44, 1, 2}}); err == nil {
		t.Fatal("garbage decrypted")
	}
	if _, err := bob.Ping(); err != nil {
		t.Fatalf("harness unusable after bad input: %v", err)
	}
}

func TestHarnessPersistAcrossProcesses(t *testing.T) {
	alice, aliceID, bob, bobID := harnessPair(t)
	harnessEstablish(t, alice, aliceID, bob, bobID, true)

	// Alice sends two messages; Bob reads one, then his process is replaced.
	m1 := libEncrypt(t, alice, bobID.Address(), "before restart", libsignal.TypeSignal)
	m2 := libEncrypt(t, alice, bobID.Address(), "across restart", libsignal.TypeSignal)
	libDecrypt(t, bob, aliceID.Address(), m1, "before restart")

	blob, err := bob.ExportState()
	if err != nil {
		t.Fatal(err)
	}
	before, err := bob.SessionInfo(aliceID.Address())
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Ping(); !errors.Is(err, libsignal.ErrClosed) {
		t.Fatalf("call on a closed peer: %v, want ErrClosed", err)
	}

	bob2 := libsignal.StartBare(t)
	id2, err := bob2.ImportState(blob)
	if err != nil {
		t.Fatal(err)
	}
	if id2.Address() != bobID.Address() || !bytes.Equal(id2.IdentityKey, bobID.IdentityKey) || id2.RegistrationID != bobID.RegistrationID {
		t.Fatalf("imported identity %+v, want %+v", id2, bobID)
	}
	after, err := bob2.SessionInfo(aliceID.Address())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Record, after.Record) {
		t.Fatal("session record changed across export/import")
	}

	libDecrypt(t, bob2, aliceID.Address(), m2, "across restart")
	if _, err := bob2.Decrypt(aliceID.Address(), m1); !errors.Is(err, libsignal.ErrDuplicatedMessage) {
		t.Fatalf("message read before the restart, again after it: %v, want a duplicated message", err)
	}
	r := libEncrypt(t, bob2, aliceID.Address(), "continued", libsignal.TypeSignal)
	libDecrypt(t, alice, bobID.Address(), r, "continued")

	// Unused prekeys survive too: a new sender can still use Bob's earlier bundle's
	// signed prekey from the restored stores.
	carol, carolID := libsignal.StartTest(t, "carol", 2)
	bundle, err := bob2.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
	if err != nil {
		t.Fatal(err)
	}
	blob2, err := bob2.ExportState()
	if err != nil {
		t.Fatal(err)
	}
	bob3 := libsignal.StartBare(t)
	if _, err := bob3.ImportState(blob2); err != nil {
		t.Fatal(err)
	}
	if err := carol.ProcessBundle(bobID.Address(), bundle); err != nil {
		t.Fatal(err)
	}
	libDecrypt(t, bob3, carolID.Address(), libEncrypt(t, carol, bobID.Address(), "hi", libsignal.TypePreKey), "hi")

	if _, err := bob3.ImportState([]byte("not json")); !errors.Is(err, libsignal.ErrBadRequest) {
		t.Fatalf("importing garbage: %v, want a bad request", err)
	}
}

func TestHarnessBundleRejected(t *testing.T) {
	alice, _, bob, bobID := harnessPair(t)
	good, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
	if err != nil {
		t.Fatal(err)
	}
	corrupt := func(f func(b *libsignal.Bundle)) libsignal.Bundle {
		b := good
		b.SignedPreKeySignature = bytes.Clone(good.SignedPreKeySignature)
		b.KyberPreKeySignature = bytes.Clone(good.KyberPreKeySignature)
		b.KyberPreKeyPublic = bytes.Clone(good.KyberPreKeyPublic)
		f(&b)
		return b
	}
	for name, b := range map[string]libsignal.Bundle{
		"signed prekey signature": corrupt(func(b *libsignal.Bundle) { b.SignedPreKeySignature[5] ^= 0x10 }),
		"kyber prekey signature":  corrupt(func(b *libsignal.Bundle) { b.KyberPreKeySignature[60] ^= 0x01 }),
		"kyber prekey":            corrupt(func(b *libsignal.Bundle) { b.KyberPreKeyPublic[100] ^= 0x01 }),
	} {
		err := alice.ProcessBundle(bobID.Address(), b)
		if !errors.Is(err, libsignal.ErrSignatureValidationFailed) {
			t.Errorf("%s corrupted: %v, want signature validation failure", name, err)
		}
	}
	if info, err := alice.SessionInfo(bobID.Address()); err != nil || info.Exists {
		t.Fatalf("a rejected bundle left a session: %+v %v", info, err)
	}

	// A wrong KEM key type is refused while building the bundle.
	wrongType := corrupt(func(b *libsignal.Bundle) { b.KyberPreKeyPublic[0] = 0x07 })
	if err := alice.ProcessBundle(bobID.Address(), wrongType); libsignal.KindOf(err) != "BadKEMKeyType" {
		t.Errorf("kyber key with type 0x07: %v, want BadKEMKeyType", err)
	}

	// A bundle carrying another identity than the one Alice trusts for Bob.
	mallory, _ := libsignal.StartTest(t, "bob", 1)
	forged, err := mallory.NewBundle(libsignal.BundleParams{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SaveIdentity(bobID.Address(), good.IdentityKey); err != nil {
		t.Fatal(err)
	}
	if err := alice.ProcessBundle(bobID.Address(), forged); !errors.Is(err, libsignal.ErrUntrustedIdentity) {
		t.Errorf("bundle with an untrusted identity: %v, want untrusted identity", err)
	}
	if err := alice.ProcessBundle(bobID.Address(), good); err != nil {
		t.Errorf("good bundle after the forged one: %v", err)
	}
}

func TestHarnessUntrustedIdentityOnDecrypt(t *testing.T) {
	alice, aliceID, bob, bobID := harnessPair(t)
	other, _ := libsignal.StartTest(t, "other", 1)
	otherID, err := other.NewBundle(libsignal.BundleParams{})
	if err != nil {
		t.Fatal(err)
	}
	// Bob already holds a different key for Alice.
	if _, err := bob.SaveIdentity(aliceID.Address(), otherID.IdentityKey); err != nil {
		t.Fatal(err)
	}
	bundle, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.ProcessBundle(bobID.Address(), bundle); err != nil {
		t.Fatal(err)
	}
	c := libEncrypt(t, alice, bobID.Address(), "hi", libsignal.TypePreKey)
	_, err = bob.Decrypt(aliceID.Address(), c)
	var re *libsignal.RemoteError
	if !errors.As(err, &re) || re.Kind != libsignal.KindUntrustedIdentity || re.Code != 3 {
		t.Fatalf("decrypt from an untrusted identity: %v", err)
	}
	replaced, err := bob.SaveIdentity(aliceID.Address(), aliceID.IdentityKey)
	if err != nil || !replaced {
		t.Fatalf("replacing the identity: %v %v", replaced, err)
	}
	libDecrypt(t, bob, aliceID.Address(), c, "hi")
}

func TestHarnessKyberPreKeyUse(t *testing.T) {
	t.Run("one-time", func(t *testing.T) {
		alice, aliceID, bob, bobID := harnessPair(t)
		carol, carolID := libsignal.StartTest(t, "carol", 1)
		bundle, err := bob.NewBundle(libsignal.BundleParams{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*libsignal.Peer{alice, carol} {
			if err := p.ProcessBundle(bobID.Address(), bundle); err != nil {
				t.Fatal(err)
			}
		}
		libDecrypt(t, bob, aliceID.Address(), libEncrypt(t, alice, bobID.Address(), "a", libsignal.TypePreKey), "a")
		// The one-time Kyber prekey is gone once used.
		_, err = bob.Decrypt(carolID.Address(), libEncrypt(t, carol, bobID.Address(), "c", libsignal.TypePreKey))
		if libsignal.KindOf(err) != libsignal.KindApplicationCallbackError {
			t.Fatalf("a one-time Kyber prekey used twice: %v, want the store to refuse it", err)
		}
		t.Logf("second use refused: %v", err)
	})
	t.Run("last-resort", func(t *testing.T) {
		alice, aliceID, bob, bobID := harnessPair(t)
		carol, carolID := libsignal.StartTest(t, "carol", 1)
		bundle, err := bob.NewBundle(libsignal.BundleParams{KyberLastResort: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*libsignal.Peer{alice, carol} {
			if err := p.ProcessBundle(bobID.Address(), bundle); err != nil {
				t.Fatal(err)
			}
		}
		first := libEncrypt(t, alice, bobID.Address(), "a", libsignal.TypePreKey)
		libDecrypt(t, bob, aliceID.Address(), first, "a")
		libDecrypt(t, bob, carolID.Address(), libEncrypt(t, carol, bobID.Address(), "c", libsignal.TypePreKey), "c")

		// Alice's first message again, after Bob lost the session: the same base key
		// with the last-resort key is refused by the store.
		if err := bob.DeleteSession(aliceID.Address()); err != nil {
			t.Fatal(err)
		}
		_, err = bob.Decrypt(aliceID.Address(), first)
		if libsignal.KindOf(err) != libsignal.KindApplicationCallbackError {
			t.Fatalf("a last-resort Kyber prekey reused with the same base key: %v, want the store to refuse it", err)
		}
		t.Logf("reuse refused: %v", err)
	})
}

func TestHarnessArchiveSession(t *testing.T) {
	alice, aliceID, bob, bobID := harnessPair(t)
	harnessEstablish(t, alice, aliceID, bob, bobID, false)
	if err := alice.ArchiveSession(bobID.Address()); err != nil {
		t.Fatal(err)
	}
	info, err := alice.SessionInfo(bobID.Address())
	if err != nil {
		t.Fatal(err)
	}
	if !info.Exists || info.HasCurrentState || info.PreviousSessions != 1 {
		t.Fatalf("after archiving: %+v", info)
	}
	if _, err := alice.Encrypt(bobID.Address(), []byte("x")); !errors.Is(err, libsignal.ErrSessionNotFound) {
		t.Fatalf("encrypt without a current session: %v, want session not found", err)
	}
	// Bob can still reach Alice on the archived state, which decryption promotes.
	libDecrypt(t, alice, bobID.Address(), libEncrypt(t, bob, aliceID.Address(), "old", libsignal.TypeSignal), "old")
}

func TestHarnessSignVerify(t *testing.T) {
	alice, aliceID := libsignal.StartTest(t, "alice", 1)
	msg := []byte("signed by alice")
	sig, err := alice.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != 64 {
		t.Fatalf("signature is %d bytes", len(sig))
	}
	if ok, err := alice.Verify(aliceID.IdentityKey, msg, sig); err != nil || !ok {
		t.Fatalf("verify: %v %v", ok, err)
	}
	sig[0] ^= 1
	if ok, err := alice.Verify(aliceID.IdentityKey, msg, sig); err != nil || ok {
		t.Fatalf("verify of a corrupted signature: %v %v", ok, err)
	}
}

func TestHarnessImportedIdentity(t *testing.T) {
	p := libsignal.StartBare(t)
	priv := bytes.Repeat([]byte{0x42}, 32)
	id1, err := p.Init(libsignal.InitParams{Name: "x", DeviceID: 1, RegistrationID: 1234, IdentityPrivate: priv})
	if err != nil {
		t.Fatal(err)
	}
	id2, err := p.Init(libsignal.InitParams{Name: "x", DeviceID: 1, IdentityPrivate: priv})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id1.IdentityKey, id2.IdentityKey) || id1.RegistrationID != 1234 {
		t.Fatalf("imported identity not deterministic: %+v %+v", id1, id2)
	}
}

func TestHarnessErrors(t *testing.T) {
	p := libsignal.StartBare(t)
	if _, err := p.Encrypt(libsignal.Address{Name: "x", DeviceID: 1}, []byte("x")); !errors.Is(err, libsignal.ErrBadRequest) {
		t.Errorf("encrypt before init: %v", err)
	}
	if err := p.Call("noSuchCommand", nil, nil); libsignal.KindOf(err) != libsignal.KindUnknownCommand {
		t.Errorf("unknown command: %v", err)
	}
	if err := p.Call("sign", map[string]any{"message": "!!not base64"}, nil); !errors.Is(err, libsignal.ErrBadRequest) {
		t.Errorf("bad base64: %v", err)
	}
	if _, err := p.Init(libsignal.InitParams{Name: "x", DeviceID: 128}); libsignal.KindOf(err) != libsignal.KindInvalidProtocolAddress {
		t.Errorf("device id 128: %v", err)
	}
	if _, err := p.Ping(); err != nil {
		t.Fatalf("harness unusable after errors: %v", err)
	}
}

// innerAddresses returns the addresses field (6) of the SignalMessage inside a
// PreKeySignalMessage (field 4), or nil. Both messages start with a version byte; the
// SignalMessage ends with an 8-byte MAC.
func innerAddresses(t *testing.T, preKeyMessage []byte) []byte {
	t.Helper()
	field := func(b []byte, want protowire.Number) []byte {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatalf("bad tag")
			}
			b = b[n:]
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatalf("bad field %d", num)
			}
			if num == want && typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(b)
				return v
			}
			b = b[n:]
		}
		return nil
	}
	inner := field(preKeyMessage[1:], 4)
	if len(inner) < 9 {
		t.Fatal("no inner SignalMessage")
	}
	return field(inner[1:len(inner)-8], 6)
}

// TestHarnessAddressBinding records a libsignal 0.103 behaviour a Go implementation
// must match: when both addresses' names are service ids, the SignalMessage inside a
// PreKeySignalMessage carries both addresses (field 6, under the MAC), and the
// recipient refuses it as an invalid message when they differ from the addresses it
// decrypts with. Names that are not service ids bind nothing.
func TestHarnessAddressBinding(t *testing.T) {
	const (
		aliceACI = "9d0652a3-dcc3-4d11-975f-74d61598733f"
		bobACI   = "a1b2c3d4-e5f6-4789-8abc-def012345678"
		otherACI = "00000000-1111-4222-8333-444444444444"
	)
	uuidBytes := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	alice, aliceID := libsignal.StartTest(t, aliceACI, 3)
	bob, bobID := libsignal.StartTest(t, bobACI, 5)
	bundle, err := bob.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.ProcessBundle(bobID.Address(), bundle); err != nil {
		t.Fatal(err)
	}
	c := libEncrypt(t, alice, bobID.Address(), "bound", libsignal.TypePreKey)

	// ServiceId fixed-width binary (kind 0x00 for an ACI, then the UUID) and device id,
	// sender first.
	want := append(append(append([]byte{0x00}, uuidBytes(aliceACI)...), 3, 0x00), append(uuidBytes(bobACI), 5)...)
	if got := innerAddresses(t, c.Body); !bytes.Equal(got, want) {
		t.Fatalf("addresses field %x, want %x", got, want)
	}

	wrongSender := libsignal.Address{Name: otherACI, DeviceID: 3}
	if _, err := bob.Decrypt(wrongSender, c); !errors.Is(err, libsignal.ErrInvalidMessage) {
		t.Fatalf("decrypt as from another sender: %v, want an invalid message", err)
	}
	wrongDevice := libsignal.Address{Name: aliceACI, DeviceID: 4}
	if _, err := bob.Decrypt(wrongDevice, c); !errors.Is(err, libsignal.ErrInvalidMessage) {
		t.Fatalf("decrypt as from another device: %v, want an invalid message", err)
	}
	libDecrypt(t, bob, aliceID.Address(), c, "bound")

	// Once the session is acknowledged, SignalMessages carry no addresses.
	r := libEncrypt(t, bob, aliceID.Address(), "reply", libsignal.TypeSignal)
	libDecrypt(t, alice, bobID.Address(), r, "reply")

	// Plain names: no addresses field.
	carol, _ := libsignal.StartTest(t, "carol", 1)
	dave, daveID := libsignal.StartTest(t, "dave", 1)
	b2, err := dave.NewBundle(libsignal.BundleParams{})
	if err != nil {
		t.Fatal(err)
	}
	if err := carol.ProcessBundle(daveID.Address(), b2); err != nil {
		t.Fatal(err)
	}
	if got := innerAddresses(t, libEncrypt(t, carol, daveID.Address(), "x", libsignal.TypePreKey).Body); got != nil {
		t.Fatalf("addresses field %x with names that are not service ids", got)
	}
}

func TestHarnessAvailable(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not on PATH")
	}
	dir := t.TempDir()
	if err := libsignal.Available(dir); !errors.Is(err, libsignal.ErrUnavailable) {
		t.Fatalf("empty dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "harness.mjs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := libsignal.Available(dir)
	if !errors.Is(err, libsignal.ErrUnavailable) || !strings.Contains(err.Error(), "npm ci") {
		t.Fatalf("no node_modules: %v", err)
	}
	pkg := filepath.Join(dir, "node_modules", "@signalapp", "libsignal-client")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "package.json"), []byte(`{"version":"0.102.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := libsignal.Available(dir); !errors.Is(err, libsignal.ErrUnavailable) || !strings.Contains(err.Error(), "0.102.0") {
		t.Fatalf("wrong version: %v", err)
	}
	if _, err := libsignal.Start(t.Context(), dir); !errors.Is(err, libsignal.ErrUnavailable) {
		t.Fatalf("Start with the wrong version: %v", err)
	}
}

func TestHarnessStaleUnacknowledgedSession(t *testing.T) {
	alice, _, bob, bobID := harnessPair(t)
	bundle, err := bob.NewBundle(libsignal.BundleParams{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := alice.ProcessBundleAt(bobID.Address(), bundle, start); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.EncryptAt(bobID.Address(), []byte("x"), start.Add(29*24*time.Hour)); err != nil {
		t.Fatalf("29 days later: %v", err)
	}
	late := start.Add(31 * 24 * time.Hour)
	if _, err := alice.EncryptAt(bobID.Address(), []byte("x"), late); !errors.Is(err, libsignal.ErrSessionNotFound) {
		t.Fatalf("31 days later: %v, want session not found", err)
	}
	info, err := alice.SessionInfoAt(bobID.Address(), late)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Exists || info.HasCurrentState {
		t.Fatalf("31 days later: %+v, want a session without a usable current state", info)
	}
}
