package sealedsender

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/keys"
)

// account is a recipient account: a service id, the identity key its devices share and
// its devices.
type account struct {
	id      ServiceID
	key     *keys.PrivateKey
	devices []Device
}

func newAccounts(t testing.TB, r *rand.Rand, n, maxDevices int) []account {
	t.Helper()
	out := make([]account, n)
	for i := range out {
		var u [16]byte
		for j := range u {
			u[j] = byte(r.Uint32())
		}
		out[i] = account{id: serviceIDOf(kindACI, u), key: newKey(t)}
		perm := r.Perm(MaxDeviceID)
		for d := range 1 + r.IntN(maxDevices) {
			out[i].devices = append(out[i].devices, Device{ID: uint32(perm[d] + 1), RegistrationID: uint32(r.IntN(registrationIDMask + 1))})
		}
	}
	return out
}

func recipientsOf(accounts []account) []Recipient {
	rs := make([]Recipient, len(accounts))
	for i, a := range accounts {
		rs[i] = Recipient{ServiceID: a.id, IdentityKey: a.key.PublicKey(), Devices: a.devices}
	}
	return rs
}

func TestV2RoundTrip(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	r := rand.New(rand.NewPCG(2, 2))
	for iter := range 30 {
		accounts := newAccounts(t, r, 1+r.IntN(6), 4)
		rs := recipientsOf(accounts)
		var excluded []ServiceID
		for range r.IntN(3) {
			ex := newAccounts(t, r, 1, 1)[0]
			rs = append(rs, Recipient{ServiceID: ex.id, IdentityKey: ex.key.PublicKey()})
			excluded = append(excluded, ex.id)
		}
		r.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
		c := randomContent(r, alice)
		sent, err := EncryptMulti(nil, rs, alice.id, c)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseSent(sent)
		if err != nil {
			t.Fatalf("#%d: parse: %v", iter, err)
		}
		if m.Version != 0x23 || len(m.Recipients) != len(accounts) || len(m.Excluded) != len(excluded) {
			t.Fatalf("#%d: version %#x, %d recipients, %d excluded", iter, m.Version, len(m.Recipients), len(m.Excluded))
		}
		// Recipients in the order given, excluded ones apart.
		var want []Recipient
		var wantExcluded []ServiceID
		for _, rc := range rs {
			if len(rc.Devices) > 0 {
				want = append(want, rc)
			} else {
				wantExcluded = append(wantExcluded, rc.ServiceID)
			}
		}
		if !slices.Equal(m.Excluded, wantExcluded) {
			t.Fatalf("excluded %v, want %v", m.Excluded, wantExcluded)
		}
		for i, got := range m.Recipients {
			if got.ServiceID != want[i].ServiceID || !slices.Equal(got.Devices, want[i].Devices) {
				t.Fatalf("#%d recipient %d: %v %v, want %v %v", iter, i, got.ServiceID, got.Devices, want[i].ServiceID, want[i].Devices)
			}
			var acct account
			for _, a := range accounts {
				if a.id == got.ServiceID {
					acct = a
				}
			}
			received := m.ForRecipient(i)
			if received[0] != 0x22 {
				t.Fatalf("received version %#x", received[0])
			}
			dec, err := Decrypt(received, acct.key)
			if err != nil {
				t.Fatalf("#%d recipient %d: %v", iter, i, err)
			}
			sameContent(t, dec, c)
			// Another recipient's message does not open with this key.
			other := m.ForRecipient((i + 1) % len(m.Recipients))
			if len(m.Recipients) > 1 {
				if _, err := Decrypt(other, acct.key); !errors.Is(err, ErrDecryption) {
					t.Fatalf("another recipient's message: %v", err)
				}
			}
		}
	}
}

