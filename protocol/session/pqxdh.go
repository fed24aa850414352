package session

import (
	"fmt"
	"io"
	"time"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/spqr"
)

// Identity is the local device's long-term identity.
type Identity struct {
	KeyPair        keys.KeyPair
	RegistrationID uint32
}

// Bundle is a remote device's prekey bundle, as a server hands it out.
type Bundle struct {
	RegistrationID uint32
	DeviceID       uint32

	HasPreKey bool // whether a one-time prekey is included
	PreKeyID  uint32
	PreKey    keys.PublicKey

	SignedPreKeyID        uint32
	SignedPreKey          keys.PublicKey
	SignedPreKeySignature []byte

	KyberPreKeyID        uint32
	KyberPreKey          *keys.KEMPublicKey
	KyberPreKeySignature []byte

	IdentityKey keys.PublicKey
}

// Verify checks both prekey signatures against the bundle's identity key.
func (b *Bundle) Verify() error {
	if !b.IdentityKey.Verify(b.SignedPreKeySignature, b.SignedPreKey.AppendBytes(nil)) {
		return fmt.Errorf("%w: signed prekey", ErrBadSignature)
	}
	if b.KyberPreKey == nil {
		return fmt.Errorf("%w: bundle has no Kyber prekey", ErrInvalidMessage)
	}
	if !b.IdentityKey.Verify(b.KyberPreKeySignature, b.KyberPreKey.Bytes()) {
		return fmt.Errorf("%w: Kyber prekey", ErrBadSignature)
	}
	return nil
}

// PreKeyStore gives the responder its prekeys by id. A missing key is reported with an
// error that wraps ErrMissingPreKey.
type PreKeyStore interface {
	PreKey(id uint32) (*keys.PreKey, error)
	SignedPreKey(id uint32) (*keys.SignedPreKey, error)
	KyberPreKey(id uint32) (*keys.KyberPreKey, error)
}

// PreKeysUsed names the prekeys a PreKeySignalMessage consumed. The caller deletes the
// one-time prekey and a one-time Kyber prekey once the message has been handled; a
// last-resort Kyber prekey stays (the caller should remember the pair of Kyber prekey
// id and base key, to refuse a replayed first message after its sessions are gone).
type PreKeysUsed struct {
	PreKeyID       uint32
	HasPreKeyID    bool
	SignedPreKeyID uint32
	KyberPreKeyID  uint32
	BaseKey        keys.PublicKey
}

// isSelfSession is IdentityKey::is_same_account: the same identity key under the same
// service id.
func isSelfSession(local, remote Address, localKey, remoteKey keys.PublicKey) bool {
	if !localKey.Equal(remoteKey) {
		return false
	}
	a, ok1 := serviceIDBinary(local.Name)
	b, ok2 := serviceIDBinary(remote.Name)
	return ok1 && ok2 && a == b
}

