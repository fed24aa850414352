package sealedsender

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"runtime"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/doorless/doorless/protocol/internal/gcmsiv"
	"github.com/doorless/doorless/protocol/internal/kdf"
	"github.com/doorless/doorless/protocol/keys"
)

// Version 2 labels and sizes (sealed_sender.rs, mod sealed_sender_v2). Every derivation
// is HKDF-SHA256 without salt, its label as the info.
const (
	// labelR derives the ephemeral private key from M (LABEL_R).
	labelR = "Sealed Sender v2: r (2023-08)"
	// labelK derives the AES-256-GCM-SIV key from M (LABEL_K).
	labelK = "Sealed Sender v2: K"
	// labelDH derives the pad that encrypts M for one recipient (LABEL_DH).
	labelDH = "Sealed Sender v2: DH"
	// labelDHSender derives the authentication tag binding the sender (LABEL_DH_S).
	labelDHSender = "Sealed Sender v2: DH-sender"

	// messageKeySize is M and each recipient's encrypted copy C_i (MESSAGE_KEY_LEN).
	messageKeySize = 32
	// authTagSize is each recipient's tag AT_i (AUTH_TAG_LEN).
	authTagSize = 16
	// rawKeySize is the ephemeral public key, written without its type byte
	// (PUBLIC_KEY_LEN).
	rawKeySize = 32
	// recipientKeySize is C_i ‖ AT_i.
	recipientKeySize = messageKeySize + authTagSize

	// v2ReceivedVersion starts a ReceivedMessage; the format has not changed since the
	// UUID-only SentMessage version, whose byte libsignal keeps for it
	// (SEALED_SENDER_V2_UUID_FULL_VERSION).
	v2ReceivedVersion = 0x22
	// v2SentVersionUUID starts a SentMessage that names recipients by ACI UUID alone
	// (SEALED_SENDER_V2_UUID_FULL_VERSION).
	v2SentVersionUUID = 0x22
	// v2SentVersion starts a SentMessage that names recipients by service id
	// (SEALED_SENDER_V2_SERVICE_ID_FULL_VERSION); EncryptMulti writes it.
	v2SentVersion = 0x23

	// registrationIDMask keeps the 14 bits of a registration id (VALID_REGISTRATION_ID_MASK).
	registrationIDMask = 0x3fff
	// hasMoreDevices marks a device entry that another follows.
	hasMoreDevices = 0x8000
	// excludedMarker follows an excluded recipient's service id, where a device id
	// would be: 0 is never a valid device id.
	excludedMarker = 0
)

// Device is one device of a multi-recipient message's recipient.
type Device struct {
	// ID is the device id, 1 to MaxDeviceID.
	ID uint32
	// RegistrationID is the device's 14-bit registration id, which the server checks
	// against the device it delivers to.
	RegistrationID uint32
}

// Recipient is one account a multi-recipient message is sealed to: its service id, its
// identity key (every device of an account shares it) and the devices the server is to
// deliver to. A Recipient with no devices is written as excluded: the server learns it
// was left out on purpose, and gets no key material for it.
type Recipient struct {
	ServiceID   ServiceID
	IdentityKey keys.PublicKey
	Devices     []Device
}

// hkdf32 is HKDF-SHA256 without salt, for version 2's derivations.
func hkdf32(out []byte, ikm []byte, label string) {
	kdf.HKDF(out, nil, ikm, []byte(label))
}

// v2Keys are what M determines: the ephemeral key pair and the content key.
type v2Keys struct {
	e *keys.PrivateKey
	k [32]byte
}

func deriveV2(m *[messageKeySize]byte) v2Keys {
	var r [32]byte
	hkdf32(r[:], m[:], labelR)
	e, _ := keys.NewPrivateKey(r[:]) // 32 bytes: cannot fail; clamped, as libsignal does
	clear(r[:])
	var k v2Keys
	k.e = e
	hkdf32(k.k[:], m[:], labelK)
	return k
}

// padInput is DH ‖ E ‖ R, the input of the pad that encrypts M for recipient R
// (apply_agreement_xor).
func padInput(dh *[32]byte, e, r keys.PublicKey) []byte {
	in := make([]byte, 0, 32+2*keys.PublicKeySize)
	in = append(in, dh[:]...)
	in = e.AppendBytes(in)
	return r.AppendBytes(in)
}

