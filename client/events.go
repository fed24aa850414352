package client

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
)

// Event is what Receive hands to its handler: *Message, *IdentityChanged,
// *GroupUpdate, *Receipt, *TransparencyAlert, *DroppedMessage or
// *LegalNotice.
type Event interface{ isEvent() }

// Message is a message received and decrypted, or one this account sent.
type Message struct {
	// ID identifies the message on this device: the envelope id for a
	// message received, the send id for one sent from this device.
	ID string
	// From is the sender's username: the one this device knows for the
	// sender's account, or the server's label for an account it does not
	// know. For a message this account sent, it is this account's username.
	From       string
	FromDevice uint32    // sender device
	Sent       time.Time // the sender's timestamp (inside the encrypted content)
	Received   time.Time // when the server queued it (for one sent: when it was sent)
	Text       string
	// Outgoing: this account sent the message, from this device or (a
	// transcript the sending device made for its other devices) another.
	// To names the recipient of a one-to-one message sent.
	Outgoing bool
	To       string
	// Group is the group the message was sent to, nil for a one-to-one
	// message.
	Group *GroupRef
	// Attachment is the file the message carries, nil if none.
	Attachment *Attachment
	// ExpiresIn is the conversation's disappearing-message timer the message
	// was sent under (0: it does not disappear); Expires is when it
	// disappears from this device.
	ExpiresIn time.Duration
	Expires   time.Time
	// TimerUpdate: the message sets the conversation's timer to ExpiresIn
	// (0: off).
	TimerUpdate bool
	// IdentityChanged: the sender's identity key differs from the one known
	// before (an *IdentityChanged event came just before the first such
	// message). For a verified contact, every message under a key the user
	// has not verified is marked.
	IdentityChanged bool
	// DeliveredTo and ReadBy name, for a message this account sent, the
	// recipients whose devices sent a delivery or a read receipt for it.
	DeliveredTo []string
	ReadBy      []string
}

func (*Message) isEvent() {}

// Receipt tells that a recipient's device got (Read false) or displayed
// (Read true) messages this account sent; Messages are their IDs in the
// history.
type Receipt struct {
	From     string   `json:"from"`
	Read     bool     `json:"read,omitempty"`
	Messages []string `json:"messages"`
}

func (*Receipt) isEvent() {}

// Conversation names the conversation the message belongs to: the other
// user's username, or "#" and the group's title.
func (m *Message) Conversation() string {
	switch {
	case m.Group != nil:
		return "#" + m.Group.Title
	case m.Outgoing:
		return m.To
	}
	return m.From
}

// String describes the message without its text.
func (m *Message) String() string {
	return fmt.Sprintf("message %s from %s.%d [redacted]", m.ID, m.From, m.FromDevice)
}

// LogValue describes the message without its text.
func (m *Message) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", m.ID), slog.String("from", m.From),
		slog.Any("from_device", m.FromDevice), slog.String("text", "[redacted]"))
}

// GroupRef names a group.
type GroupRef struct {
	ID    string `json:"id"` // hex
	Title string `json:"title"`
}

