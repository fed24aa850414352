package client

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/doorless/doorless/client/internal/group"
	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

// Sealed sender: a message to another account goes sealed (envelope type 6)
// whenever this device holds that account's unidentified access key, which
// comes from the account's profile key, which its devices put in every
// message they send (inside the end-to-end encryption). The server then
// learns the recipient only. Without the key (the first message to a new
// contact, or a contact who never wrote), or when the server refuses the key
// (the contact's key changed), the message goes authenticated.
//
// The sealed message carries a sender certificate the server issued to this
// device (cached, renewed an hour before it expires), which chains to the
// server's trust root, pinned by this device the first time it sees it.

// Settings this file keeps in the profile.
const (
	settingTrustRoot  = "sealed.trust_root"
	settingSenderCert = "sealed.sender_certificate"
)

// certRenewal: a cached sender certificate is renewed when it has less than
// this left, so that a message in flight does not arrive with one expired.
const certRenewal = time.Hour

// errNoSealedSender: the server issues no sender certificates.
var errNoSealedSender = errors.New("client: the server does not offer sealed sender")

// accessKeyFrom derives an unidentified access key from a profile key as
// Signal does: the first 16 bytes of AES-256-GCM, under the profile key and
// a zero nonce, of 16 zero bytes.
func accessKeyFrom(profileKey []byte) [api.UnidentifiedAccessKeySize]byte {
	var k [api.UnidentifiedAccessKeySize]byte
	block, err := aes.NewCipher(profileKey)
	if err != nil {
		panic("client: profile key size") // profile keys are checked on the way in
	}
	gcm, _ := cipher.NewGCM(block) // never fails for AES
	ct := gcm.Seal(nil, make([]byte, gcm.NonceSize()), make([]byte, len(k)), nil)
	copy(k[:], ct)
	return k
}

// newProfileKey makes a random profile key.
func newProfileKey() []byte {
	k := make([]byte, profile.ProfileKeySize)
	if _, err := randReader.Read(k); err != nil {
		panic("client: crypto/rand failed")
	}
	return k
}

// ownProfileKey returns this account's profile key, which goes into every
// message sent. A profile from before sealed sender has none: its primary
// device makes one and gives the server its access key (other devices wait
// to be given it, so that two devices do not race to set different keys).
func (c *Client) ownProfileKey(ctx context.Context) ([]byte, error) {
	var p *profile.ProfileKey
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		p, err = tx.ProfileKey(c.accountID)
		return err
	})
	if err != nil || p != nil && p.Key != nil || c.deviceID != api.PrimaryDeviceID {
		if p == nil {
			return nil, err
		}
		return p.Key, err
	}
	if p == nil {
		p = new(profile.ProfileKey)
	}
	p.Key = newProfileKey()
	ak := accessKeyFrom(p.Key)
	attrs := &api.AccountAttributes{UnidentifiedAccessKey: ak[:], UnrestrictedUnidentifiedAccess: p.Unrestricted}
	if err := c.do(ctx, http.MethodPut, api.PathAttributes, attrs, nil); err != nil {
		return nil, fmt.Errorf("client: setting the access key: %w", err)
	}
	err = c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
		return tx.PutProfileKey(c.accountID, p, time.Now())
	})
	return p.Key, err
}

// addProfileKey puts this account's profile key in content about to be
// sent. Without one (a linked device not yet given it, or a server that
// refused the key) the content goes without: the message is still sent.
func (c *Client) addProfileKey(ctx context.Context, cont *content.Content) {
	if key, err := c.ownProfileKey(ctx); err == nil && key != nil {
		cont.ProfileKey = key
	}
}

// trustRoot returns the pinned trust root, pinning the server's the first
// time.
func (c *Client) trustRoot(ctx context.Context) (keys.PublicKey, error) {
	if root, err := c.pinnedTrustRoot(ctx); err != nil || root != nil {
		if root == nil {
			return keys.PublicKey{}, err
		}
		return *root, nil
	}
	var resp api.TrustRootResponse
	err := doJSON(ctx, c.hc, http.MethodGet, c.serverURL+api.PathTrustRoot, "", "", nil, &resp)
	if _, ok := isCode(err, api.CodeNotFound); ok {
		return keys.PublicKey{}, errNoSealedSender
	}
	if err != nil {
		return keys.PublicKey{}, fmt.Errorf("client: fetching the trust root: %w", err)
	}
	root, err := keys.ParsePublicKey(resp.PublicKey)
	if err != nil {
		return keys.PublicKey{}, errors.New("client: the server's trust root is malformed")
	}
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		// Another process may have pinned one meanwhile: the first stays.
		if b, err := tx.Setting(settingTrustRoot); err != nil || b != nil {
			return err
		}
		return tx.PutSetting(settingTrustRoot, root.Bytes())
	})
	if err != nil {
		return keys.PublicKey{}, err
	}
	pinned, err := c.pinnedTrustRoot(ctx)
	if err != nil || pinned == nil {
		return keys.PublicKey{}, errors.Join(err, errors.New("client: no trust root pinned"))
	}
	return *pinned, nil
}

