// Package franking is Doorless's message franking: the cryptography that
// lets a recipient report an abusive message to the operator with proof of
// who sent it and what it said, while the operator still cannot read
// messages nobody reports.
//
// It follows Facebook Messenger's scheme ("Messenger Secret Conversations",
// technical whitepaper, 2017; analysed by Grubbs, Lu and Ristenpart,
// "Message Franking via Committing Authenticated Encryption", CRYPTO 2017),
// with one addition for sealed sender:
//
//   - The sender draws a fresh franking key for each message and commits to
//     the message with it: commitment = HMAC-SHA256(franking key, label ‖
//     committed bytes). The key travels inside the end-to-end encryption;
//     the commitment travels outside, where the server sees it.
//   - The server, when it queues the message for a device, binds the
//     commitment to the delivery with a key only it holds: the delivery tag
//     covers the commitment, the recipient and its device, the sender (none
//     for sealed sender), the envelope type and the server's timestamp. It
//     keeps nothing: the tag travels with the envelope.
//   - Because a sealed-sender envelope names no sender, the server cannot
//     bind one. Instead the sender binds the commitment to its own account
//     with its account key, a key the server derives for each account and
//     gives to that account's devices (AccountKey): sender tag =
//     HMAC-SHA256(account key, label ‖ commitment ‖ context), carried inside
//     the encryption, so the server sees it only when the message is
//     reported. The context (ContextFor) is the recipient's account id for a
//     direct message and the group id for a group message.
//   - The recipient recomputes the commitment from what it decrypted and
//     drops a message whose commitment does not match (Verify), so every
//     message it displays can be reported. A report reveals the content
//     (all of it, the sender's profile key included), the franking key, the envelope's commitment and delivery tag, and the
//     claimed sender; the server checks all three MACs.
//
// What a verified report proves depends on how the message came:
//
//   - Named (the envelope names its source): the server's own delivery tag
//     says that the sender's device sent this commitment to the reporter's
//     device; the content opens it.
//   - Sealed, direct: the sender bound the commitment to the reporter's
//     account (DirectContext), and the delivery tag says it reached the
//     reporter's device. A report cannot be moved to another account.
//   - Sealed, to a group: the sender bound the commitment to the group
//     (GroupContext) only. The report proves that the sender sent this
//     content to that group and that an envelope carrying its commitment
//     reached the reporter's device; it does NOT prove that the sender
//     addressed the reporter. Anyone can have the server deliver any
//     commitment to any account (a sealed envelope to oneself, or to a
//     puppet account, carrying it), so a member who holds the content can
//     have an outsider, or a string of throwaway accounts, report the
//     message as if it had been sent to them. A binding to each recipient
//     would have to sit inside each recipient's own encryption, which the
//     libsignal-compatible multi-recipient format (one shared payload for
//     all) has no room for. The server therefore marks such reports, and
//     the content's own timestamp (the sender's clock, in the committed
//     bytes) bounds how long the message can be reported, however late it
//     is delivered again.
//
// The account key never rotates: it is a function of the server's secret
// and the account id. Every device ever linked to the account fetched it,
// removed or stolen ones included, and the server (or whoever holds its
// franking secret) can derive it. Such a holder can make up sealed
// messages bound to the account, have them delivered to an account of its
// own and report them from there: the reports name the account as their
// sender, for as long as the account exists. Reports of named messages
// are unaffected (the server binds their sender at sending time, from the
// device's credentials, which removal revokes). docs/threat-model.md
// (known limits) weighs this.
//
// The commitment is HMAC-SHA256 with a full 32-byte output, which is
// committing: finding two (key, message) pairs with one commitment is
// finding an HMAC-SHA256 collision. That is what keeps a sender from
// showing one text and having another reported (the "invisible
// salamanders" attack on franking over AES-GCM, Dodis, Grubbs, Ristenpart
// and Woodage, CRYPTO 2018), whatever the cipher underneath. docs/protocol.md
// explains how this interacts with each of Doorless's ciphers.
//
// The package holds pure functions and a Server type that is immutable after
// NewServer; everything is safe for concurrent use.
package franking

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/doorless/doorless/internal/content"
)

// Sizes of the scheme.
const (
	KeySize        = 32 // a message's franking key
	CommitmentSize = 32 // HMAC-SHA256
	TagSize        = 32 // delivery and sender tags, HMAC-SHA256
	SecretSize     = 32 // the server's franking secret
)

// Domain-separation labels, one per MAC, each ended by a zero byte before
// the data it labels. They are Doorless's own.
const (
	commitmentLabel = "doorless franking commitment v1"
	senderLabel     = "doorless franking sender v1"
	deliveryLabel   = "doorless franking delivery v1"
	// HKDF info strings for the server's two keys.
	deliveryKeyInfo = "doorless franking delivery key v1"
	accountKeyInfo  = "doorless franking account key v1"
)

