package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"

	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	mfprotocol "go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	mfsession "go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/keyhelper"
)

// Both parties of every conversation. Service-id names, so that Doorless binds the
// addresses into the MAC of its first messages as libsignal does.
var (
	aliceAddr = session.Address{Name: "a0000000-0000-4000-8000-000000000001", DeviceID: 1}
	bobAddr   = session.Address{Name: "b0000000-0000-4000-8000-000000000002", DeviceID: 1}
	benchNow  = time.Unix(1_700_000_000, 0)
)

// Prekey ids every device uses.
const (
	signedPreKeyID  = 1
	kyberPreKeyID   = 2
	oneTimePreKeyID = 3
)

// ---- Doorless ----

// dlStore is a session.PreKeyStore over maps. It never deletes: DecryptPreKey leaves
// deleting consumed prekeys to the caller, and the benchmarks reuse them.
type dlStore struct {
	preKeys map[uint32]*keys.PreKey
	signed  map[uint32]*keys.SignedPreKey
	kyber   map[uint32]*keys.KyberPreKey
}

var _ session.PreKeyStore = (*dlStore)(nil)

func (s *dlStore) PreKey(id uint32) (*keys.PreKey, error) {
	if k, ok := s.preKeys[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: one-time prekey %d", session.ErrMissingPreKey, id)
}

func (s *dlStore) SignedPreKey(id uint32) (*keys.SignedPreKey, error) {
	if k, ok := s.signed[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: signed prekey %d", session.ErrMissingPreKey, id)
}

func (s *dlStore) KyberPreKey(id uint32) (*keys.KyberPreKey, error) {
	if k, ok := s.kyber[id]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kyber prekey %d", session.ErrMissingPreKey, id)
}

// dlDevice is one Doorless device with its prekeys and its record for the peer.
type dlDevice struct {
	id     *session.Identity
	addr   session.Address
	store  *dlStore
	bundle *session.Bundle
	rec    *session.Record
}

func newDLDevice(tb testing.TB, addr session.Address) *dlDevice {
	tb.Helper()
	kp, err := keys.GenerateKeyPair(nil)
	check(tb, err)
	reg, err := keys.GenerateRegistrationID(nil)
	check(tb, err)
	spk, err := keys.GenerateSignedPreKey(kp.Private, signedPreKeyID, benchNow, nil)
	check(tb, err)
	kpk, err := keys.GenerateKyberPreKey(kp.Private, kyberPreKeyID, keys.KEMKyber1024, true, benchNow, nil)
	check(tb, err)
	opk, err := keys.GeneratePreKey(oneTimePreKeyID, nil)
	check(tb, err)
	d := &dlDevice{
		id:   &session.Identity{KeyPair: kp, RegistrationID: reg},
		addr: addr,
		store: &dlStore{
			preKeys: map[uint32]*keys.PreKey{opk.ID: opk},
			signed:  map[uint32]*keys.SignedPreKey{spk.ID: spk},
			kyber:   map[uint32]*keys.KyberPreKey{kpk.ID: kpk},
		},
		rec: &session.Record{},
	}
	d.bundle = &session.Bundle{
		RegistrationID: reg, DeviceID: addr.DeviceID,
		HasPreKey: true, PreKeyID: opk.ID, PreKey: opk.KeyPair.Public,
		SignedPreKeyID: spk.ID, SignedPreKey: spk.KeyPair.Public, SignedPreKeySignature: spk.Signature,
		KyberPreKeyID: kpk.ID, KyberPreKey: kpk.KeyPair.Public, KyberPreKeySignature: kpk.Signature,
		IdentityKey: kp.Public,
	}
	return d
}

// dlSend encrypts pt from d to peer and returns the message bytes.
func (d *dlDevice) send(tb testing.TB, peer *dlDevice, pt []byte) (session.MessageType, []byte) {
	typ, ct, err := d.rec.Encrypt(pt, benchNow, nil)
	check(tb, err)
	return typ, ct
}

// receive decrypts a message from peer.
func (d *dlDevice) receive(tb testing.TB, peer *dlDevice, typ session.MessageType, ct []byte) []byte {
	if typ == session.TypePreKey {
		m, err := session.ParsePreKeySignalMessage(ct)
		check(tb, err)
		pt, _, err := d.rec.DecryptPreKey(m, d.id, d.addr, peer.addr, d.store, nil)
		check(tb, err)
		return pt
	}
	m, err := session.ParseSignalMessage(ct)
	check(tb, err)
	pt, err := d.rec.Decrypt(m, nil)
	check(tb, err)
	return pt
}

// dlConversation returns Alice and Bob with an established Doorless session: Alice
// has sent the PreKeySignalMessage and Bob has replied, so both now send
// SignalMessages.
func dlConversation(tb testing.TB) (alice, bob *dlDevice) {
	tb.Helper()
	alice, bob = newDLDevice(tb, aliceAddr), newDLDevice(tb, bobAddr)
	check(tb, alice.rec.InitiateSession(alice.id, alice.addr, bob.addr, bob.bundle, benchNow, nil))
	typ, ct := alice.send(tb, bob, []byte("hello"))
	bob.receive(tb, alice, typ, ct)
	typ, ct = bob.send(tb, alice, []byte("reply"))
	alice.receive(tb, bob, typ, ct)
	typ, ct = alice.send(tb, bob, []byte("ack"))
	if typ != session.TypeWhisper {
		tb.Fatalf("doorless: session not acknowledged (%v)", typ)
	}
	bob.receive(tb, alice, typ, ct)
	return alice, bob
}

// ---- go.mau.fi/libsignal ----
//
// Minimal in-memory stores (the library's own test stores are not importable). They
// keep records in memory without serializing them, as the library's tests do.

var mfSerializer = serialize.NewProtoBufSerializer()

type mfSessionStore struct {
	m map[*mfprotocol.SignalAddress]*record.Session
}

func (s *mfSessionStore) LoadSession(_ context.Context, a *mfprotocol.SignalAddress) (*record.Session, error) {
	if r, ok := s.m[a]; ok {
		return r, nil
	}
	r := record.NewSession(mfSerializer.Session, mfSerializer.State)
	s.m[a] = r
	return r, nil
}

func (s *mfSessionStore) GetSubDeviceSessions(context.Context, string) ([]uint32, error) {
	return nil, nil
}

func (s *mfSessionStore) StoreSession(_ context.Context, a *mfprotocol.SignalAddress, r *record.Session) error {
	s.m[a] = r
	return nil
}

func (s *mfSessionStore) ContainsSession(_ context.Context, a *mfprotocol.SignalAddress) (bool, error) {
	_, ok := s.m[a]
	return ok, nil
}

func (s *mfSessionStore) DeleteSession(_ context.Context, a *mfprotocol.SignalAddress) error {
	delete(s.m, a)
	return nil
}

func (s *mfSessionStore) DeleteAllSessions(context.Context) error {
	clear(s.m)
	return nil
}

// mfPreKeyStore never deletes, so that the benchmarks can reuse the one-time prekey
// (as dlStore does).
type mfPreKeyStore struct{ m map[uint32]*record.PreKey }

func (s *mfPreKeyStore) LoadPreKey(_ context.Context, id uint32) (*record.PreKey, error) {
	return s.m[id], nil
}

func (s *mfPreKeyStore) StorePreKey(_ context.Context, id uint32, r *record.PreKey) error {
	s.m[id] = r
	return nil
}

func (s *mfPreKeyStore) ContainsPreKey(_ context.Context, id uint32) (bool, error) {
	_, ok := s.m[id]
	return ok, nil
}

func (s *mfPreKeyStore) RemovePreKey(context.Context, uint32) error { return nil }

type mfSignedPreKeyStore struct {
	m map[uint32]*record.SignedPreKey
}

func (s *mfSignedPreKeyStore) LoadSignedPreKey(_ context.Context, id uint32) (*record.SignedPreKey, error) {
	return s.m[id], nil
}

func (s *mfSignedPreKeyStore) LoadSignedPreKeys(context.Context) ([]*record.SignedPreKey, error) {
	out := make([]*record.SignedPreKey, 0, len(s.m))
	for _, r := range s.m {
		out = append(out, r)
	}
	return out, nil
}

func (s *mfSignedPreKeyStore) StoreSignedPreKey(_ context.Context, id uint32, r *record.SignedPreKey) error {
	s.m[id] = r
	return nil
}

func (s *mfSignedPreKeyStore) ContainsSignedPreKey(_ context.Context, id uint32) (bool, error) {
	_, ok := s.m[id]
	return ok, nil
}

func (s *mfSignedPreKeyStore) RemoveSignedPreKey(_ context.Context, id uint32) error {
	delete(s.m, id)
	return nil
}

// mfIdentityStore trusts on first use, comparing raw keys (cheaper than the
// library's test store, which compares hex fingerprints).
type mfIdentityStore struct {
	kp      *identity.KeyPair
	regID   uint32
	trusted map[*mfprotocol.SignalAddress]*identity.Key
}

func (s *mfIdentityStore) GetIdentityKeyPair() *identity.KeyPair { return s.kp }
func (s *mfIdentityStore) GetLocalRegistrationID() uint32        { return s.regID }

func (s *mfIdentityStore) SaveIdentity(_ context.Context, a *mfprotocol.SignalAddress, k *identity.Key) error {
	s.trusted[a] = k
	return nil
}

func (s *mfIdentityStore) IsTrustedIdentity(_ context.Context, a *mfprotocol.SignalAddress, k *identity.Key) (bool, error) {
	t, ok := s.trusted[a]
	return !ok || t.PublicKey().PublicKey() == k.PublicKey().PublicKey(), nil
}

// mfDevice is one go.mau.fi/libsignal device.
type mfDevice struct {
	addr     *mfprotocol.SignalAddress
	sessions *mfSessionStore
	preKeys  *mfPreKeyStore
	signed   *mfSignedPreKeyStore
	ids      *mfIdentityStore
	bundle   *prekey.Bundle

	builder *mfsession.Builder // towards the peer
	cipher  *mfsession.Cipher  // towards the peer
}

func newMFDevice(tb testing.TB, name string) *mfDevice {
	tb.Helper()
	idKP, err := keyhelper.GenerateIdentityKeyPair()
	check(tb, err)
	regID := keyhelper.GenerateRegistrationID()
	pks, err := keyhelper.GeneratePreKeys(oneTimePreKeyID, oneTimePreKeyID, mfSerializer.PreKeyRecord)
	check(tb, err)
	spk, err := keyhelper.GenerateSignedPreKey(idKP, signedPreKeyID, mfSerializer.SignedPreKeyRecord)
	check(tb, err)
	d := &mfDevice{
		addr:     mfprotocol.NewSignalAddress(name, 1),
		sessions: &mfSessionStore{m: map[*mfprotocol.SignalAddress]*record.Session{}},
		preKeys:  &mfPreKeyStore{m: map[uint32]*record.PreKey{oneTimePreKeyID: pks[0]}},
		signed:   &mfSignedPreKeyStore{m: map[uint32]*record.SignedPreKey{signedPreKeyID: spk}},
		ids:      &mfIdentityStore{kp: idKP, regID: regID, trusted: map[*mfprotocol.SignalAddress]*identity.Key{}},
	}
	d.bundle = prekey.NewBundle(regID, 1, pks[0].ID(), spk.ID(),
		pks[0].KeyPair().PublicKey(), spk.KeyPair().PublicKey(), spk.Signature(), idKP.PublicKey())
	return d
}

// connect sets up d's session builder and cipher towards peer.
func (d *mfDevice) connect(peer *mfDevice) {
	d.builder = mfsession.NewBuilder(d.sessions, d.preKeys, d.signed, d.ids, peer.addr, mfSerializer)
	d.cipher = mfsession.NewCipher(d.builder, peer.addr)
}

// send encrypts pt for the peer and returns the serialized message.
func (d *mfDevice) send(tb testing.TB, pt []byte) mfprotocol.CiphertextMessage {
	m, err := d.cipher.Encrypt(context.Background(), pt)
	check(tb, err)
	return m
}

// receive parses and decrypts a serialized message of the given type.
func (d *mfDevice) receive(tb testing.TB, prekeyMsg bool, b []byte) []byte {
	ctx := context.Background()
	if prekeyMsg {
		m, err := mfprotocol.NewPreKeySignalMessageFromBytes(b, mfSerializer.PreKeySignalMessage, mfSerializer.SignalMessage)
		check(tb, err)
		pt, err := d.cipher.DecryptMessage(ctx, m)
		check(tb, err)
		return pt
	}
	m, err := mfprotocol.NewSignalMessageFromBytes(b, mfSerializer.SignalMessage)
	check(tb, err)
	pt, err := d.cipher.Decrypt(ctx, m)
	check(tb, err)
	return pt
}

// mfConversation returns Alice and Bob with an established go.mau.fi session (X3DH,
// message version 3), acknowledged in both directions.
func mfConversation(tb testing.TB) (alice, bob *mfDevice) {
	tb.Helper()
	alice, bob = newMFDevice(tb, "alice"), newMFDevice(tb, "bob")
	alice.connect(bob)
	bob.connect(alice)
	check(tb, alice.builder.ProcessBundle(context.Background(), bob.bundle))
	m := alice.send(tb, []byte("hello"))
	if m.Type() != mfprotocol.PREKEY_TYPE {
		tb.Fatalf("go.mau.fi: first message of type %d", m.Type())
	}
	bob.receive(tb, true, m.Serialize())
	m = bob.send(tb, []byte("reply"))
	alice.receive(tb, false, m.Serialize())
	m = alice.send(tb, []byte("ack"))
	if m.Type() != mfprotocol.WHISPER_TYPE {
		tb.Fatalf("go.mau.fi: session not acknowledged (%d)", m.Type())
	}
	bob.receive(tb, false, m.Serialize())
	return alice, bob
}

func check(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