// Attachment is a file carried by a message. A file received is saved,
// decrypted and verified, under the profile's downloads directory (Path),
// unless it is view-once: then it stays encrypted in the profile until
// OpenViewOnce hands it over once.
type Attachment struct {
	FileName    string `json:"file_name"`              // sanitised: a plain name, no directories
	ContentType string `json:"content_type,omitempty"` // detected from the content on receipt, never the sender's word
	Size        int64  `json:"size"`
	Path        string `json:"path,omitempty"` // where the file was saved; "" when not saved
	ViewOnce    bool   `json:"view_once,omitempty"`
	Opened      bool   `json:"opened,omitempty"` // a view-once attachment already opened
	Err         string `json:"error,omitempty"`  // why the file could not be fetched, if it could not
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

// GroupUpdate tells that a group was created, or changed by one of its
// admins.
type GroupUpdate struct {
	Group   GroupRef `json:"group"`
	By      string   `json:"by"`               // the admin who signed the change
	Joined  bool     `json:"joined,omitempty"` // this account was added to the group (or it was created with it)
	Left    bool     `json:"left,omitempty"`   // this account is no longer a member
	Added   []string `json:"added,omitempty"`  // usernames
	Removed []string `json:"removed,omitempty"`
	Title   string   `json:"title,omitempty"` // the new title, if it changed
	// Timer is the new timer, if TimerChanged: the group's
	// disappearing-message timer changed to it.
	Timer        time.Duration `json:"timer_ns,omitempty"`
	TimerChanged bool          `json:"timer_changed,omitempty"`
}

func (*GroupUpdate) isEvent() {}

// String describes the update without the group's title.
func (u *GroupUpdate) String() string { return "group update [redacted]" }

// Inbox item kinds, in the order they are stored for one envelope.
const (
	kindIdentityChanged = 1
	kindMessage         = 2
	kindGroupUpdate     = 3
	kindReceipt         = 4
	// kindTransparencyAlert: an alert the key transparency monitors raised
	// (its envelope id is alertInboxID's, not an envelope's).
	kindTransparencyAlert = 5
	// kindDropped: a message dropped for a franking commitment it did not
	// open.
	kindDropped = 6
	// kindLegalNotice: a legal notice reported for the first time
	// (client/legal.go; its envelope id is legalNoticeInboxID's).
	kindLegalNotice = 7
)

// storedMessage is a Message as the inbox and the history store it.
type storedMessage struct {
	ID              string            `json:"id"`
	From            string            `json:"from"`
	FromDevice      uint32            `json:"from_device"`
	Sent            int64             `json:"sent"`
	Received        int64             `json:"received"`
	Text            string            `json:"text,omitempty"`
	Outgoing        bool              `json:"outgoing,omitempty"`
	To              string            `json:"to,omitempty"`
	GroupID         string            `json:"group_id,omitempty"`
	GroupTitle      string            `json:"group_title,omitempty"`
	Attachment      *storedAttachment `json:"attachment,omitempty"`
	ExpiresIn       int64             `json:"expires_in,omitempty"` // seconds
	Expires         int64             `json:"expires,omitempty"`
	TimerUpdate     bool              `json:"timer_update,omitempty"`
	IdentityChanged bool              `json:"identity_changed,omitempty"`
	DeliveredTo     []string          `json:"delivered_to,omitempty"`
	ReadBy          []string          `json:"read_by,omitempty"`
	// Unread: a message received whose read receipt is still to go.
	Unread bool `json:"unread,omitempty"`
}

// storedAttachment is an Attachment and, until it is fetched (or, for a
// view-once one, opened), what fetches and decrypts it.
type storedAttachment struct {
	FileName    string `json:"file_name,omitempty"`
	SenderType  string `json:"sender_type,omitempty"` // the sender's claim; only a hint
	ContentType string `json:"content_type,omitempty"`
	Size        int64  `json:"size"`
	Path        string `json:"path,omitempty"`
	ViewOnce    bool   `json:"view_once,omitempty"`
	Opened      bool   `json:"opened,omitempty"`
	Err         string `json:"err,omitempty"`
	// Fetched: the blob was downloaded (to Path, or for a view-once
	// attachment to the profile's private store).
	Fetched bool `json:"fetched,omitempty"`
	// What fetches it: dropped once the file is saved, kept encrypted for
	// a view-once attachment until it is opened.
	BlobID   string `json:"blob_id,omitempty"`
	Key      []byte `json:"key,omitempty"`
	Digest   []byte `json:"digest,omitempty"`
	BlobSize int64  `json:"blob_size,omitempty"`
}

// storedGroupUpdate is a GroupUpdate as the inbox stores it.
type storedGroupUpdate struct {
	GroupID      string   `json:"group_id"`
	Title        string   `json:"title"`
	By           string   `json:"by"`
	Joined       bool     `json:"joined,omitempty"`
	Left         bool     `json:"left,omitempty"`
	Added        []string `json:"added,omitempty"`
	Removed      []string `json:"removed,omitempty"`
	NewTitle     string   `json:"new_title,omitempty"`
	Timer        int64    `json:"timer,omitempty"`
	TimerChanged bool     `json:"timer_changed,omitempty"`
}

// inboxIdentity is an IdentityChanged as the inbox stores it.
type inboxIdentity struct {
	Username string `json:"username"`
	Verified bool   `json:"verified,omitempty"`
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func (m *storedMessage) message() *Message {
	out := &Message{ID: m.ID, From: m.From, FromDevice: m.FromDevice, Sent: time.UnixMilli(m.Sent),
		Received: time.UnixMilli(m.Received), Text: m.Text, Outgoing: m.Outgoing, To: m.To,
		ExpiresIn: time.Duration(m.ExpiresIn) * time.Second, Expires: timeOrZero(m.Expires),
		TimerUpdate: m.TimerUpdate, IdentityChanged: m.IdentityChanged, DeliveredTo: m.DeliveredTo, ReadBy: m.ReadBy}
	if m.GroupID != "" {
		out.Group = &GroupRef{ID: m.GroupID, Title: m.GroupTitle}
	}
	if a := m.Attachment; a != nil {
		out.Attachment = &Attachment{FileName: a.FileName, ContentType: a.ContentType, Size: a.Size,
			Path: a.Path, ViewOnce: a.ViewOnce, Opened: a.Opened, Err: a.Err}
	}
	return out
}

// conversation is the profile's name of the message's conversation.
func (m *storedMessage) conversation() string {
	switch {
	case m.GroupID != "":
		id, _ := hex.DecodeString(m.GroupID)
		return profile.GroupConversation(id)
	case m.Outgoing:
		return profile.UserConversation(m.To)
	}
	return profile.UserConversation(m.From)
}

// encodeEvent makes the inbox item for an event of one envelope.
func encodeEvent(envelopeID string, ev any) (*profile.InboxItem, error) {
	var kind int
	switch ev.(type) {
	case *storedMessage:
		kind = kindMessage
	case *inboxIdentity:
		kind = kindIdentityChanged
	case *storedGroupUpdate:
		kind = kindGroupUpdate
	case *Receipt:
		kind = kindReceipt
	case *storedDropped:
		kind = kindDropped
	default:
		return nil, fmt.Errorf("client: unknown event %T", ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("client: encoding an event: %v", err)
	}
	return &profile.InboxItem{EnvelopeID: envelopeID, Kind: kind, Data: b}, nil
}

// decodeEvent is the inverse of encodeEvent: it returns the stored form.
func decodeEvent(it *profile.InboxItem) (any, error) {
	var v any
	switch it.Kind {
	case kindMessage:
		v = new(storedMessage)
	case kindIdentityChanged:
		v = new(inboxIdentity)
	case kindGroupUpdate:
		v = new(storedGroupUpdate)
	case kindReceipt:
		v = new(Receipt)
	case kindTransparencyAlert:
		v = new(TransparencyAlert)
	case kindDropped:
		v = new(storedDropped)
	case kindLegalNotice:
		v = new(LegalNotice)
	default:
		return nil, fmt.Errorf("client: inbox entry of unknown kind %d", it.Kind)
	}
	if err := json.Unmarshal(it.Data, v); err != nil {
		return nil, fmt.Errorf("client: corrupt inbox entry: %v", err)
	}
	return v, nil
}

// event turns a stored event into what the handler gets.
func event(v any) Event {
	switch v := v.(type) {
	case *storedMessage:
		return v.message()
	case *inboxIdentity:
		return &IdentityChanged{Username: v.Username, Verified: v.Verified}
	case *storedGroupUpdate:
		return &GroupUpdate{Group: GroupRef{ID: v.GroupID, Title: v.Title}, By: v.By, Joined: v.Joined, Left: v.Left,
			Added: v.Added, Removed: v.Removed, Title: v.NewTitle,
			Timer: time.Duration(v.Timer) * time.Second, TimerChanged: v.TimerChanged}
	case *Receipt:
		return v
	case *TransparencyAlert:
		return v
	case *storedDropped:
		return &DroppedMessage{From: v.From, FromDevice: v.FromDevice, Received: time.UnixMilli(v.Received)}
	case *LegalNotice:
		return v
	}
	return nil
}