// TestSentLayout checks a SentMessage byte by byte: version, count, each recipient's
// service id, devices (the high bit of the registration id field saying another
// follows) and 48 bytes of keys, then excluded recipients with a 0 marker, then the
// 32-byte ephemeral key and the AES-GCM-SIV ciphertext with its 16-byte tag.
func TestSentLayout(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	a, _ := NewACI(bobUUID)
	b, _ := ParseServiceID("PNI:" + testUUID)
	x, _ := NewACI("00000000-0000-4000-8000-000000000001")
	ka, kb, kx := newKey(t), newKey(t), newKey(t)
	rs := []Recipient{
		{ServiceID: x, IdentityKey: kx.PublicKey()},
		{ServiceID: a, IdentityKey: ka.PublicKey(), Devices: []Device{{1, 0x3fff}, {127, 5}}},
		{ServiceID: b, IdentityKey: kb.PublicKey(), Devices: []Device{{2, 0x1234}}},
	}
	c := alice.content(TypeSenderKey, []byte("hello"))
	sent, err := EncryptMulti(nil, rs, alice.id, c)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	want = append(want, 0x23, 3)
	want = append(want, a[:]...)
	want = append(want, 1, 0xbf, 0xff, 127, 0x00, 0x05)
	keysA := len(want)
	want = append(want, make([]byte, 48)...)
	want = append(want, b[:]...)
	want = append(want, 2, 0x12, 0x34)
	keysB := len(want)
	want = append(want, make([]byte, 48)...)
	want = append(want, x[:]...)
	want = append(want, 0)
	shared := len(want)
	if len(sent) != shared+32+len(c.Bytes())+16 {
		t.Fatalf("length %d, want %d", len(sent), shared+32+len(c.Bytes())+16)
	}
	masked := bytes.Clone(sent[:shared])
	clear(masked[keysA : keysA+48])
	clear(masked[keysB : keysB+48])
	if !bytes.Equal(masked, want) {
		t.Fatalf("got  %x\nwant %x", masked, want)
	}
	m, err := ParseSent(sent)
	if err != nil {
		t.Fatal(err)
	}
	got := m.ForRecipient(1)
	wantB := append(append([]byte{0x22}, sent[keysB:keysB+48]...), sent[shared:]...)
	if !bytes.Equal(got, wantB) {
		t.Fatal("ReceivedMessage is not version, the recipient's keys and the shared bytes")
	}
	if m.Recipients[1].ServiceID != b || m.Recipients[1].ServiceID.String() != "PNI:"+testUUID {
		t.Fatalf("PNI recipient read as %v", m.Recipients[1].ServiceID)
	}
}

