// Benchmarks of Doorless's one-to-one sessions (protocol/session), side by side with
// go.mau.fi/libsignal v0.2.1 and with the bare cryptographic work each step needs.
//
// Running them
//
//	cd bench            # this module; go.mau.fi/libsignal (GPL) stays out of the main module
//	./run.sh            # -cpu 1 -count 6, then benchstat; writes results/
//
// or by hand:
//
//	go test -run '^$' -bench . -benchmem -cpu 1 -count 6 | tee new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl new.txt
//
// Every benchmark has three sub-benchmarks, impl=primitives, impl=doorless and
// impl=maufi, so `benchstat -col /impl` prints them side by side, as ratios against
// the primitives (BenchmarkOneChain adds impl=primitives-nospqr, the Double
// Ratchet's work without SPQR's share). BenchmarkPrimitive/op=... times the
// primitives one by one. Set -benchtime to trade precision for time; the whole run
// takes about three minutes with the defaults. The machine matters: write the results into docs/benchmarks.md
// with the date, `go version`, `nproc` and `lscpu`.
//
// Profiling Doorless alone:
//
//	go test -run '^$' -bench 'OneChain/impl=doorless' -cpu 1 -benchmem \
//	    -cpuprofile cpu.out -memprofile mem.out -memprofilerate 1
//	go tool pprof -top -sample_index=alloc_space mem.out
//
// What is measured (one op):
//
//   - BenchmarkOneChain: Alice encrypts 100 bytes, Bob parses and decrypts; Alice
//     never hears back, so no DH ratchet step happens. SPQR runs as in a real
//     session: after warm-up Alice sends redundancy chunks of her ML-KEM header,
//     which Bob (who has the header) ignores; no ML-KEM work in the loop.
//   - BenchmarkRatchetEveryMessage: the direction alternates, so every message
//     makes its receiver take a DH ratchet step (DH with its old key, a new key
//     pair, DH with the new one). SPQR completes an ML-KEM-768 epoch every few
//     dozen messages; the primitives baseline charges the measured number of
//     epochs per message (see calibrate).
//   - BenchmarkPQXDHSetup: a fresh session each op: bundle processing, the first
//     message, its decryption (which creates the responder's session). go.mau.fi
//     has no PQXDH: its op is X3DH (message version 3), with no Kyber and no SPQR.
//
// go.mau.fi's stores are in-memory and do not serialize records; Doorless's records
// are not serialized either. Neither side pays for trust decisions beyond
// go.mau.fi's own calls to its identity store.
package bench

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/cloudflare/circl/kem/kyber/kyber1024"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"

	mfprotocol "go.mau.fi/libsignal/protocol"
)

// msg100 is the plaintext of every message.
var msg100 = bytes.Repeat([]byte("0123456789"), 10)

// warmUp is how many messages run before timing starts, enough for SPQR to leave its
// start-up states.
const warmUp = 400

// calibration holds facts measured on real Doorless conversations that the
// primitives baselines need.
type calibration struct {
	headerLen            int     // MAC-covered bytes of a SignalMessage besides the ciphertext
	pqFieldLen           int     // bytes of its pq_ratchet field (tag, length, value)
	oneChainEpochsPerMsg float64 // SPQR epochs completed per message, one direction
	ratchetEpochsPerMsg  float64 // SPQR epochs completed per message, alternating
	doorlessMsgLen       int     // bytes of a steady-state SignalMessage with 100 bytes of text
	maufiMsgLen          int
}

var (
	calOnce sync.Once
	cal     calibration
)

// calibrate measures, once per process, the size of a steady-state message and the
// rate at which SPQR epochs (one ML-KEM-768 key pair, encapsulation and
// decapsulation each) complete, by reading the epoch from each message's pq_ratchet
// field.
func calibrate(tb testing.TB) calibration {
	calOnce.Do(func() {
		const n = 4000
		alice, bob := dlConversation(tb)
		var ct []byte
		for range warmUp {
			_, ct = alice.send(tb, bob, msg100)
			bob.receive(tb, alice, session.TypeWhisper, ct)
		}
		e0, _ := spqrField(tb, ct)
		for range n {
			_, ct = alice.send(tb, bob, msg100)
			bob.receive(tb, alice, session.TypeWhisper, ct)
		}
		e1, pqLen := spqrField(tb, ct)
		cal.oneChainEpochsPerMsg = float64(e1-e0) / n
		cal.pqFieldLen = pqLen
		padded := (len(msg100)/16 + 1) * 16
		cal.doorlessMsgLen = len(ct)
		cal.headerLen = len(ct) - 8 - padded

		alice, bob = dlConversation(tb)
		devs := [2]*dlDevice{alice, bob}
		for i := range warmUp {
			s, r := devs[i&1], devs[i&1^1]
			_, ct = s.send(tb, r, msg100)
			r.receive(tb, s, session.TypeWhisper, ct)
		}
		e0, _ = spqrField(tb, ct)
		for i := range n {
			s, r := devs[i&1], devs[i&1^1]
			_, ct = s.send(tb, r, msg100)
			r.receive(tb, s, session.TypeWhisper, ct)
		}
		e1, _ = spqrField(tb, ct)
		cal.ratchetEpochsPerMsg = float64(e1-e0) / n

		ma, mb := mfConversation(tb)
		m := ma.send(tb, msg100)
		mb.receive(tb, false, m.Serialize())
		cal.maufiMsgLen = len(m.Serialize())
	})
	return cal
}

