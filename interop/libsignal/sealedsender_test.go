package libsignal_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
	"github.com/doorless/doorless/protocol/senderkey"
	"github.com/doorless/doorless/protocol/session"
)

// revokedKeyID is the server certificate key id libsignal lists as revoked.
const revokedKeyID = 0xDEADC357

func mustKey(t testing.TB) *keys.PrivateKey {
	t.Helper()
	k, err := keys.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomUUID(t testing.TB) string {
	t.Helper()
	id, err := senderkey.NewDistributionID(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// goPKI is a trust root and a server certificate made by our code.
type goPKI struct {
	root, serverKey *keys.PrivateKey
	server          *sealedsender.ServerCertificate
}

func newGoPKI(t testing.TB, keyID uint32) *goPKI {
	t.Helper()
	p := &goPKI{root: mustKey(t), serverKey: mustKey(t)}
	var err error
	if p.server, err = sealedsender.NewServerCertificate(keyID, p.serverKey.PublicKey(), p.root, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *goPKI) issue(t testing.TB, s sealedsender.Sender, expires time.Time) *sealedsender.SenderCertificate {
	t.Helper()
	c, err := sealedsender.NewSenderCertificate(s, expires, p.server, p.serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// libPKI is a trust root (our key) and a server certificate made by libsignal.
type libPKI struct {
	root, serverKey *keys.PrivateKey
	server          libsignal.ServerCertificateInfo
}

func newLibPKI(t testing.TB, p *libsignal.Peer, keyID uint32) *libPKI {
	t.Helper()
	l := &libPKI{root: mustKey(t), serverKey: mustKey(t)}
	var err error
	if l.server, err = p.NewServerCertificate(keyID, l.serverKey.PublicKey().Bytes(), l.root.Bytes()); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *libPKI) issue(t testing.TB, p *libsignal.Peer, uuid string, e164 *string, device uint32, key keys.PublicKey, expires time.Time) libsignal.SenderCertificateInfo {
	t.Helper()
	c, err := p.NewSenderCertificate(libsignal.SenderCertificateParams{
		SenderUUID: uuid, SenderE164: e164, DeviceID: device, SenderKey: key.Bytes(),
		Expiration: expires.UnixMilli(), ServerCertificate: l.server.Serialized, ServerPrivate: l.serverKey.Bytes(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func flipBit(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i/8] ^= 1 << (i % 8)
	return b
}

// TestInteropSealedSenderCertificatesOurs: certificates made by our code read the same in
// libsignal, are encoded byte for byte as libsignal encodes the same fields, and
// validate in libsignal exactly when they should.
func TestInteropSealedSenderCertificatesOurs(t *testing.T) {
	lib, _ := libsignal.StartTest(t, libName, 2)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	for i := range 25 {
		p := newGoPKI(t, rng.Uint32()>>rng.IntN(32))
		s := sealedsender.Sender{UUID: randomUUID(t), DeviceID: 1 + uint32(rng.IntN(127)), IdentityKey: mustKey(t).PublicKey()}
		var name *string // Doorless's username, in libsignal's phone number field
		if i%2 == 0 {
			s.Name = fmt.Sprintf("user_%d", rng.IntN(1000))
			name = &s.Name
		}
		expires := time.UnixMilli(1_700_000_000_000 + rng.Int64N(1<<40))
		c := p.issue(t, s, expires)

		srv, err := lib.ParseServerCertificate(p.server.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if srv.KeyID != p.server.KeyID() || !bytes.Equal(srv.Key, p.serverKey.PublicKey().Bytes()) ||
			!bytes.Equal(srv.Serialized, p.server.Bytes()) {
			t.Fatalf("#%d: libsignal reads our server certificate as %+v", i, srv)
		}
		got, err := lib.ParseSenderCertificate(c.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if got.SenderUUID != s.UUID || (name == nil) != (got.SenderE164 == nil) || name != nil && *got.SenderE164 != *name || got.DeviceID != s.DeviceID ||
			!bytes.Equal(got.Key, s.IdentityKey.Bytes()) || got.Expiration != expires.UnixMilli() ||
			!bytes.Equal(got.ServerCertificate, p.server.Bytes()) {
			t.Fatalf("#%d: libsignal reads our sender certificate as %+v", i, got)
		}
		// libsignal makes the same signed bytes from the same fields.
		theirs, err := lib.NewSenderCertificate(libsignal.SenderCertificateParams{
			SenderUUID: s.UUID, SenderE164: name, DeviceID: s.DeviceID, SenderKey: s.IdentityKey.Bytes(), Expiration: expires.UnixMilli(),
			ServerCertificate: p.server.Bytes(), ServerPrivate: p.serverKey.Bytes(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(theirs.Certificate, got.Certificate) {
			t.Fatalf("#%d: certificate bytes differ:\n ours %x\n libsignal %x", i, got.Certificate, theirs.Certificate)
		}
		theirServer, err := lib.NewServerCertificate(p.server.KeyID(), p.serverKey.PublicKey().Bytes(), p.root.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(theirServer.Certificate, srv.Certificate) {
			t.Fatalf("#%d: server certificate bytes differ", i)
		}

		root := [][]byte{p.root.PublicKey().Bytes()}
		other := mustKey(t).PublicKey().Bytes()
		for name, tc := range map[string]struct {
			cert  []byte
			roots [][]byte
			now   time.Time
			want  bool
		}{
			"valid":              {c.Bytes(), root, expires.Add(-time.Hour), true},
			"at expiry":          {c.Bytes(), root, expires, true},
			"root among others":  {c.Bytes(), [][]byte{other, root[0]}, expires, true},
			"expired":            {c.Bytes(), root, expires.Add(time.Millisecond), false},
			"other root":         {c.Bytes(), [][]byte{other}, expires, false},
			"forged":             {flipBit(c.Bytes(), 8*(len(c.Bytes())-1)-rng.IntN(300)), root, expires, false},
			"forged server cert": {p.issueWithServer(t, s, expires, flipBit(p.server.Bytes(), 8*len(p.server.Bytes())-1-rng.IntN(300))), root, expires, false},
		} {
			valid, err := lib.ValidateSenderCertificate(tc.cert, tc.roots, tc.now)
			if err != nil {
				t.Fatalf("#%d %s: %v", i, name, err)
			}
			if valid != tc.want {
				t.Fatalf("#%d %s: libsignal says valid=%t", i, name, valid)
			}
		}
	}

	// A certificate under a server key id libsignal lists as revoked.
	p := newGoPKI(t, revokedKeyID)
	c := p.issue(t, sealedsender.Sender{UUID: randomUUID(t), DeviceID: 1, IdentityKey: mustKey(t).PublicKey()}, time.Now().Add(time.Hour))
	valid, err := lib.ValidateSenderCertificate(c.Bytes(), [][]byte{p.root.PublicKey().Bytes()}, time.Now())
	if err != nil || valid {
		t.Fatalf("revoked: libsignal says valid=%t (%v)", valid, err)
	}
	if err := c.Validate([]keys.PublicKey{p.root.PublicKey()}, time.Now()); !errors.Is(err, sealedsender.ErrRevokedCertificate) {
		t.Fatalf("revoked: we say %v", err)
	}
}

// issueWithServer signs a sender certificate that embeds the given server certificate
// bytes (which may be forged), with the PKI's server key.
func (p *goPKI) issueWithServer(t testing.TB, s sealedsender.Sender, expires time.Time, server []byte) []byte {
	t.Helper()
	sc, err := sealedsender.ParseServerCertificate(server)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sealedsender.NewSenderCertificate(s, expires, sc, p.serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Bytes()
}

// TestInteropSealedSenderCertificatesTheirs: certificates made by libsignal parse in our
// code with the same fields (a phone number and an upper-case UUID among them), and
// validate exactly when libsignal says they do.
func TestInteropSealedSenderCertificatesTheirs(t *testing.T) {
	lib, _ := libsignal.StartTest(t, libName, 2)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	for i := range 25 {
		keyID := rng.Uint32() >> rng.IntN(32)
		l := newLibPKI(t, lib, keyID)
		srv, err := sealedsender.ParseServerCertificate(l.server.Serialized)
		if err != nil {
			t.Fatalf("#%d: parsing libsignal's server certificate: %v", i, err)
		}
		if srv.KeyID() != keyID || !srv.Key().Equal(l.serverKey.PublicKey()) {
			t.Fatalf("#%d: server certificate read as %d %v", i, srv.KeyID(), srv.Key())
		}
		if err := srv.Validate(l.root.PublicKey()); err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if err := srv.Validate(mustKey(t).PublicKey()); !errors.Is(err, sealedsender.ErrUntrustedCertificate) {
			t.Fatalf("#%d: other root: %v", i, err)
		}

		uuid := randomUUID(t)
		given := uuid
		if i%5 == 0 {
			given = strings.ToUpper(uuid)
		}
		var e164 *string
		if i%3 == 0 {
			n := fmt.Sprintf("+1415555%04d", rng.IntN(10000))
			e164 = &n
		}
		device := 1 + uint32(rng.IntN(127))
		key := mustKey(t).PublicKey()
		expires := time.UnixMilli(1_700_000_000_000 + rng.Int64N(1<<40))
		info := l.issue(t, lib, given, e164, device, key, expires)
		c, err := sealedsender.ParseSenderCertificate(info.Serialized)
		if err != nil {
			t.Fatalf("#%d: parsing libsignal's sender certificate: %v", i, err)
		}
		want := sealedsender.Sender{UUID: uuid, DeviceID: device, IdentityKey: key}
		if e164 != nil {
			want.Name = *e164
		}
		if c.Sender() != want {
			t.Fatalf("#%d: sender %+v, want %+v", i, c.Sender(), want)
		}
		if (e164 == nil && c.E164() != "") || (e164 != nil && c.E164() != *e164) {
			t.Fatalf("#%d: e164 %q", i, c.E164())
		}
		if !c.Expires().Equal(expires) || !bytes.Equal(c.Signer().Bytes(), l.server.Serialized) || !bytes.Equal(c.Bytes(), info.Serialized) {
			t.Fatalf("#%d: expires %v, signer or bytes differ", i, c.Expires())
		}
		roots := []keys.PublicKey{l.root.PublicKey()}
		if err := c.Validate(roots, expires); err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if err := c.Validate(roots, expires.Add(time.Millisecond)); !errors.Is(err, sealedsender.ErrExpiredCertificate) {
			t.Fatalf("#%d: expired: %v", i, err)
		}
		if err := c.Validate([]keys.PublicKey{mustKey(t).PublicKey()}, expires); !errors.Is(err, sealedsender.ErrUntrustedCertificate) {
			t.Fatalf("#%d: other root: %v", i, err)
		}
		forged, err := sealedsender.ParseSenderCertificate(flipBit(info.Serialized, 8*(len(info.Serialized)-1)-rng.IntN(300)))
		if err != nil {
			t.Fatal(err)
		}
		if err := forged.Validate(roots, expires); !errors.Is(err, sealedsender.ErrUntrustedCertificate) {
			t.Fatalf("#%d: forged: %v", i, err)
		}
		// A certificate libsignal signs under our server certificate validates here.
		p := newGoPKI(t, keyID)
		mixed := libPKI{root: p.root, serverKey: p.serverKey, server: libsignal.ServerCertificateInfo{Serialized: p.server.Bytes()}}
		mc, err := sealedsender.ParseSenderCertificate(mixed.issue(t, lib, uuid, nil, device, key, expires).Serialized)
		if err != nil || mc.Validate([]keys.PublicKey{p.root.PublicKey()}, expires) != nil {
			t.Fatalf("#%d: libsignal's certificate under our server certificate: %v", i, err)
		}
	}

	l := newLibPKI(t, lib, revokedKeyID)
	info := l.issue(t, lib, randomUUID(t), nil, 1, mustKey(t).PublicKey(), time.Now().Add(time.Hour))
	c, err := sealedsender.ParseSenderCertificate(info.Serialized)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate([]keys.PublicKey{l.root.PublicKey()}, time.Now()); !errors.Is(err, sealedsender.ErrRevokedCertificate) {
		t.Fatalf("revoked: %v", err)
	}
	if valid, err := lib.ValidateSenderCertificate(info.Serialized, [][]byte{l.root.PublicKey().Bytes()}, time.Now()); err != nil || valid {
		t.Fatalf("revoked: libsignal says valid=%t (%v)", valid, err)
	}
}

// sealedMessage is one message in flight in TestInteropSealedSenderV1Conversation.
type sealedMessage struct {
	fromGo  bool
	body    []byte
	text    string
	typ     int
	hint    uint32
	groupID []byte
	usmc    []byte // the content as its sender serialized it
}

// TestInteropSealedSenderV1Conversation runs a conversation in which every message is
// sealed (version 1): a session starts with prekey messages (type 3) and goes on with
// whisper messages (type 2), each side seals with its own certificates (ours, and
// libsignal's under a libsignal server certificate), and each side opens the other's
// messages: libsignal alternately with its whole receive path (certificate validation
// and session decryption) and with sealedSenderDecryptToUsmc; we with Decrypt, Validate
// and the session. Contents are compared byte for byte with what the sender serialized.
func TestInteropSealedSenderV1Conversation(t *testing.T) {
	bothDirections(t, true, func(t *testing.T, goInitiates bool) {
		g, l := newGoPeer(t), newLibPeer(t)
		now := time.Now()
		goPKI := newGoPKI(t, 1)
		goCert := goPKI.issue(t, sealedsender.Sender{UUID: g.addr.Name, DeviceID: g.addr.DeviceID, IdentityKey: g.id.KeyPair.Public}, now.Add(time.Hour))
		lPKI := newLibPKI(t, l.p, 2)
		libKey, err := keys.ParsePublicKey(l.id.IdentityKey)
		if err != nil {
			t.Fatal(err)
		}
		libCert := lPKI.issue(t, l.p, l.id.Name, nil, l.id.DeviceID, libKey, now.Add(time.Hour))

		if goInitiates {
			b, err := l.p.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := g.record.InitiateSession(g.id, g.addr, l.addr(), toSessionBundle(t, b), now, nil); err != nil {
				t.Fatal(err)
			}
		} else if err := l.p.ProcessBundle(goAddr(g), g.bundle(t, true)); err != nil {
			t.Fatal(err)
		}

		seed := uint64(now.UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 13))
		hintAndGroup := func() (uint32, []byte) {
			var gid []byte
			if rng.IntN(3) == 0 {
				gid = make([]byte, 1+rng.IntN(32))
				for i := range gid {
					gid[i] = byte(rng.Uint32())
				}
			}
			return uint32(rng.IntN(3)), gid
		}
		sendGo := func(i int) sealedMessage {
			text := fmt.Sprintf("sealed from Go %d %s", i, strings.Repeat("x", rng.IntN(300)))
			c := g.encrypt(t, l.addr(), text)
			hint, gid := hintAndGroup()
			content := &sealedsender.Content{Type: sealedsender.MessageType(c.Type), Sender: goCert, Contents: c.Body,
				Hint: sealedsender.ContentHint(hint), GroupID: gid}
			body, err := sealedsender.Encrypt(nil, libKey, g.id.KeyPair.Private, content)
			if err != nil {
				t.Fatal(err)
			}
			return sealedMessage{true, body, text, c.Type, hint, gid, content.Bytes()}
		}
		sendLib := func(i int) sealedMessage {
			text := fmt.Sprintf("sealed from libsignal %d %s", i, strings.Repeat("y", rng.IntN(300)))
			hint, gid := hintAndGroup()
			peer := goAddr(g)
			u, err := l.p.CreateUSMC(libsignal.USMCParams{SenderCertificate: libCert.Serialized, Plaintext: []byte(text),
				Peer: &peer, ContentHint: hint, GroupID: gid})
			if err != nil {
				t.Fatal(err)
			}
			body, err := l.p.SealedSenderEncrypt(peer, u.Serialized)
			if err != nil {
				t.Fatal(err)
			}
			return sealedMessage{false, body, text, u.Type, hint, gid, u.Serialized}
		}
		receiveLib := func(i int, m sealedMessage) {
			if i%2 == 0 {
				r, err := l.p.SealedSenderDecrypt(m.body, goPKI.root.PublicKey().Bytes(), now)
				if err != nil {
					t.Fatalf("#%d (type %d): libsignal's receive path: %v", i, m.typ, err)
				}
				if r.SenderUUID != g.addr.Name || r.DeviceID != g.addr.DeviceID || r.SenderE164 != nil || string(r.Plaintext) != m.text {
					t.Fatalf("#%d: libsignal got %+v", i, r)
				}
				return
			}
			u, err := l.p.SealedSenderDecryptToUSMC(m.body)
			if err != nil {
				t.Fatalf("#%d: libsignal opening our message: %v", i, err)
			}
			if !bytes.Equal(u.Serialized, m.usmc) || u.Type != m.typ || u.ContentHint != m.hint || !bytes.Equal(u.GroupID, m.groupID) ||
				!bytes.Equal(u.SenderCertificate, goCert.Bytes()) {
				t.Fatalf("#%d: libsignal reads our content as %+v", i, u)
			}
			pt, err := l.p.Decrypt(goAddr(g), libsignal.Ciphertext{Type: u.Type, Body: u.Contents})
			if err != nil || string(pt) != m.text {
				t.Fatalf("#%d: %q, %v", i, pt, err)
			}
		}
		receiveGo := func(i int, m sealedMessage) {
			c, err := sealedsender.Decrypt(m.body, g.id.KeyPair.Private)
			if err != nil {
				t.Fatalf("#%d (type %d): opening libsignal's message: %v", i, m.typ, err)
			}
			if err := c.Sender.Validate([]keys.PublicKey{lPKI.root.PublicKey()}, now); err != nil {
				t.Fatalf("#%d: libsignal's certificate: %v", i, err)
			}
			if !bytes.Equal(c.Bytes(), m.usmc) || int(c.Type) != m.typ || uint32(c.Hint) != m.hint || !bytes.Equal(c.GroupID, m.groupID) {
				t.Fatalf("#%d: we read libsignal's content as %+v", i, c)
			}
			s := c.Sender.Sender()
			pt, err := g.decrypt(session.Address{Name: s.UUID, DeviceID: s.DeviceID}, libsignal.Ciphertext{Type: int(c.Type), Body: c.Contents})
			if err != nil || string(pt) != m.text {
				t.Fatalf("#%d: %q, %v", i, pt, err)
			}
		}

		types := map[bool]map[int]int{true: {}, false: {}}
		// The initiator sends a few prekey messages before the other side answers.
		for i := range 120 {
			fromGo := rng.IntN(2) == 0
			if i < 3 {
				fromGo = goInitiates
			}
			if fromGo {
				m := sendGo(i)
				types[true][m.typ]++
				receiveLib(i, m)
			} else {
				m := sendLib(i)
				types[false][m.typ]++
				receiveGo(i, m)
			}
		}
		initiator := goInitiates
		if types[initiator][int(session.TypePreKey)] < 3 || types[true][int(session.TypeWhisper)] == 0 || types[false][int(session.TypeWhisper)] == 0 {
			t.Fatalf("message types seen: %v", types)
		}
	})
}

// TestInteropSealedSenderV1SenderKeyAndErrors: a sender-key message (type 7) survives
// version 1 in both directions, and each side refuses the other's message when it is
// sealed to someone else or tampered with.
func TestInteropSealedSenderV1SenderKeyAndErrors(t *testing.T) {
	lib, libID := libsignal.StartTest(t, libName, 2)
	libKey, _ := keys.ParsePublicKey(libID.IdentityKey)
	goID := mustKey(t)
	now := time.Now()
	gp := newGoPKI(t, 5)
	goCert := gp.issue(t, sealedsender.Sender{UUID: goName, DeviceID: 1, IdentityKey: goID.PublicKey()}, now.Add(time.Hour))
	lp := newLibPKI(t, lib, 6)
	libCert := lp.issue(t, lib, libName, nil, 2, libKey, now.Add(time.Hour))
	if _, err := lib.SaveIdentity(goSender, goID.PublicKey().Bytes()); err != nil {
		t.Fatal(err)
	}

	// Go's group message to libsignal.
	dist := newDistributionID(t)
	goRec := senderkey.NewRecord(dist)
	skdm, err := goRec.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.SenderKeyProcess(goSender, skdm.Bytes()); err != nil {
		t.Fatal(err)
	}
	body := goGroupEncrypt(t, goRec, "group message from Go")
	content := &sealedsender.Content{Type: sealedsender.TypeSenderKey, Sender: goCert, Contents: body, Hint: sealedsender.HintResendable, GroupID: []byte("group")}
	sealed, err := sealedsender.Encrypt(nil, libKey, goID, content)
	if err != nil {
		t.Fatal(err)
	}
	u, err := lib.SealedSenderDecryptToUSMC(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if u.Type != libsignal.TypeSenderKey || !bytes.Equal(u.Serialized, content.Bytes()) {
		t.Fatalf("libsignal read %+v", u)
	}
	mustLibGroupDecrypt(t, lib, goSender, u.Contents, "group message from Go")

	// libsignal's group message to Go.
	d, err := lib.SenderKeyCreate(dist.String())
	if err != nil {
		t.Fatal(err)
	}
	member := goReceive(t, d.Body)
	lu, err := lib.CreateUSMC(libsignal.USMCParams{SenderCertificate: libCert.Serialized, Plaintext: []byte("group message from libsignal"),
		DistributionID: dist.String(), ContentHint: 2, GroupID: []byte("group")})
	if err != nil {
		t.Fatal(err)
	}
	lsealed, err := lib.SealedSenderEncrypt(goSender, lu.Serialized)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sealedsender.Decrypt(lsealed, goID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != sealedsender.TypeSenderKey || c.Hint != sealedsender.HintImplicit || string(c.GroupID) != "group" || !bytes.Equal(c.Bytes(), lu.Serialized) {
		t.Fatalf("we read %+v", c)
	}
	mustGoGroupDecrypt(t, member, c.Contents, "group message from libsignal")

	// Refusals, both ways: another recipient's key, and tampering.
	if _, err := sealedsender.Decrypt(lsealed, mustKey(t)); !errors.Is(err, sealedsender.ErrDecryption) {
		t.Fatalf("opened with another key: %v", err)
	}
	other, err := sealedsender.Encrypt(nil, mustKey(t).PublicKey(), goID, content)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lib.SealedSenderDecryptToUSMC(other); libsignal.KindOf(err) != libsignal.KindInvalidSealedSenderMessage {
		t.Fatalf("libsignal opened a message for someone else: %v", err)
	}
	for range 20 {
		bit := 8 + rand.IntN(8*len(sealed)-8)
		if _, err := lib.SealedSenderDecryptToUSMC(flipBit(sealed, bit)); err == nil {
			t.Fatalf("libsignal opened a message with bit %d flipped", bit)
		}
		bit = 8 + rand.IntN(8*len(lsealed)-8)
		if _, err := sealedsender.Decrypt(flipBit(lsealed, bit), goID); err == nil {
			t.Fatalf("we opened a message with bit %d flipped", bit)
		}
	}
	if _, err := lib.SealedSenderDecryptToUSMC(append([]byte{0x31}, sealed[1:]...)); libsignal.KindOf(err) != libsignal.KindUnknownSealedSenderVersion {
		t.Fatalf("version 3: %v", err)
	}
}

// goAccount is a Go recipient account: an identity key shared by its devices, each a
// goPeer with its own registration id and prekeys.
type goAccount struct {
	uuid    string
	key     keys.KeyPair
	devices []*goPeer
	members *senderkey.Record // this account's copy of the sender's key
}

func newGoAccount(t *testing.T, rng *rand.Rand, nDevices int) *goAccount {
	t.Helper()
	a := &goAccount{uuid: randomUUID(t)}
	var err error
	if a.key, err = keys.GenerateKeyPair(nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range rng.Perm(127)[:nDevices] {
		reg, err := keys.GenerateRegistrationID(nil)
		if err != nil {
			t.Fatal(err)
		}
		a.devices = append(a.devices, &goPeer{
			id:     &session.Identity{KeyPair: a.key, RegistrationID: reg},
			addr:   session.Address{Name: a.uuid, DeviceID: uint32(d + 1)},
			store:  session.NewMemoryPreKeyStore(),
			record: &session.Record{},
		})
	}
	return a
}

// TestInteropSealedSenderV2LibsignalToGo: libsignal seals group messages (sender-key
// contents) to several Go accounts with several devices each, one account excluded; our
// ParseSent reads the recipients, devices and registration ids libsignal's own parser
// reads, our ForRecipient makes libsignal's ReceivedMessages byte for byte, and each Go
// account opens its message, checks the certificate and decrypts the group message.
func TestInteropSealedSenderV2LibsignalToGo(t *testing.T) {
	lib, libID := libsignal.StartTest(t, libName, 2)
	libKey, _ := keys.ParsePublicKey(libID.IdentityKey)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	now := time.Now()
	lp := newLibPKI(t, lib, 7)
	libCert := lp.issue(t, lib, libName, nil, 2, libKey, now.Add(time.Hour))
	dist := newDistributionID(t)
	d, err := lib.SenderKeyCreate(dist.String())
	if err != nil {
		t.Fatal(err)
	}

	var accounts []*goAccount
	var addrs []libsignal.Address
	for i := range 4 {
		a := newGoAccount(t, rng, 1+i%3)
		for _, dev := range a.devices {
			if err := lib.ProcessBundle(goAddr(dev), dev.bundle(t, false)); err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, goAddr(dev))
		}
		a.members = goReceive(t, d.Body)
		accounts = append(accounts, a)
	}
	excluded := []string{randomUUID(t)}

	for i := range 12 {
		text := fmt.Sprintf("group message %d %s", i, strings.Repeat("z", rng.IntN(500)))
		hint := uint32(rng.IntN(3))
		u, err := lib.CreateUSMC(libsignal.USMCParams{SenderCertificate: libCert.Serialized, Plaintext: []byte(text),
			DistributionID: dist.String(), ContentHint: hint, GroupID: []byte("the group")})
		if err != nil {
			t.Fatal(err)
		}
		sent, err := lib.SealedSenderMultiRecipientEncrypt(addrs, excluded, u.Serialized)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := lib.ParseMultiRecipient(sent)
		if err != nil {
			t.Fatal(err)
		}
		m, err := sealedsender.ParseSent(sent)
		if err != nil {
			t.Fatalf("#%d: parsing libsignal's SentMessage: %v", i, err)
		}
		compareSent(t, m, theirs)
		if len(m.Recipients) != len(accounts) || len(m.Excluded) != 1 || m.Excluded[0].String() != excluded[0] {
			t.Fatalf("#%d: %d recipients, excluded %v", i, len(m.Recipients), m.Excluded)
		}
		for j, a := range accounts {
			rc := m.Recipients[j]
			if rc.ServiceID.UUID() != a.uuid || !rc.ServiceID.IsACI() || len(rc.Devices) != len(a.devices) {
				t.Fatalf("#%d: recipient %d is %v with %v", i, j, rc.ServiceID, rc.Devices)
			}
			for k, dev := range a.devices {
				if rc.Devices[k] != (sealedsender.Device{ID: dev.addr.DeviceID, RegistrationID: dev.id.RegistrationID}) {
					t.Fatalf("#%d: device %+v, want %d/%d", i, rc.Devices[k], dev.addr.DeviceID, dev.id.RegistrationID)
				}
			}
			c, err := sealedsender.Decrypt(m.ForRecipient(j), a.key.Private)
			if err != nil {
				t.Fatalf("#%d: account %d opening its message: %v", i, j, err)
			}
			if err := c.Sender.Validate([]keys.PublicKey{lp.root.PublicKey()}, now); err != nil {
				t.Fatal(err)
			}
			if c.Type != sealedsender.TypeSenderKey || uint32(c.Hint) != hint || string(c.GroupID) != "the group" ||
				!bytes.Equal(c.Bytes(), u.Serialized) || c.Sender.Sender().UUID != libName {
				t.Fatalf("#%d: content %+v", i, c)
			}
			mustGoGroupDecrypt(t, a.members, c.Contents, text)
		}
	}
}

// compareSent checks our reading of a SentMessage against libsignal's: the same
// recipients in the same order, the same devices and registration ids, the same
// excluded recipients, and the same ReceivedMessage bytes.
func compareSent(t *testing.T, m *sealedsender.SentMessage, theirs libsignal.MultiRecipientInfo) {
	t.Helper()
	if len(m.Recipients) != len(theirs.Recipients) {
		t.Fatalf("%d recipients, libsignal reads %d", len(m.Recipients), len(theirs.Recipients))
	}
	for i, rc := range m.Recipients {
		tr := theirs.Recipients[i]
		var ids, regs []uint32
		for _, d := range rc.Devices {
			ids, regs = append(ids, d.ID), append(regs, d.RegistrationID)
		}
		if rc.ServiceID.String() != tr.ServiceID || !slices.Equal(ids, tr.DeviceIDs) || !slices.Equal(regs, tr.RegistrationIDs) {
			t.Fatalf("recipient %d: %v %v %v, libsignal reads %s %v %v", i, rc.ServiceID, ids, regs, tr.ServiceID, tr.DeviceIDs, tr.RegistrationIDs)
		}
		if !bytes.Equal(m.ForRecipient(i), tr.Message) {
			t.Fatalf("recipient %d: our ReceivedMessage differs from libsignal's", i)
		}
	}
	var ex []string
	for _, e := range m.Excluded {
		ex = append(ex, e.String())
	}
	if !slices.Equal(ex, theirs.Excluded) {
		t.Fatalf("excluded %v, libsignal reads %v", ex, theirs.Excluded)
	}
}

// TestInteropSealedSenderV2GoToLibsignal: we seal group messages to several libsignal
// accounts (each a harness process, listed with several devices), one excluded;
// libsignal's parser reads our SentMessage as we do, and each libsignal account opens
// the ReceivedMessage our ForRecipient makes and decrypts the group message inside.
func TestInteropSealedSenderV2GoToLibsignal(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 15))
	now := time.Now()
	goID := mustKey(t)
	gp := newGoPKI(t, 8)
	goCert := gp.issue(t, sealedsender.Sender{UUID: goName, DeviceID: 1, IdentityKey: goID.PublicKey()}, now.Add(time.Hour))
	dist := newDistributionID(t)
	goRec := senderkey.NewRecord(dist)
	skdm, err := goRec.DistributionMessage(nil)
	if err != nil {
		t.Fatal(err)
	}

	type libAccount struct {
		p  *libsignal.Peer
		id libsignal.Identity
	}
	var accounts []libAccount
	var recipients []sealedsender.Recipient
	for i := range 3 {
		p, id := libsignal.StartTest(t, randomUUID(t), 1)
		if err := p.SenderKeyProcess(goSender, skdm.Bytes()); err != nil {
			t.Fatal(err)
		}
		key, _ := keys.ParsePublicKey(id.IdentityKey)
		sid, err := sealedsender.NewACI(id.Name)
		if err != nil {
			t.Fatal(err)
		}
		rc := sealedsender.Recipient{ServiceID: sid, IdentityKey: key}
		for _, d := range rng.Perm(127)[:1+i] {
			rc.Devices = append(rc.Devices, sealedsender.Device{ID: uint32(d + 1), RegistrationID: uint32(rng.IntN(0x4000))})
		}
		accounts = append(accounts, libAccount{p, id})
		recipients = append(recipients, rc)
	}
	exID, _ := sealedsender.NewACI(randomUUID(t))
	recipients = append(recipients, sealedsender.Recipient{ServiceID: exID, IdentityKey: mustKey(t).PublicKey()})

	for i := range 12 {
		text := fmt.Sprintf("group message %d %s", i, strings.Repeat("w", rng.IntN(500)))
		hint := sealedsender.ContentHint(rng.IntN(3))
		content := &sealedsender.Content{Type: sealedsender.TypeSenderKey, Sender: goCert, Contents: goGroupEncrypt(t, goRec, text),
			Hint: hint, GroupID: []byte("our group")}
		sent, err := sealedsender.EncryptMulti(nil, recipients, goID, content)
		if err != nil {
			t.Fatal(err)
		}
		m, err := sealedsender.ParseSent(sent)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := accounts[i%len(accounts)].p.ParseMultiRecipient(sent)
		if err != nil {
			t.Fatalf("#%d: libsignal parsing our SentMessage: %v", i, err)
		}
		compareSent(t, m, theirs)
		if len(theirs.Excluded) != 1 || theirs.Excluded[0] != exID.String() {
			t.Fatalf("#%d: libsignal reads excluded %v", i, theirs.Excluded)
		}
		for j, a := range accounts {
			u, err := a.p.SealedSenderDecryptToUSMC(m.ForRecipient(j))
			if err != nil {
				t.Fatalf("#%d: libsignal account %d opening our message: %v", i, j, err)
			}
			if u.Type != libsignal.TypeSenderKey || u.ContentHint != uint32(hint) || string(u.GroupID) != "our group" ||
				!bytes.Equal(u.Serialized, content.Bytes()) || !bytes.Equal(u.SenderCertificate, goCert.Bytes()) {
				t.Fatalf("#%d: libsignal reads %+v", i, u)
			}
			if valid, err := a.p.ValidateSenderCertificate(u.SenderCertificate, [][]byte{gp.root.PublicKey().Bytes()}, now); err != nil || !valid {
				t.Fatalf("#%d: libsignal validating our certificate: %t %v", i, valid, err)
			}
			mustLibGroupDecrypt(t, a.p, goSender, u.Contents, text)
			// Another account's message does not open here.
			if _, err := a.p.SealedSenderDecryptToUSMC(m.ForRecipient((j + 1) % len(accounts))); err == nil {
				t.Fatalf("#%d: account %d opened another's message", i, j)
			}
		}
	}

	// One recipient: libsignal's single-recipient helper gives our ForRecipient bytes.
	one := []sealedsender.Recipient{recipients[0]}
	content := &sealedsender.Content{Type: sealedsender.TypeSenderKey, Sender: goCert, Contents: goGroupEncrypt(t, goRec, "only you")}
	sent, err := sealedsender.EncryptMulti(nil, one, goID, content)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sealedsender.ParseSent(sent)
	if err != nil {
		t.Fatal(err)
	}
	single, err := accounts[0].p.MultiRecipientForSingleRecipient(sent)
	if err != nil || !bytes.Equal(single, m.ForRecipient(0)) {
		t.Fatalf("single-recipient message differs: %v", err)
	}
	u, err := accounts[0].p.SealedSenderDecryptToUSMC(single)
	if err != nil {
		t.Fatal(err)
	}
	mustLibGroupDecrypt(t, accounts[0].p, goSender, u.Contents, "only you")
}
