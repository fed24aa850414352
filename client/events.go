package client

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
)

// Event is what Receive hands to its handler: *Message or *IdentityChanged.
type Event interface{ isEvent() }

// Message is a message received and decrypted.
type Message struct {
	ID string // the envelope id
	// From is the sender's username: the one this device knows for the
	// sender's account, or the server's label for an account it does not
	// know.
	From       string
	FromDevice uint32    // sender device
	Sent       time.Time // the sender's timestamp (inside the encrypted content)
	Received   time.Time // when the server queued it
	Text       string
	// IdentityChanged: the sender's identity key differs from the one known
	// before (an *IdentityChanged event came just before the first such
	// message). For a verified contact, every message under a key the user
	// has not verified is marked.
	IdentityChanged bool
}

func (*Message) isEvent() {}

// String describes the message without its text.
func (m *Message) String() string {
	return fmt.Sprintf("message %s from %s.%d [redacted]", m.ID, m.From, m.FromDevice)
}

// LogValue describes the message without its text.
func (m *Message) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", m.ID), slog.String("from", m.From),
		slog.Any("from_device", m.FromDevice), slog.String("text", "[redacted]"))
}

// IdentityChanged tells that a contact's identity key changed: their safety
// number is different now. It comes just before the first message under the
// new key. For a contact not verified, the new key has been accepted (trust on
// first use). For a verified contact (Verified true) it has not: it is kept
// aside, SafetyNumber shows the number over it, and Send refuses the contact
// with ErrUntrustedIdentity until Verify accepts that number.
type IdentityChanged struct {
	Username string
	Verified bool // the contact was verified before
}

func (*IdentityChanged) isEvent() {}

// Inbox item kinds, in the order they are stored for one envelope.
const (
	kindIdentityChanged = 1
	kindMessage         = 2
)

// inboxMessage is a Message as the inbox stores it.
type inboxMessage struct {
	ID              string `json:"id"`
	From            string `json:"from"`
	FromDevice      uint32 `json:"from_device"`
	Sent            int64  `json:"sent"`
	Received        int64  `json:"received"`
	Text            string `json:"text"`
	IdentityChanged bool   `json:"identity_changed,omitempty"`
}

// inboxIdentity is an IdentityChanged as the inbox stores it.
type inboxIdentity struct {
	Username string `json:"username"`
	Verified bool   `json:"verified,omitempty"`
}

// encodeEvent makes the inbox item for an event of one envelope.
func encodeEvent(envelopeID string, ev Event) (*profile.InboxItem, error) {
	var (
		kind int
		v    any
	)
	switch ev := ev.(type) {
	case *Message:
		kind = kindMessage
		v = &inboxMessage{ID: ev.ID, From: ev.From, FromDevice: ev.FromDevice,
			Sent: ev.Sent.UnixMilli(), Received: ev.Received.UnixMilli(), Text: ev.Text, IdentityChanged: ev.IdentityChanged}
	case *IdentityChanged:
		kind = kindIdentityChanged
		v = &inboxIdentity{Username: ev.Username, Verified: ev.Verified}
	default:
		return nil, fmt.Errorf("client: unknown event %T", ev)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("client: encoding an event: %v", err)
	}
	return &profile.InboxItem{EnvelopeID: envelopeID, Kind: kind, Data: b}, nil
}

// decodeEvent is the inverse of encodeEvent.
func decodeEvent(it *profile.InboxItem) (Event, error) {
	switch it.Kind {
	case kindMessage:
		var m inboxMessage
		if err := json.Unmarshal(it.Data, &m); err != nil {
			return nil, fmt.Errorf("client: corrupt inbox entry: %v", err)
		}
		return &Message{ID: m.ID, From: m.From, FromDevice: m.FromDevice, Sent: time.UnixMilli(m.Sent),
			Received: time.UnixMilli(m.Received), Text: m.Text, IdentityChanged: m.IdentityChanged}, nil
	case kindIdentityChanged:
		var ic inboxIdentity
		if err := json.Unmarshal(it.Data, &ic); err != nil {
			return nil, fmt.Errorf("client: corrupt inbox entry: %v", err)
		}
		return &IdentityChanged{Username: ic.Username, Verified: ic.Verified}, nil
	}
	return nil, fmt.Errorf("client: inbox entry of unknown kind %d", it.Kind)
}