// pinnedTrustRoot reads the pinned trust root; nil if there is none yet.
func (c *Client) pinnedTrustRoot(ctx context.Context) (*keys.PublicKey, error) {
	var b []byte
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		b, err = tx.Setting(settingTrustRoot)
		return err
	})
	if err != nil || b == nil {
		return nil, err
	}
	root, err := keys.ParsePublicKey(b)
	if err != nil {
		return nil, errors.New("client: the pinned trust root is corrupt")
	}
	return &root, nil
}

// senderCertificate returns a sender certificate for this device with at
// least certRenewal left, from the profile or, failing that, the server.
func (c *Client) senderCertificate(ctx context.Context) (*sealedsender.SenderCertificate, error) {
	root, err := c.trustRoot(ctx)
	if err != nil {
		return nil, err
	}
	roots := []keys.PublicKey{root}
	var b []byte
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		b, err = tx.Setting(settingSenderCert)
		return err
	})
	if err != nil {
		return nil, err
	}
	if b != nil {
		if cert, err := sealedsender.ParseSenderCertificate(b); err == nil && cert.Validate(roots, time.Now().Add(certRenewal)) == nil {
			return cert, nil
		}
	}
	var resp api.SenderCertificateResponse
	err = c.do(ctx, http.MethodGet, api.PathSenderCertificate, nil, &resp)
	if _, ok := isCode(err, api.CodeNotFound); ok {
		return nil, errNoSealedSender
	}
	if err != nil {
		return nil, fmt.Errorf("client: fetching a sender certificate: %w", err)
	}
	cert, err := sealedsender.ParseSenderCertificate(resp.Certificate)
	if err != nil {
		return nil, errors.New("client: the server's sender certificate is malformed")
	}
	if err := cert.Validate(roots, time.Now()); err != nil {
		return nil, fmt.Errorf("client: the server's sender certificate does not validate: %v", err)
	}
	s := cert.Sender()
	if s.UUID != c.accountID || s.DeviceID != c.deviceID || !s.IdentityKey.Equal(c.identity.Public) {
		return nil, errors.New("client: the server's sender certificate is for someone else")
	}
	err = c.st.Update(ctx, func(tx *profile.Tx) error { return tx.PutSetting(settingSenderCert, cert.Bytes()) })
	return cert, err
}

// sealing returns what sealing a message to a user takes: the access key
// and the identity key the contact is trusted under. ok is false when this
// device holds no access key for the user and the user does not take sealed
// messages from anyone, or the key trusted is not one the transparency log
// was seen to hold; held tells whether the key is the account's own (not
// a random one for an account that takes any).
func (c *Client) sealing(ctx context.Context, username string) (ak [api.UnidentifiedAccessKeySize]byte, ik keys.PublicKey, ok, held bool, err error) {
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		ct, err := tx.Contact(username)
		if err != nil || ct == nil {
			return err
		}
		// Sealing encrypts to the contact's identity key: only to one
		// the transparency log was seen to hold. (Sends verify it
		// first; one that changed meanwhile goes authenticated.)
		if verified, err := ktVerified(tx, username, ct.AccountID, ct.IdentityKey); err != nil || !verified {
			return err
		}
		p, err := tx.ProfileKey(ct.AccountID)
		if err != nil || p == nil {
			return err
		}
		switch {
		case p.Key != nil:
			ak, held = accessKeyFrom(p.Key), true
		case p.Unrestricted:
			// Any key will do; a random one says nothing.
			randReader.Read(ak[:])
		default:
			return nil
		}
		ik, ok = ct.IdentityKey, true
		return nil
	})
	return ak, ik, ok, held, err
}