// authTag is AT = HKDF(DH(S, R) ‖ E ‖ C ‖ S ‖ R, label DH-sender), 16 bytes
// (compute_authentication_tag).
func authTag(dh *[32]byte, e keys.PublicKey, c []byte, s, r keys.PublicKey) [authTagSize]byte {
	in := make([]byte, 0, 32+3*keys.PublicKeySize+messageKeySize)
	in = append(in, dh[:]...)
	in = e.AppendBytes(in)
	in = append(in, c...)
	in = s.AppendBytes(in)
	in = r.AppendBytes(in)
	var at [authTagSize]byte
	hkdf32(at[:], in, labelDHSender)
	clear(in[:32])
	return at
}

// zeroNonce is AES-GCM-SIV's nonce in version 2: the key is used once.
var zeroNonce [gcmsiv.NonceSize]byte

// EncryptMulti seals c to many recipients at once (sealed sender version 2, libsignal's
// sealed_sender_multi_recipient_encrypt) and returns the SentMessage a client uploads:
// the server splits it with ParseSent and SentMessage.ForRecipient. The sender's
// identity private key must be the identity key of c's certificate. Randomness comes
// from r (crypto/rand when nil).
//
// Recipients are written in order, those without devices (excluded) after the others,
// as libsignal writes them. A service id may appear only once; device ids must be in
// range and distinct within a recipient, registration ids must fit in 14 bits, and at
// least one recipient must have a device. With a dozen or more recipients that have
// devices, the two key agreements per recipient run on several goroutines; the output
// does not depend on how many.
func EncryptMulti(r io.Reader, recipients []Recipient, sender *keys.PrivateKey, c *Content) ([]byte, error) {
	if err := c.check(sender); err != nil {
		return nil, err
	}
	if err := checkRecipients(recipients); err != nil {
		return nil, err
	}
	return encryptMulti(r, recipients, sender, c.Bytes())
}