// spqrField returns the SPQR epoch of a serialized SignalMessage, the first varint
// after the version byte of its pq_ratchet field (field 5), and the encoded size of
// that field.
func spqrField(tb testing.TB, msg []byte) (epoch uint64, fieldLen int) {
	b := msg[1 : len(msg)-8]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			break
		}
		if num == 5 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			if len(v) < 2 || v[0] != 1 {
				break
			}
			e, k := binary.Uvarint(v[1:])
			if k <= 0 {
				break
			}
			return e, n + m
		}
		n = m
		b = b[n:]
	}
	tb.Fatal("message has no SPQR V1 data")
	return 0, 0
}

// TestCalibration prints the calibration (go test -run Calibration -v) and checks
// that every implementation round-trips.
func TestCalibration(t *testing.T) {
	c := calibrate(t)
	t.Logf("doorless SignalMessage, 100-byte text: %d bytes (MAC-covered header %d bytes, of which pq_ratchet %d)", c.doorlessMsgLen, c.headerLen, c.pqFieldLen)
	t.Logf("go.mau.fi SignalMessage, 100-byte text: %d bytes", c.maufiMsgLen)
	t.Logf("SPQR epochs per message, one direction: %.5f", c.oneChainEpochsPerMsg)
	t.Logf("SPQR epochs per message, alternating: %.5f (one per %.1f messages)", c.ratchetEpochsPerMsg, 1/c.ratchetEpochsPerMsg)
}