// InitiateSession starts a new session with the device whose bundle b is, with PQXDH
// as the initiator. The current session, if any, is archived. The first messages sent
// are PreKeySignalMessages until the peer replies; when both addresses are service ids
// they are bound into those messages' MAC, as libsignal does. The caller must have
// decided to trust b.IdentityKey.
func (r *Record) InitiateSession(local *Identity, localAddr, remoteAddr Address, b *Bundle, now time.Time, rnd io.Reader) error {
	if err := b.Verify(); err != nil {
		return err
	}
	rnd = randReader(rnd)
	base, err := keys.GenerateKeyPair(rnd)
	if err != nil {
		return err
	}

	// DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
	// DH4 = DH(EK_A, OPK_B), then the KEM shared secret (PQXDH section 3.3).
	secret := make([]byte, 0, 32*6)
	secret = append(secret, pqxdhDiscontinuity[:]...)
	for _, step := range []struct {
		priv *keys.PrivateKey
		pub  keys.PublicKey
		use  bool
	}{
		{local.KeyPair.Private, b.SignedPreKey, true},
		{base.Private, b.IdentityKey, true},
		{base.Private, b.SignedPreKey, true},
		{base.Private, b.PreKey, b.HasPreKey},
	} {
		if !step.use {
			continue
		}
		dh, err := step.priv.Agree(step.pub)
		if err != nil {
			return fmt.Errorf("%w: bundle key: %v", ErrInvalidMessage, err)
		}
		secret = append(secret, dh[:]...)
	}
	ss, kemCT, err := b.KyberPreKey.Encapsulate(rnd)
	if err != nil {
		return err
	}
	secret = append(secret, ss...)
	hk := deriveHandshakeKeys(secret)
	clear(secret)

	// The initiator's first sending chain comes from a ratchet step against the
	// signed prekey; the PQXDH chain key is the receiving chain for the responder's
	// first ratchet key, the signed prekey itself.
	sending, err := keys.GenerateKeyPair(rnd)
	if err != nil {
		return err
	}
	dh, err := sending.Private.Agree(b.SignedPreKey)
	if err != nil {
		return fmt.Errorf("%w: signed prekey: %v", ErrInvalidMessage, err)
	}
	root, sendChain := rootStep(&hk.root, &dh)

	self := isSelfSession(localAddr, remoteAddr, local.KeyPair.Public, b.IdentityKey)
	addresses, _ := encodeAddresses(localAddr, remoteAddr)
	pqr, err := spqr.NewState(spqrParams(&hk.pqr, spqr.A2B, self))
	if err != nil {
		return fmt.Errorf("session: post-quantum ratchet: %w", err)
	}
	s := &state{
		version:        CurrentVersion,
		localIdentity:  local.KeyPair.Public,
		remoteIdentity: b.IdentityKey,
		localRegID:     local.RegistrationID,
		remoteRegID:    b.RegistrationID,
		aliceBaseKey:   base.Public,
		selfSession:    self,
		root:           root,
		sender:         chain{ratchetKey: sending.Public, key: sendChain},
		senderPrivate:  sending.Private,
		receivers:      []chain{{ratchetKey: b.SignedPreKey, key: hk.chain}},
		pqr:            pqr,
		noPQR:          testWithoutPQR,
		pending: &pendingPreKey{
			preKeyID:        b.PreKeyID,
			hasPreKeyID:     b.HasPreKey,
			signedPreKeyID:  b.SignedPreKeyID,
			kyberPreKeyID:   b.KyberPreKeyID,
			kyberCiphertext: kemCT,
			baseKey:         base.Public,
			createdAt:       now,
			addresses:       addresses,
		},
	}
	r.promote(s)
	return nil
}

// respond creates the responder's session for a PreKeySignalMessage (process_prekey).
func respond(local *Identity, localAddr, remoteAddr Address, m *PreKeySignalMessage, store PreKeyStore) (*state, error) {
	if !m.baseKey.IsCanonical() {
		return nil, fmt.Errorf("%w: base key is not canonical", ErrInvalidMessage)
	}
	spk, err := store.SignedPreKey(m.body.SignedPreKeyID)
	if err != nil {
		return nil, err
	}
	kpk, err := store.KyberPreKey(m.body.KyberPreKeyID)
	if err != nil {
		return nil, err
	}
	var opk *keys.PreKey
	if m.body.HasPreKeyID {
		if opk, err = store.PreKey(m.body.PreKeyID); err != nil {
			return nil, err
		}
	}

	secret := make([]byte, 0, 32*6)
	secret = append(secret, pqxdhDiscontinuity[:]...)
	for _, step := range []struct {
		priv *keys.PrivateKey
		pub  keys.PublicKey
	}{
		{spk.KeyPair.Private, m.identityKey},
		{local.KeyPair.Private, m.baseKey},
		{spk.KeyPair.Private, m.baseKey},
	} {
		dh, err := step.priv.Agree(step.pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
		}
		secret = append(secret, dh[:]...)
	}
	if opk != nil {
		dh, err := opk.KeyPair.Private.Agree(m.baseKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
		}
		secret = append(secret, dh[:]...)
	}
	ss, err := kpk.KeyPair.Private.Decapsulate(m.body.KyberCiphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: Kyber ciphertext: %v", ErrInvalidMessage, err)
	}
	secret = append(secret, ss...)
	hk := deriveHandshakeKeys(secret)
	clear(secret)

	self := isSelfSession(localAddr, remoteAddr, local.KeyPair.Public, m.identityKey)
	pqr, err := spqr.NewState(spqrParams(&hk.pqr, spqr.B2A, self))
	if err != nil {
		return nil, fmt.Errorf("session: post-quantum ratchet: %w", err)
	}
	return &state{
		version:        CurrentVersion,
		localIdentity:  local.KeyPair.Public,
		remoteIdentity: m.identityKey,
		localRegID:     local.RegistrationID,
		remoteRegID:    m.body.RegistrationID,
		aliceBaseKey:   m.baseKey,
		selfSession:    self,
		root:           hk.root,
		sender:         chain{ratchetKey: spk.KeyPair.Public, key: hk.chain},
		senderPrivate:  spk.KeyPair.Private,
		pqr:            pqr,
		noPQR:          testWithoutPQR,
	}, nil
}