// sendMessages queues the messages of req for a user: sealed when this
// device holds the user's access key and the server offers sealed sender,
// authenticated otherwise (always for this account's own devices, which the
// server knows to be this account's anyway).
func (c *Client) sendMessages(ctx context.Context, username string, req *api.SendRequest) (*api.SendResponse, error) {
	if username == c.username {
		return c.putMessages(ctx, username, req, nil)
	}
	ak, ik, ok, _, err := c.sealing(ctx, username)
	if err != nil {
		return nil, err
	}
	if !ok {
		return c.putMessages(ctx, username, req, nil)
	}
	cert, err := c.senderCertificate(ctx)
	if errors.Is(err, errNoSealedSender) {
		return c.putMessages(ctx, username, req, nil)
	}
	if err != nil {
		return nil, err
	}
	sealed := *req
	sealed.Messages = make([]api.OutgoingMessage, len(req.Messages))
	for i, m := range req.Messages {
		usmc := &sealedsender.Content{
			Type:     sealedsender.MessageType(m.Type),
			Sender:   cert,
			Contents: m.Content,
			Hint:     sealedsender.HintResendable,
		}
		ct, err := sealedsender.Encrypt(randReader, ik, c.identity.Private, usmc)
		if err != nil {
			return nil, fmt.Errorf("client: sealing: %v", err)
		}
		sealed.Messages[i] = api.OutgoingMessage{DeviceID: m.DeviceID, RegistrationID: m.RegistrationID,
			Type: api.EnvelopeUnidentifiedSender, Content: ct}
	}
	resp, err := c.putMessages(ctx, username, &sealed, &ak)
	if _, denied := isCode(err, api.CodeUnidentifiedAccessDenied); denied {
		// The key is stale (the contact made a new one) or the contact
		// no longer takes sealed messages: forget it and send
		// authenticated. Their next message brings the new key.
		if err := c.forgetAccessKey(ctx, username); err != nil {
			return nil, err
		}
		return c.putMessages(ctx, username, req, nil)
	}
	return resp, err
}

// forgetAccessKey forgets a contact's profile key.
func (c *Client) forgetAccessKey(ctx context.Context, username string) error {
	return c.st.Update(ctx, func(tx *profile.Tx) error {
		ct, err := tx.Contact(username)
		if err != nil || ct == nil {
			return err
		}
		return tx.DeleteProfileKey(ct.AccountID)
	})
}

// keepProfileKey stores the profile key a message carried, inside
// processEnvelope's transaction. This account's own key comes from its own
// devices' transcripts only while this device has none (a device linked
// before its primary made one), and is never replaced that way.
func (c *Client) keepProfileKey(tx *profile.Tx, accountID string, key []byte, now time.Time) error {
	if key == nil {
		return nil
	}
	p, err := tx.ProfileKey(accountID)
	if err != nil {
		return err
	}
	if p == nil {
		p = new(profile.ProfileKey)
	}
	if accountID == c.accountID && p.Key != nil {
		return nil
	}
	p.Key = key
	return tx.PutProfileKey(accountID, p, now)
}

// unseal opens a sealed envelope inside processEnvelope's transaction and
// returns the envelope it carried, as if it had come with its sender named,
// and the identity key the sender sealed it with (the certificate's), which
// the inner message must be under. errDrop for anything that does not open
// or whose certificate does not chain to the pinned trust root.
func (c *Client) unseal(tx *profile.Tx, env *api.Envelope, now time.Time) (*api.Envelope, keys.PublicKey, error) {
	rb, err := tx.Setting(settingTrustRoot)
	if err != nil {
		return nil, keys.PublicKey{}, err
	}
	root, err := keys.ParsePublicKey(rb)
	if err != nil {
		return nil, keys.PublicKey{}, errDrop // no root pinned: nothing to check against
	}
	usmc, err := sealedsender.Decrypt(env.Content, c.identity.Private)
	if err != nil {
		return nil, keys.PublicKey{}, errDrop
	}
	if err := usmc.Sender.Validate([]keys.PublicKey{root}, now); err != nil {
		return nil, keys.PublicKey{}, errDrop
	}
	s := usmc.Sender.Sender()
	if s.UUID == c.accountID && s.DeviceID == c.deviceID || !api.ValidUUID(s.UUID) || !api.ValidUsername(s.Name) {
		return nil, keys.PublicKey{}, errDrop
	}
	switch usmc.Type {
	case sealedsender.TypeWhisper, sealedsender.TypePreKey, sealedsender.TypeSenderKey:
	default:
		return nil, keys.PublicKey{}, errDrop
	}
	inner := *env
	inner.Type = int(usmc.Type)
	inner.SourceAccount, inner.SourceDevice, inner.SourceUsername = s.UUID, s.DeviceID, s.Name
	inner.Content = usmc.Contents
	return &inner, s.IdentityKey, nil
}