func TestV2Refusals(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	r := rand.New(rand.NewPCG(3, 3))
	accounts := newAccounts(t, r, 2, 2)
	c := alice.content(TypeSenderKey, []byte("group message"))
	sent, err := EncryptMulti(nil, recipientsOf(accounts), alice.id, c)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseSent(sent)
	if err != nil {
		t.Fatal(err)
	}
	received := m.ForRecipient(0)
	key := accounts[0].key
	for i := 1; i < len(received); i++ {
		for bit := range 8 {
			bad := bytes.Clone(received)
			bad[i] ^= 1 << bit
			if _, err := Decrypt(bad, key); err == nil {
				t.Fatalf("byte %d bit %d flipped: decrypted", i, bit)
			}
		}
	}
	for n := 1; n < len(received); n++ {
		if _, err := Decrypt(received[:n], key); err == nil {
			t.Fatalf("truncated to %d: decrypted", n)
		}
	}
	if _, err := Decrypt(received, alice.id); !errors.Is(err, ErrDecryption) {
		t.Fatalf("opened by a non-recipient: %v", err)
	}

	// Sealed by a key other than the certificate's: the tag gives it away.
	forged, err := encryptMulti(nil, recipientsOf(accounts), newKey(t), c.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	fm, err := ParseSent(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decrypt(fm.ForRecipient(0), key); !errors.Is(err, ErrDecryption) {
		t.Fatalf("someone else's certificate: %v", err)
	}

	good := recipientsOf(accounts)
	dup := slices.Clone(good)
	dup[1].ServiceID = dup[0].ServiceID
	pni := slices.Clone(good)
	pni[0].ServiceID[0] = 2
	for name, rs := range map[string][]Recipient{
		"none":          nil,
		"all excluded":  {{ServiceID: good[0].ServiceID}},
		"listed twice":  dup,
		"unknown kind":  pni,
		"device 0":      {{ServiceID: good[0].ServiceID, IdentityKey: good[0].IdentityKey, Devices: []Device{{0, 1}}}},
		"device 128":    {{ServiceID: good[0].ServiceID, IdentityKey: good[0].IdentityKey, Devices: []Device{{128, 1}}}},
		"device twice":  {{ServiceID: good[0].ServiceID, IdentityKey: good[0].IdentityKey, Devices: []Device{{3, 1}, {3, 2}}}},
		"registration":  {{ServiceID: good[0].ServiceID, IdentityKey: good[0].IdentityKey, Devices: []Device{{3, 0x4000}}}},
		"small-order":   {{ServiceID: good[0].ServiceID, Devices: []Device{{3, 1}}}},
		"excluded+dups": {good[0], {ServiceID: good[0].ServiceID}},
	} {
		if _, err := EncryptMulti(nil, rs, alice.id, c); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// sentBuilder writes SentMessages by hand, for the forms EncryptMulti never writes.
type sentBuilder []byte

func (s sentBuilder) recipient(id []byte, devices ...Device) sentBuilder {
	s = append(s, id...)
	for i, d := range devices {
		reg := uint16(d.RegistrationID)
		if i < len(devices)-1 {
			reg |= hasMoreDevices
		}
		s = append(s, byte(d.ID), byte(reg>>8), byte(reg))
	}
	if len(devices) == 0 {
		return append(s, 0)
	}
	return append(s, bytes.Repeat([]byte{byte(len(s))}, recipientKeySize)...)
}

func TestParseSentForms(t *testing.T) {
	a, _ := NewACI(testUUID)
	b, _ := NewACI(bobUUID)
	tail := make([]byte, 32+20)
	start := func(version byte, n uint64) sentBuilder {
		return protowire.AppendVarint(sentBuilder{version}, n)
	}

	// Version 0x22 names recipients by UUID alone: they are ACIs.
	m, err := ParseSent(append(start(0x22, 2).recipient(a[1:], Device{1, 7}).recipient(b[1:], Device{2, 8}, Device{3, 9}), tail...))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 0x22 || len(m.Recipients) != 2 || m.Recipients[0].ServiceID != a || m.Recipients[1].ServiceID != b ||
		!slices.Equal(m.Recipients[1].Devices, []Device{{2, 8}, {3, 9}}) {
		t.Fatalf("%+v", m)
	}

	// A recipient listed twice with devices: devices gathered, first key material kept.
	msg := append(start(0x23, 3).recipient(a[:], Device{1, 1}).recipient(b[:], Device{5, 5}).recipient(a[:], Device{2, 2}), tail...)
	m, err = ParseSent(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Recipients) != 2 || !slices.Equal(m.Recipients[0].Devices, []Device{{1, 1}, {2, 2}}) {
		t.Fatalf("%+v", m.Recipients)
	}
	if got := m.ForRecipient(0); got[1] != byte(2+17+3) || len(got) != 1+48+len(tail) {
		t.Fatalf("first key material not kept: %x", got[:4])
	}

	// The unused bit of the registration field is ignored.
	msg = append(start(0x23, 1), a[:]...)
	msg = append(msg, 4, 0x40|0x01, 0x02)
	msg = append(msg, make([]byte, 48)...)
	if m, err = ParseSent(append(msg, tail...)); err != nil || m.Recipients[0].Devices[0] != (Device{4, 0x0102}) {
		t.Fatalf("%+v, %v", m, err)
	}

	// Zero recipients parse (libsignal accepts them); the shared part must still be there.
	if m, err = ParseSent(append(start(0x23, 0), tail[:32]...)); err != nil || len(m.Recipients) != 0 {
		t.Fatalf("no recipients: %v", err)
	}

	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":              {nil, ErrMalformed},
		"version 0x11":       {append(start(0x11, 1).recipient(a[:], Device{1, 1}), tail...), ErrUnknownVersion},
		"version 0x24":       {append(start(0x24, 1).recipient(a[:], Device{1, 1}), tail...), ErrUnknownVersion},
		"count too large":    {append(start(0x23, 2).recipient(a[:], Device{1, 1}), tail...)[:1+1+17+3+48+31], ErrMalformed},
		"huge count":         {append(start(0x23, 1<<40), tail...), ErrMalformed},
		"bad varint":         {append([]byte{0x23, 0x80}, 0x80), ErrMalformed},
		"unknown kind":       {append(start(0x23, 1).recipient(append([]byte{2}, a[1:]...), Device{1, 1}), tail...), ErrMalformed},
		"device 128":         {append(start(0x23, 1).recipient(a[:], Device{128, 1}), tail...), ErrMalformed},
		"device 0 after one": {append(start(0x23, 1).recipient(a[:], Device{1, 1}, Device{0, 1}), tail...), ErrMalformed},
		"excluded twice":     {append(start(0x23, 2).recipient(a[:]).recipient(a[:]), tail...), ErrMalformed},
		"excluded and sent":  {append(start(0x23, 2).recipient(a[:]).recipient(a[:], Device{1, 1}), tail...), ErrMalformed},
		"sent and excluded":  {append(start(0x23, 2).recipient(a[:], Device{1, 1}).recipient(a[:]), tail...), ErrMalformed},
		"no ephemeral key":   {append(start(0x23, 1).recipient(a[:], Device{1, 1}), tail[:31]...), ErrMalformed},
	} {
		if _, err := ParseSent(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}

	// Every truncation of a real message short of the ephemeral key is refused.
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	sent, err := EncryptMulti(nil, recipientsOf(newAccounts(t, rand.New(rand.NewPCG(4, 4)), 3, 3)), alice.id, alice.content(TypeSenderKey, nil))
	if err != nil {
		t.Fatal(err)
	}
	full, _ := ParseSent(sent)
	for n := range full.shared + 32 {
		if _, err := ParseSent(sent[:n]); err == nil {
			t.Fatalf("truncated to %d of %d: parsed", n, len(sent))
		}
	}
}

func TestParseSentKeepsNoAlias(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	accounts := newAccounts(t, rand.New(rand.NewPCG(5, 5)), 2, 2)
	sent, err := EncryptMulti(nil, recipientsOf(accounts), alice.id, alice.content(TypeSenderKey, []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseSent(sent)
	if err != nil {
		t.Fatal(err)
	}
	clear(sent)
	for i, rc := range m.Recipients {
		for _, a := range accounts {
			if a.id == rc.ServiceID {
				if _, err := Decrypt(m.ForRecipient(i), a.key); err != nil {
					t.Fatal(fmt.Errorf("a parsed message depends on the caller's buffer: %w", err))
				}
			}
		}
	}
}

// TestEncryptMultiParallel: the per-recipient work spread over goroutines gives the same
// bytes as done on one, and a bad key in any chunk is reported.
func TestEncryptMultiParallel(t *testing.T) {
	pki := newPKI(t, 1)
	alice := newParty(t, pki, testUUID, 3)
	accounts := newAccounts(t, rand.New(rand.NewPCG(6, 6)), 50, 2)
	rs := recipientsOf(accounts)
	c := alice.content(TypeSenderKey, []byte("to many"))
	seal := func(procs int) []byte {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		sent, err := EncryptMulti(bytes.NewReader(make([]byte, 32)), rs, alice.id, c)
		if err != nil {
			t.Fatal(err)
		}
		return sent
	}
	one := seal(1)
	for _, procs := range []int{2, 3, 8} {
		if !bytes.Equal(seal(procs), one) {
			t.Fatalf("GOMAXPROCS=%d: different bytes", procs)
		}
	}
	m, err := ParseSent(one)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range accounts {
		if _, err := Decrypt(m.ForRecipient(i), a.key); err != nil {
			t.Fatalf("recipient %d: %v", i, err)
		}
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, bad := range []int{0, 17, 49} {
		broken := slices.Clone(rs)
		broken[bad].IdentityKey = keys.PublicKey{} // small order: no agreement
		if _, err := EncryptMulti(nil, broken, alice.id, c); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("bad key at %d: %v", bad, err)
		}
	}
}

// TestParseSentRefusesNonMinimalCount: libsignal reads a recipient count with
// a non-minimal varint from another offset than its value says; such a
// message is refused rather than split differently.
func TestParseSentRefusesNonMinimalCount(t *testing.T) {
	if _, err := ParseSent([]byte{0x23, 0x81, 0x00, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseSent = %v, want ErrMalformed", err)
	}
}