// Context kinds: the byte that starts a sender tag's context.
const (
	contextDirect = 'd' // the recipient's account id follows
	contextGroup  = 'g' // the group id follows
)

var (
	// ErrBadSecret is returned by NewServer for a secret of the wrong size.
	ErrBadSecret = errors.New("franking: secret must be 32 bytes")

	// Report outcomes (VerifyReport): each names what does not hold.

	// ErrUnfranked: the reported content is not franked content.
	ErrUnfranked = errors.New("franking: reported content carries no franking")
	// ErrAltered: the content does not open the envelope's commitment.
	ErrAltered = errors.New("franking: reported content does not match its commitment")
	// ErrForgedDelivery: the delivery tag is not the server's for this
	// commitment, recipient, sender, type and time.
	ErrForgedDelivery = errors.New("franking: delivery tag does not verify")
	// ErrSenderUnproven: the claimed sender did not bind the commitment
	// (sealed sender), or is not the envelope's source.
	ErrSenderUnproven = errors.New("franking: the claimed sender is not proven")
)

// Key is one message's franking key.
type Key [KeySize]byte

// String hides the key.
func (Key) String() string { return "franking.Key([redacted])" }

// NewKey draws a fresh franking key from crypto/rand.
func NewKey() Key {
	var k Key
	rand.Read(k[:]) // never fails
	return k
}

func mac(key []byte, label string, parts ...[]byte) [32]byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	h.Write([]byte{0})
	for _, p := range parts {
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Commit returns the commitment to committed under k.
func Commit(k Key, committed []byte) [CommitmentSize]byte {
	return mac(k[:], commitmentLabel, committed)
}

// Verify reports whether commitment is the commitment to committed under
// k, in constant time.
func Verify(k Key, committed, commitment []byte) bool {
	c := Commit(k, committed)
	return hmac.Equal(c[:], commitment)
}

// ContextFor is the sender-tag context of content c sent to the account
// with the given id: GroupContext(c.GroupID) when c has a group id, else
// DirectContext(recipientAccountID). The sender franks under it, and
// VerifyReport checks the sender tag under it (with the reporter as the
// recipient).
func ContextFor(c *content.Content, recipientAccountID string) []byte {
	if c.GroupID != nil {
		return GroupContext(c.GroupID)
	}
	return DirectContext(recipientAccountID)
}

// DirectContext is the sender-tag context of a direct message to the
// account with the given id (api.ValidUUID form; the string is bound as
// given).
func DirectContext(recipientAccountID string) []byte {
	return append([]byte{contextDirect}, recipientAccountID...)
}

// GroupContext is the sender-tag context of a message to a group.
func GroupContext(groupID []byte) []byte {
	return append([]byte{contextGroup}, groupID...)
}

// SenderTag binds a commitment to the sender's account, for the given
// context, under the account key the server gave the sender's devices.
func SenderTag(accountKey [KeySize]byte, commitment []byte, context []byte) [TagSize]byte {
	return mac(accountKey[:], senderLabel, lengthPrefixed(commitment), lengthPrefixed(context))
}

func lengthPrefixed(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b))), b...)
}

// Delivery is what the server binds a commitment to when it queues an
// envelope: the recipient device, the sender as the envelope names it
// (empty and 0 for sealed sender), the envelope type and the server's
// timestamp.
type Delivery struct {
	Commitment      []byte
	Recipient       string // account id
	RecipientDevice uint32
	Source          string // account id; empty for sealed sender
	SourceDevice    uint32
	EnvelopeType    int
	ServerTimestamp int64 // Unix milliseconds
}

func (d *Delivery) encode() []byte {
	var b []byte
	for _, s := range [][]byte{d.Commitment, []byte(d.Recipient), []byte(d.Source)} {
		b = append(b, lengthPrefixed(s)...)
	}
	b = binary.BigEndian.AppendUint32(b, d.RecipientDevice)
	b = binary.BigEndian.AppendUint32(b, d.SourceDevice)
	b = binary.BigEndian.AppendUint32(b, uint32(d.EnvelopeType))
	return binary.BigEndian.AppendUint64(b, uint64(d.ServerTimestamp))
}

// Server holds the operator's franking keys, derived from one secret: the
// delivery key, and the root from which each account's key is derived.
type Server struct {
	delivery    [32]byte
	accountRoot [32]byte
}

// NewServer derives the server's keys from its secret (SecretSize bytes,
// kept in its data directory).
func NewServer(secret []byte) (*Server, error) {
	if len(secret) != SecretSize {
		return nil, ErrBadSecret
	}
	s := new(Server)
	for _, k := range []struct {
		out  *[32]byte
		info string
	}{{&s.delivery, deliveryKeyInfo}, {&s.accountRoot, accountKeyInfo}} {
		b, err := hkdf.Key(sha256.New, secret, nil, k.info, 32)
		if err != nil {
			return nil, fmt.Errorf("franking: %v", err)
		}
		copy(k.out[:], b)
	}
	return s, nil
}