// sendGroupMulti sends a sender-key message to the members it can reach in
// one sealed sender v2 request: those whose access keys this device holds,
// whose devices all have this device's sender key, other than this account.
// It returns how many devices it was queued for and the members left for
// one-by-one sending (all of them, if the server refuses the request: the
// one-by-one path follows device changes and falls back as needed). When
// the request's answer was lost however often it was repeated, it may have
// landed: sending again one by one could deliver twice, so those members
// are not retried and the error is returned.
func (c *Client) sendGroupMulti(ctx context.Context, g *localGroup, members []group.Member, skm, commitment []byte, ts int64) (int, []group.Member, error) {
	var (
		recips []sealedsender.Recipient
		keys   [][api.UnidentifiedAccessKeySize]byte
		rest   []group.Member
	)
	for _, mem := range members {
		if mem.AccountID == c.accountID {
			rest = append(rest, mem)
			continue
		}
		ak, ik, ok, held, err := c.sealing(ctx, mem.Username)
		if err != nil || !ok || !held {
			rest = append(rest, mem)
			continue
		}
		msgs, unshared, err := c.senderKeyMessages(ctx, g, mem, skm)
		if err != nil || unshared || len(msgs) == 0 {
			rest = append(rest, mem)
			continue
		}
		sid, err := sealedsender.NewACI(mem.AccountID)
		if err != nil {
			rest = append(rest, mem)
			continue
		}
		r := sealedsender.Recipient{ServiceID: sid, IdentityKey: ik}
		for _, m := range msgs {
			r.Devices = append(r.Devices, sealedsender.Device{ID: m.DeviceID, RegistrationID: m.RegistrationID})
		}
		recips = append(recips, r)
		keys = append(keys, ak)
	}
	if len(recips) < 2 {
		return 0, members, nil // one recipient: a one-recipient send is the same
	}
	cert, err := c.senderCertificate(ctx)
	if err != nil {
		return 0, members, nil
	}
	body, err := sealedsender.EncryptMulti(randReader, recips, c.identity.Private, &sealedsender.Content{
		Type: sealedsender.TypeSenderKey, Sender: cert, Contents: skm, Hint: sealedsender.HintResendable, GroupID: g.id[:],
	})
	if err != nil {
		return 0, members, nil
	}
	n, err := c.putMulti(ctx, body, api.CombineAccessKeys(keys...), ts, commitment)
	var te *transportError
	switch {
	case errors.As(err, &te) || ctx.Err() != nil:
		return 0, rest, fmt.Errorf("client: the group message may not have reached %d members: %w", len(recips), err)
	case err != nil:
		return 0, members, nil
	}
	return n, rest, nil
}

// putMulti makes one multi-recipient send, with the franking commitment
// of the content it carries, repeating it (same id) when its answer is
// lost; a "duplicate" answer to a repeat means it landed.
func (c *Client) putMulti(ctx context.Context, body []byte, key [api.UnidentifiedAccessKeySize]byte, ts int64, commitment []byte) (int, error) {
	q := url.Values{"id": {api.NewUUID()}, "timestamp": {strconv.FormatInt(ts, 10)},
		api.QueryFranking: {base64.RawURLEncoding.EncodeToString(commitment)}}
	u := c.serverURL + api.PathMultiRecipient + "?" + q.Encode()
	var lost bool
	for try := 0; ; try++ {
		var resp api.SendResponse
		err := doRequest(ctx, c.hc, http.MethodPut, u, func(r *http.Request) {
			r.Header.Set(api.HeaderUnidentifiedAccessKey, api.FormatUnidentifiedAccessKey(key))
			r.Header.Set("Content-Type", api.ContentTypeMultiRecipient)
		}, rawBody(body), &resp)
		if err == nil {
			return resp.Delivered, nil
		}
		if _, ok := isCode(err, api.CodeDuplicate); ok && lost {
			return 0, nil
		}
		var te *transportError
		if !errors.As(err, &te) || try == maxTransportRetries {
			return 0, err
		}
		lost = true
		if err := sleepCtx(ctx, time.Duration(250<<try)*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// keepUnrestricted records whether an account takes sealed messages from
// anyone, as the server said with its keys, keeping its profile key.
func keepUnrestricted(tx *profile.Tx, accountID string, unrestricted bool, now time.Time) error {
	p, err := tx.ProfileKey(accountID)
	if err != nil {
		return err
	}
	if p == nil {
		if !unrestricted {
			return nil
		}
		p = new(profile.ProfileKey)
	}
	if p.Unrestricted == unrestricted {
		return nil
	}
	p.Unrestricted = unrestricted
	return tx.PutProfileKey(accountID, p, now)
}