func BenchmarkOneChain(b *testing.B) {
	c := calibrate(b)
	b.Run("impl=primitives", func(b *testing.B) {
		p := newPrim(len(msg100), c.headerLen)
		for b.Loop() {
			p.encryptMessage()
			if !p.decryptMessage() {
				b.Fatal("primitives: bad MAC or padding")
			}
		}
	})
	// The same without SPQR's share (its chain step, the salt of the message keys and
	// the pq_ratchet bytes under the MAC): what a Double Ratchet step alone costs, as
	// before SPQR.
	b.Run("impl=primitives-nospqr", func(b *testing.B) {
		p := newPrim(len(msg100), c.headerLen-c.pqFieldLen)
		p.noSPQR = true
		for b.Loop() {
			p.encryptMessage()
			if !p.decryptMessage() {
				b.Fatal("primitives: bad MAC or padding")
			}
		}
	})
	b.Run("impl=doorless", func(b *testing.B) {
		alice, bob := dlConversation(b)
		for range warmUp {
			_, ct := alice.send(b, bob, msg100)
			bob.receive(b, alice, session.TypeWhisper, ct)
		}
		var pt []byte
		for b.Loop() {
			_, ct, err := alice.rec.Encrypt(msg100, benchNow, nil)
			if err != nil {
				b.Fatal(err)
			}
			m, err := session.ParseSignalMessage(ct)
			if err != nil {
				b.Fatal(err)
			}
			if pt, err = bob.rec.Decrypt(m, nil); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(pt, msg100) {
			b.Fatal("doorless: wrong plaintext")
		}
	})
	b.Run("impl=maufi", func(b *testing.B) {
		alice, bob := mfConversation(b)
		ctx := context.Background()
		for range warmUp {
			bob.receive(b, false, alice.send(b, msg100).Serialize())
		}
		var pt []byte
		for b.Loop() {
			m, err := alice.cipher.Encrypt(ctx, msg100)
			if err != nil {
				b.Fatal(err)
			}
			sm, err := mfprotocol.NewSignalMessageFromBytes(m.Serialize(), mfSerializer.SignalMessage)
			if err != nil {
				b.Fatal(err)
			}
			if pt, err = bob.cipher.Decrypt(ctx, sm); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(pt, msg100) {
			b.Fatal("go.mau.fi: wrong plaintext")
		}
	})
}

func BenchmarkRatchetEveryMessage(b *testing.B) {
	c := calibrate(b)
	b.Run("impl=primitives", func(b *testing.B) {
		p := newPrim(len(msg100), c.headerLen)
		var root [32]byte
		privs := [2]*ecdhKey{newECDHKey(b), newECDHKey(b)}
		var epochs float64
		i := 0
		for b.Loop() {
			s, r := i&1, i&1^1
			i++
			p.encryptMessage()
			// The receiver's DH ratchet step (DoubleRatchet::dh_ratchet_step).
			theirs := privs[s].pub
			p.rootStep(&root, x25519Agree(b, privs[r].priv, theirs))
			privs[r] = newECDHKey(b)
			p.rootStep(&root, x25519Agree(b, privs[r].priv, theirs))
			if !p.decryptMessage() {
				b.Fatal("primitives: bad MAC or padding")
			}
			// SPQR's ML-KEM-768 epochs, at the rate a real conversation runs them.
			if epochs += c.ratchetEpochsPerMsg; epochs >= 1 {
				epochs--
				mlkem768Epoch(b)
			}
		}
	})
	b.Run("impl=doorless", func(b *testing.B) {
		alice, bob := dlConversation(b)
		devs := [2]*dlDevice{alice, bob}
		for i := range warmUp {
			s, r := devs[i&1], devs[i&1^1]
			_, ct := s.send(b, r, msg100)
			r.receive(b, s, session.TypeWhisper, ct)
		}
		i := 0
		var pt []byte
		for b.Loop() {
			s, r := devs[i&1], devs[i&1^1]
			i++
			_, ct, err := s.rec.Encrypt(msg100, benchNow, nil)
			if err != nil {
				b.Fatal(err)
			}
			m, err := session.ParseSignalMessage(ct)
			if err != nil {
				b.Fatal(err)
			}
			if pt, err = r.rec.Decrypt(m, nil); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(pt, msg100) {
			b.Fatal("doorless: wrong plaintext")
		}
	})
	b.Run("impl=maufi", func(b *testing.B) {
		alice, bob := mfConversation(b)
		devs := [2]*mfDevice{alice, bob}
		ctx := context.Background()
		for i := range warmUp {
			s, r := devs[i&1], devs[i&1^1]
			r.receive(b, false, s.send(b, msg100).Serialize())
		}
		i := 0
		var pt []byte
		for b.Loop() {
			s, r := devs[i&1], devs[i&1^1]
			i++
			m, err := s.cipher.Encrypt(ctx, msg100)
			if err != nil {
				b.Fatal(err)
			}
			sm, err := mfprotocol.NewSignalMessageFromBytes(m.Serialize(), mfSerializer.SignalMessage)
			if err != nil {
				b.Fatal(err)
			}
			if pt, err = r.cipher.Decrypt(ctx, sm); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(pt, msg100) {
			b.Fatal("go.mau.fi: wrong plaintext")
		}
	})
}

func BenchmarkPQXDHSetup(b *testing.B) {
	c := calibrate(b)
	b.Run("impl=primitives", func(b *testing.B) {
		// Long-term keys come from a Doorless device so that the signatures are
		// real XEdDSA signatures over the bundle's keys.
		bob := newDLDevice(b, bobAddr)
		bundle := bob.bundle
		spkBytes := bundle.SignedPreKey.AppendBytes(nil)
		kyberBundleKey := bundle.KyberPreKey.Bytes()
		idA, idB := newECDHKey(b), newECDHKey(b)
		spk, opk := newECDHKey(b), newECDHKey(b)
		kyberPub, kyberPriv, err := kyber1024.GenerateKeyPair(rand.Reader)
		check(b, err)
		kyberPK := make([]byte, kyber1024.PublicKeySize)
		kyberPub.Pack(kyberPK)
		kct := make([]byte, kyber1024.CiphertextSize)
		kss := make([]byte, kyber1024.SharedKeySize)
		kss2 := make([]byte, kyber1024.SharedKeySize)
		p := newPrim(len(msg100), c.headerLen)
		var disc [32]byte
		for i := range disc {
			disc[i] = 0xff
		}
		var root, rootB [32]byte
		for b.Loop() {
			// Initiator: InitiateSession.
			if !bundle.IdentityKey.Verify(bundle.SignedPreKeySignature, spkBytes) ||
				!bundle.IdentityKey.Verify(bundle.KyberPreKeySignature, kyberBundleKey) {
				b.Fatal("primitives: signature")
			}
			base := newECDHKey(b)
			p.secret = append(p.secret[:0], disc[:]...)
			p.secret = append(p.secret, x25519Agree(b, idA.priv, spk.pub)...)
			p.secret = append(p.secret, x25519Agree(b, base.priv, idB.pub)...)
			p.secret = append(p.secret, x25519Agree(b, base.priv, spk.pub)...)
			p.secret = append(p.secret, x25519Agree(b, base.priv, opk.pub)...)
			kyberEncaps(kyberPK, kct, kss)
			p.secret = append(p.secret, kss...)
			p.hkdf(p.okm[:96], nil, p.secret, p.pqxdhInfo)
			copy(root[:], p.okm[:32])
			sending := newECDHKey(b)
			p.rootStep(&root, x25519Agree(b, sending.priv, spk.pub))
			// spqr.NewState: the authenticator and the chain start (labels differ in
			// the real thing; the cost does not).
			p.hkdf(p.okm[:64], nil, root[:], p.mkInfo)
			p.hkdf(p.okm[:96], nil, root[:], p.mkInfo)
			// First message: SPQR samples an ML-KEM-768 key pair and MACs its header.
			if _, err := mlkem.GenerateKey768(); err != nil {
				b.Fatal(err)
			}
			p.hmac(&p.mac, root[:], p.okm[:64])
			p.encryptMessage()

			// Responder: DecryptPreKey.
			if !keys.PublicKey(base.pub).IsCanonical() {
				b.Fatal("primitives: base key")
			}
			p.secret = append(p.secret[:0], disc[:]...)
			p.secret = append(p.secret, x25519Agree(b, spk.priv, idA.pub)...)
			p.secret = append(p.secret, x25519Agree(b, idB.priv, base.pub)...)
			p.secret = append(p.secret, x25519Agree(b, spk.priv, base.pub)...)
			p.secret = append(p.secret, x25519Agree(b, opk.priv, base.pub)...)
			kyberPriv.DecapsulateTo(kss2, kct)
			p.secret = append(p.secret, kss2...)
			p.hkdf(p.okm[:96], nil, p.secret, p.pqxdhInfo)
			copy(rootB[:], p.okm[:32])
			p.hkdf(p.okm[:64], nil, rootB[:], p.mkInfo) // spqr.NewState
			p.hkdf(p.okm[:96], nil, rootB[:], p.mkInfo)
			// The first message carries a new ratchet key: a DH ratchet step.
			p.rootStep(&rootB, x25519Agree(b, spk.priv, sending.pub))
			next := newECDHKey(b)
			p.rootStep(&rootB, x25519Agree(b, next.priv, sending.pub))
			if !p.decryptMessage() || !bytes.Equal(kss, kss2) {
				b.Fatal("primitives: first message")
			}
		}
	})
	b.Run("impl=doorless", func(b *testing.B) {
		alice, bob := newDLDevice(b, aliceAddr), newDLDevice(b, bobAddr)
		var pt []byte
		for b.Loop() {
			var ra, rb session.Record
			if err := ra.InitiateSession(alice.id, alice.addr, bob.addr, bob.bundle, benchNow, nil); err != nil {
				b.Fatal(err)
			}
			_, ct, err := ra.Encrypt(msg100, benchNow, nil)
			if err != nil {
				b.Fatal(err)
			}
			m, err := session.ParsePreKeySignalMessage(ct)
			if err != nil {
				b.Fatal(err)
			}
			if pt, _, err = rb.DecryptPreKey(m, bob.id, bob.addr, alice.addr, bob.store, nil); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(pt, msg100) {
			b.Fatal("doorless: wrong plaintext")
		}
	})
	b.Run("impl=maufi", func(b *testing.B) {
		alice, bob := newMFDevice(b, "alice"), newMFDevice(b, "bob")
		alice.connect(bob)
		bob.connect(alice)
		ctx := context.Background()
		var pt []byte
		for b.Loop() {
			delete(alice.sessions.m, bob.addr)
			delete(bob.sessions.m, alice.addr)
			if err := alice.builder.ProcessBundle(ctx, bob.bundle); err != nil {
				b.Fatal(err)
			}
			m, err := alice.cipher.Encrypt(ctx, msg100)
			if err != nil {
				b.Fatal(err)
			}
			pm, err := mfprotocol.NewPreKeySignalMessageFromBytes(m.Serialize(), mfSerializer.PreKeySignalMessage, mfSerializer.SignalMessage)
			if err != nil {
				b.Fatal(err)
			}
			if pt, err = bob.cipher.DecryptMessage(ctx, pm); err != nil {
				b.Fatal(err)
			}
		}
		if !bytes.Equal(pt, msg100) {
			b.Fatal("go.mau.fi: wrong plaintext")
		}
	})
}

// BenchmarkPrimitive times each primitive alone, to explain the baselines above.
func BenchmarkPrimitive(b *testing.B) {
	dev := newDLDevice(b, bobAddr)
	bundle := dev.bundle
	spkBytes := bundle.SignedPreKey.AppendBytes(nil)
	peer := newECDHKey(b)
	b.Run("op=x25519-keygen", func(b *testing.B) {
		for b.Loop() {
			newECDHKey(b)
		}
	})
	b.Run("op=x25519-agree", func(b *testing.B) {
		k := newECDHKey(b)
		for b.Loop() {
			x25519Agree(b, k.priv, peer.pub)
		}
	})
	b.Run("op=x25519-keygen-stdlib", func(b *testing.B) {
		for b.Loop() {
			if _, err := ecdh.X25519().GenerateKey(rand.Reader); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=x25519-agree-stdlib", func(b *testing.B) {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		pk, err := ecdh.X25519().NewPublicKey(peer.pub)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := k.ECDH(pk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=xeddsa-verify", func(b *testing.B) {
		for b.Loop() {
			if !bundle.IdentityKey.Verify(bundle.SignedPreKeySignature, spkBytes) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("op=ed25519-verify-stdlib", func(b *testing.B) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		sig := ed25519.Sign(priv, spkBytes)
		for b.Loop() {
			if !ed25519.Verify(pub, spkBytes, sig) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("op=basekey-check-keys", func(b *testing.B) {
		k := keys.PublicKey(peer.pub)
		for b.Loop() {
			if !k.IsCanonical() {
				b.Fatal("not canonical")
			}
		}
	})
	b.Run("op=kyber1024-encaps", func(b *testing.B) {
		pub, _, _ := kyber1024.GenerateKeyPair(rand.Reader)
		pk := make([]byte, kyber1024.PublicKeySize)
		pub.Pack(pk)
		ct := make([]byte, kyber1024.CiphertextSize)
		ss := make([]byte, kyber1024.SharedKeySize)
		for b.Loop() {
			kyberEncaps(pk, ct, ss)
		}
	})
	b.Run("op=kyber1024-decaps", func(b *testing.B) {
		pub, priv, _ := kyber1024.GenerateKeyPair(rand.Reader)
		pk := make([]byte, kyber1024.PublicKeySize)
		pub.Pack(pk)
		ct := make([]byte, kyber1024.CiphertextSize)
		ss := make([]byte, kyber1024.SharedKeySize)
		kyberEncaps(pk, ct, ss)
		for b.Loop() {
			priv.DecapsulateTo(ss, ct)
		}
	})
	b.Run("op=mlkem768-keygen", func(b *testing.B) {
		for b.Loop() {
			if _, err := mlkem.GenerateKey768(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=mlkem768-encaps", func(b *testing.B) {
		dk, _ := mlkem.GenerateKey768()
		ek := dk.EncapsulationKey()
		for b.Loop() {
			ek.Encapsulate()
		}
	})
	b.Run("op=mlkem768-decaps", func(b *testing.B) {
		dk, _ := mlkem.GenerateKey768()
		_, ct := dk.EncapsulationKey().Encapsulate()
		for b.Loop() {
			if _, err := dk.Decapsulate(ct); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=hmac-sha256", func(b *testing.B) {
		p := newPrim(0, 0)
		for b.Loop() {
			p.hmac(&p.sendChain, p.sendChain[:], p.one[:])
		}
	})
	b.Run("op=hkdf-sha256-80", func(b *testing.B) {
		p := newPrim(0, 0)
		for b.Loop() {
			p.messageKeys()
		}
	})
	b.Run("op=aes256cbc-100-enc+dec", func(b *testing.B) {
		c := calibrate(b)
		p := newPrim(len(msg100), c.headerLen)
		p.encryptMessage()
		for b.Loop() {
			aesCBCRoundTrip(p)
		}
	})
}

// ecdhKey is an X25519 key pair with its public key's bytes, as received on the wire.
type ecdhKey struct {
	priv *keys.PrivateKey
	pub  []byte
}

func newECDHKey(tb testing.TB) *ecdhKey {
	k := x25519KeyGen(tb)
	return &ecdhKey{priv: k.Private, pub: k.Public[:]}
}