// encryptMulti seals serialized content to checked recipients; tests call it to seal
// what EncryptMulti refuses.
func encryptMulti(r io.Reader, recipients []Recipient, sender *keys.PrivateKey, content []byte) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	var m [messageKeySize]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return nil, fmt.Errorf("sealedsender: reading randomness: %w", err)
	}
	defer clear(m[:])
	k := deriveV2(&m)
	defer clear(k.k[:])
	ePub := k.e.PublicKey()
	sPub := sender.PublicKey()

	size := 1 + protowire.SizeVarint(uint64(len(recipients))) + rawKeySize + len(content) + gcmsiv.TagSize
	for _, rc := range recipients {
		size += serviceIDSize + 1 + 3*len(rc.Devices) + recipientKeySize
	}
	// The two agreements per recipient are the cost; they are spread over the CPUs, as
	// libsignal spreads them, and the bytes written in order afterwards.
	var included []int
	for i, rc := range recipients {
		if len(rc.Devices) > 0 {
			included = append(included, i)
		}
	}
	keyMaterial := make([]byte, len(included)*recipientKeySize)
	err := parallelChunks(len(included), func(lo, hi int) error {
		for j := lo; j < hi; j++ {
			rc := &recipients[included[j]]
			if err := recipientKeys(keyMaterial[j*recipientKeySize:(j+1)*recipientKeySize], &m, k.e, ePub, sender, sPub, rc.IdentityKey); err != nil {
				return fmt.Errorf("%w: identity key of %v: %v", ErrInvalidArgument, rc.ServiceID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	out := make([]byte, 0, size)
	out = append(out, v2SentVersion)
	out = protowire.AppendVarint(out, uint64(len(recipients)))
	for j, i := range included {
		rc := &recipients[i]
		out = append(out, rc.ServiceID[:]...)
		for i, d := range rc.Devices {
			reg := uint16(d.RegistrationID)
			if i < len(rc.Devices)-1 {
				reg |= hasMoreDevices
			}
			out = append(out, byte(d.ID), byte(reg>>8), byte(reg))
		}
		out = append(out, keyMaterial[j*recipientKeySize:(j+1)*recipientKeySize]...)
	}
	for _, rc := range recipients {
		if len(rc.Devices) == 0 {
			out = append(out, rc.ServiceID[:]...)
			out = append(out, excludedMarker)
		}
	}
	out = append(out, ePub[:]...)
	aead, _ := gcmsiv.New(k.k[:]) // 32 bytes: cannot fail
	return aead.Seal(out, zeroNonce[:], content, nil), nil
}

// recipientKeys writes C ‖ AT for the recipient identity key r into dst (48 bytes).
func recipientKeys(dst []byte, m *[messageKeySize]byte, e *keys.PrivateKey, ePub keys.PublicKey, s *keys.PrivateKey, sPub, r keys.PublicKey) error {
	dh, err := e.Agree(r)
	if err != nil {
		return err
	}
	c := dst[:messageKeySize]
	hkdf32(c, padInput(&dh, ePub, r), labelDH)
	subtle.XORBytes(c, c, m[:])
	if dh, err = s.Agree(r); err != nil {
		return err
	}
	at := authTag(&dh, ePub, c, sPub, r)
	clear(dh[:])
	copy(dst[messageKeySize:], at[:])
	return nil
}

// minChunk is the fewest recipients worth a goroutine of their own (libsignal does not
// fan out below 6 either).
const minChunk = 6

// parallelChunks calls f on consecutive ranges covering [0, n), concurrently on up to
// GOMAXPROCS goroutines, and returns the error of the first range that failed.
func parallelChunks(n int, f func(lo, hi int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n/minChunk)
	if workers <= 1 {
		return f(0, n)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { errs[w] = f(w*n/workers, (w+1)*n/workers) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkRecipients(recipients []Recipient) error {
	seen := make(map[ServiceID]bool, len(recipients))
	withDevices := 0
	for _, rc := range recipients {
		if _, ok := parseServiceIDBinary(rc.ServiceID[:]); !ok {
			return fmt.Errorf("%w: service id of unknown kind %d", ErrInvalidArgument, rc.ServiceID[0])
		}
		if seen[rc.ServiceID] {
			return fmt.Errorf("%w: recipient %v listed twice", ErrInvalidArgument, rc.ServiceID)
		}
		seen[rc.ServiceID] = true
		if len(rc.Devices) > 0 {
			withDevices++
		}
		var ids [MaxDeviceID + 1]bool
		for _, d := range rc.Devices {
			if d.ID < minDeviceID || d.ID > MaxDeviceID {
				return fmt.Errorf("%w: recipient %v: device id %d out of range", ErrInvalidArgument, rc.ServiceID, d.ID)
			}
			if ids[d.ID] {
				return fmt.Errorf("%w: recipient %v: device %d listed twice", ErrInvalidArgument, rc.ServiceID, d.ID)
			}
			ids[d.ID] = true
			if d.RegistrationID&^registrationIDMask != 0 {
				return fmt.Errorf("%w: recipient %v: registration id %d out of range", ErrInvalidArgument, rc.ServiceID, d.RegistrationID)
			}
		}
	}
	if withDevices == 0 {
		return fmt.Errorf("%w: no recipient device", ErrInvalidArgument)
	}
	return nil
}

// decryptV2 opens a ReceivedMessage (after its version byte): C ‖ AT ‖ E ‖ ciphertext.
func decryptV2(b []byte, local *keys.PrivateKey) (*Content, error) {
	if len(b) < recipientKeySize+rawKeySize {
		return nil, fmt.Errorf("%w: short version 2 message", ErrMalformed)
	}
	c := b[:messageKeySize]
	at := b[messageKeySize:recipientKeySize]
	e := keys.PublicKey(b[recipientKeySize : recipientKeySize+rawKeySize])
	ciphertext := b[recipientKeySize+rawKeySize:]

	localPub := local.PublicKey()
	dh, err := local.Agree(e)
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key agreement", ErrDecryption)
	}
	var m [messageKeySize]byte
	hkdf32(m[:], padInput(&dh, e, localPub), labelDH)
	clear(dh[:])
	subtle.XORBytes(m[:], m[:], c)
	k := deriveV2(&m)
	clear(m[:])
	defer clear(k.k[:])
	if !k.e.PublicKey().Equal(e) {
		return nil, fmt.Errorf("%w: derived ephemeral key does not match the message's", ErrDecryption)
	}
	aead, _ := gcmsiv.New(k.k[:])
	content, err := aead.Open(nil, zeroNonce[:], ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: content does not authenticate", ErrDecryption)
	}
	ct, err := ParseContent(content)
	if err != nil {
		return nil, err
	}
	sender := ct.Sender.sender.IdentityKey
	if dh, err = local.Agree(sender); err != nil {
		return nil, fmt.Errorf("%w: sender key agreement", ErrDecryption)
	}
	want := authTag(&dh, e, c, sender, localPub)
	clear(dh[:])
	if subtle.ConstantTimeCompare(want[:], at) != 1 {
		return nil, fmt.Errorf("%w: sender certificate key does not match the authentication tag", ErrDecryption)
	}
	return ct, nil
}