// NewSecret draws a server secret from r (crypto/rand.Reader in use).
func NewSecret(r io.Reader) ([]byte, error) {
	b := make([]byte, SecretSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("franking: %v", err)
	}
	return b, nil
}

// String hides the keys.
func (*Server) String() string { return "franking.Server([redacted])" }

// AccountKey is the account key of the account with the given id. It is
// the same for as long as the account and the server's secret exist (it
// is never rotated; see the package doc).
func (s *Server) AccountKey(accountID string) [KeySize]byte {
	return mac(s.accountRoot[:], accountKeyInfo, []byte(accountID))
}

// Tag is the delivery tag of d.
func (s *Server) Tag(d *Delivery) [TagSize]byte {
	return mac(s.delivery[:], deliveryLabel, d.encode())
}

// CheckTag reports whether tag is d's delivery tag, in constant time.
func (s *Server) CheckTag(d *Delivery, tag []byte) bool {
	t := s.Tag(d)
	return hmac.Equal(t[:], tag)
}

// CheckSender reports whether tag binds commitment to the account with the
// given id for context, in constant time.
func (s *Server) CheckSender(accountID string, commitment, context, tag []byte) bool {
	t := SenderTag(s.AccountKey(accountID), commitment, context)
	return hmac.Equal(t[:], tag)
}

// Report is what a recipient reveals to report a message it received.
type Report struct {
	// Content is the padded plaintext as decrypted (internal/content).
	Content []byte
	// Delivery is the envelope as delivered to the reporter: its
	// commitment, the reporter's account and device, the source it named
	// (none for sealed sender), its type and server timestamp.
	Delivery Delivery
	// DeliveryTag is the envelope's delivery tag.
	DeliveryTag []byte
	// Sender is the claimed sender's account id: for sealed sender, the
	// one its sender certificate named; otherwise it must be the source.
	Sender string
}

// Verified is a report that verified.
type Verified struct {
	Sender  string // account id
	Sealed  bool   // the message came under sealed sender
	Content *content.Content
}

// VerifyReport checks a report: the content is well-formed franked content
// that opens the commitment, the delivery tag is the server's for that
// commitment delivered to the reporter, and the sender is proven: by the
// delivery tag when the envelope named its source, by the sender tag inside
// the content under sealed sender. It returns the first failure as one of
// the sentinels above (ErrUnfranked also for content that does not parse).
// For a sealed group message the sender is proven to have sent the content
// to the group, not to the reporter (see the package doc).
// Replays are the caller's to refuse: a report is the same report when its
// recipient and commitment are.
func (s *Server) VerifyReport(r *Report) (*Verified, error) {
	c, err := content.Parse(r.Content)
	if err != nil || c.Franking == nil {
		return nil, ErrUnfranked
	}
	if !Verify(c.Franking.Key, c.Committed(), r.Delivery.Commitment) {
		return nil, ErrAltered
	}
	if !s.CheckTag(&r.Delivery, r.DeliveryTag) {
		return nil, ErrForgedDelivery
	}
	v := &Verified{Sender: r.Sender, Sealed: r.Delivery.Source == "", Content: c}
	if !v.Sealed {
		if r.Sender != r.Delivery.Source {
			return nil, ErrSenderUnproven
		}
		return v, nil
	}
	ctx := ContextFor(c, r.Delivery.Recipient)
	if r.Sender == "" || !s.CheckSender(r.Sender, r.Delivery.Commitment, ctx, c.Franking.SenderTag[:]) {
		return nil, ErrSenderUnproven
	}
	return v, nil
}

// Frank franks c for sending, replacing any franking it had: it draws a
// franking key, commits to c under it, binds the commitment to the sender's
// account for context (ContextFor) with the account key
// the server gave the sender, and sets c.Franking. It returns the
// commitment, which travels outside the encryption; c is then ready for
// content.Encode.
func Frank(c *content.Content, accountKey [KeySize]byte, context []byte) [CommitmentSize]byte {
	k := NewKey()
	c.Franking = &content.Franking{Key: k} // Committed needs the field present
	commitment := Commit(k, c.Committed())
	c.Franking.SenderTag = SenderTag(accountKey, commitment[:], context)
	return commitment
}

// Opens reports whether c, as decrypted, opens the commitment its envelope
// carried: it is franked, and the commitment is to its bytes under its key.
// A recipient drops a message for which it does not.
func Opens(c *content.Content, commitment []byte) bool {
	return c.Franking != nil && Verify(c.Franking.Key, c.Committed(), commitment)
}
