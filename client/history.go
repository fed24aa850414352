package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/content"
)

// Directories inside a profile.
const (
	// DownloadsDir holds the files received (decrypted and verified).
	DownloadsDir = "downloads"
	// viewOnceDir holds view-once attachments, still encrypted, until they
	// are opened.
	viewOnceDir = "viewonce"
)

// MaxTimer is the longest disappearing-message timer.
const MaxTimer = content.MaxTimer * time.Second

// checkTimer refuses a disappearing-message timer the format cannot carry.
func checkTimer(d time.Duration) error {
	if d < 0 || d > MaxTimer || d%time.Second != 0 {
		return fmt.Errorf("client: a timer is whole seconds between 0 and %v", MaxTimer)
	}
	return nil
}

// putHistory keeps a message in the history.
func putHistory(tx *profile.Tx, m *storedMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("client: encoding a message: %v", err)
	}
	defer clear(b)
	it := &profile.HistoryItem{
		ID:           m.ID,
		Conversation: m.conversation(),
		Received:     time.UnixMilli(m.Received),
		Expires:      timeOrZero(m.Expires),
		Data:         b,
		Unread:       m.Unread,
	}
	if m.Outgoing {
		it.Sent = timeOrZero(m.Sent) // what receipts name it by
	}
	return tx.PutHistory(it)
}

// outgoingContent makes the content of a message to send in a conversation:
// the text, the file (encrypted and uploaded now) and the conversation's
// timer.
func (c *Client) outgoingContent(ctx context.Context, conv string, m Outgoing) (*content.Content, error) {
	if len(m.Text) > MaxTextSize {
		return nil, fmt.Errorf("client: message text over %d bytes", MaxTextSize)
	}
	if m.ViewOnce && m.File == "" {
		return nil, errors.New("client: view-once needs a file")
	}
	var timer time.Duration
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		timer, err = tx.Timer(conv)
		return err
	})
	if err != nil {
		return nil, err
	}
	cont := &content.Content{
		Timestamp:   time.Now().UnixMilli(),
		Body:        m.Text,
		ExpireTimer: uint32(timer / time.Second),
		ViewOnce:    m.ViewOnce,
	}
	if m.File != "" {
		if cont.Attachment, err = c.attach(ctx, m.File, m.Progress); err != nil {
			return nil, err
		}
	}
	return cont, nil
}

// messageFrom makes the parts of a stored message that come from its
// content: text, timer, and when it disappears: the timer runs from when
// this device sent or got it (now).
func messageFrom(cont *content.Content, now time.Time) *storedMessage {
	m := &storedMessage{Sent: cont.Timestamp, Text: cont.Body, ExpiresIn: int64(cont.ExpireTimer), TimerUpdate: cont.TimerUpdate}
	if cont.ExpireTimer > 0 && !cont.TimerUpdate {
		m.Expires = now.Add(time.Duration(cont.ExpireTimer) * time.Second).UnixMilli()
	}
	return m
}

// keepSent keeps a message this device sent in its history.
func (c *Client) keepSent(ctx context.Context, id, to string, group *GroupRef, cont *content.Content) error {
	now := c.now()
	m := messageFrom(cont, now)
	m.ID, m.From, m.FromDevice, m.Received = id, c.username, c.deviceID, now.UnixMilli()
	m.Outgoing, m.To = true, to
	if group != nil {
		m.GroupID, m.GroupTitle = group.ID, group.Title
	}
	if a := cont.Attachment; a != nil {
		// The sender has the file already; it keeps only its name.
		m.Attachment = &storedAttachment{FileName: sanitizeFileName(a.FileName), ContentType: a.ContentType,
			Size: a.Size, ViewOnce: cont.ViewOnce, Fetched: true}
	}
	return c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error { return putHistory(tx, m) })
}

// SetTimer sets the disappearing-message timer of the conversation with a
// user (0: off) and tells the user's devices and this account's other
// devices, whose copies of later messages disappear after d as well. For a
// group (to: "#" and its title, or its id), it is a change of the group that
// an admin signs (see SetGroupTimer).
func (c *Client) SetTimer(ctx context.Context, to string, d time.Duration) error {
	if err := checkTimer(d); err != nil {
		return err
	}
	if isGroupName(to) {
		return c.SetGroupTimer(ctx, to, d)
	}
	username, err := normalizeUsername(to)
	if err != nil {
		return err
	}
	conv := profile.UserConversation(username)
	cont := &content.Content{Timestamp: time.Now().UnixMilli(), ExpireTimer: uint32(d / time.Second), TimerUpdate: true}
	if _, err := c.sendContent(ctx, username, conv, cont); err != nil {
		return err
	}
	return c.st.Update(ctx, func(tx *profile.Tx) error { return tx.SetTimer(conv, d, time.Now()) })
}

// Timer returns the disappearing-message timer of a conversation (a
// username, or "#" and a group's title, or a group id).
func (c *Client) Timer(ctx context.Context, with string) (time.Duration, error) {
	if isGroupName(with) {
		g, err := c.findGroup(ctx, with)
		if err != nil {
			return 0, err
		}
		return time.Duration(g.state.Timer()) * time.Second, nil
	}
	username, err := normalizeUsername(with)
	if err != nil {
		return 0, err
	}
	var d time.Duration
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		d, err = tx.Timer(profile.UserConversation(username))
		return err
	})
	return d, err
}

// Messages returns the history of a conversation (a username, or "#" and a
// group's title, or a group id), oldest first: its last limit messages, or
// all of them when limit is 0. Messages whose time ran out are deleted first.
func (c *Client) Messages(ctx context.Context, with string, limit int) ([]*Message, error) {
	if err := c.sweepExpired(ctx); err != nil {
		return nil, err
	}
	conv, err := c.conversationOf(ctx, with)
	if err != nil {
		return nil, err
	}
	var items []profile.HistoryItem
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		items, err = tx.Conversation(conv, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Message, 0, len(items))
	for _, it := range items {
		var m storedMessage
		if err := json.Unmarshal(it.Data, &m); err != nil {
			return nil, fmt.Errorf("client: corrupt history entry: %v", err)
		}
		clear(it.Data)
		out = append(out, m.message())
	}
	return out, nil
}

// conversationOf names the profile's conversation with a user, or a group
// ("#" and its title, or its id).
func (c *Client) conversationOf(ctx context.Context, with string) (string, error) {
	if isGroupName(with) {
		g, err := c.findGroup(ctx, with)
		if err != nil {
			return "", err
		}
		return profile.GroupConversation(g.id[:]), nil
	}
	username, err := normalizeUsername(with)
	if err != nil {
		return "", err
	}
	return profile.UserConversation(username), nil
}

// sweepExpired deletes the messages whose time ran out, with their files,
// and checkpoints the profile so that the deleted text is gone from the
// write-ahead log too (the database zeroes deleted rows: secure_delete).
func (c *Client) sweepExpired(ctx context.Context) error {
	// Most calls find nothing due: a read, not a write transaction that
	// would hold off other processes on the profile every second.
	next, err := c.NextExpiry(ctx)
	if err != nil || next.IsZero() || next.After(c.now()) {
		return err
	}
	var files []string
	n := 0
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		files, n = nil, 0
		expired, err := tx.Expired(c.now())
		if err != nil {
			return err
		}
		for _, it := range expired {
			var m storedMessage
			if json.Unmarshal(it.Data, &m) == nil && m.Attachment != nil {
				files = append(files, c.attachmentFiles(m.ID, m.Attachment)...)
			}
			clear(it.Data)
			if err := tx.DeleteHistory(it.ID); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil || n == 0 {
		return err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("client: deleting an expired file: %v", err)
		}
	}
	return c.st.Checkpoint()
}

// NextExpiry returns when the next message disappears from this device, or
// the zero time if none will.
func (c *Client) NextExpiry(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		t, err = tx.NextExpiry()
		return err
	})
	return t, err
}

// attachmentFiles lists the files a message's attachment left on this
// device: the saved file (only if it is inside the downloads directory) and
// a view-once blob.
func (c *Client) attachmentFiles(id string, a *storedAttachment) []string {
	var out []string
	if a.Path != "" {
		dl, _ := filepath.Abs(filepath.Join(c.dir, DownloadsDir))
		if p, err := filepath.Abs(a.Path); err == nil && filepath.Dir(p) == dl {
			out = append(out, p)
		}
	}
	if a.ViewOnce {
		out = append(out, c.viewOncePath(id))
	}
	return out
}

func (c *Client) viewOncePath(messageID string) string {
	return filepath.Join(c.dir, viewOnceDir, hex.EncodeToString([]byte(messageID)))
}

// sanitizeFileName makes a sender's file name safe to save under: its last
// path element, without control or format characters, without leading dots
// (no hidden files, no "..") and at most 100 bytes; "file" if nothing is
// left.
func sanitizeFileName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == ':', r == '*', r == '?',
			r == '"', r == '<', r == '>', r == '|':
			b.WriteRune('_')
		default:
			b.WriteRune(r)
		}
	}
	name = strings.TrimLeft(strings.TrimSpace(b.String()), ".")
	for len(name) > 100 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		return "file"
	}
	return name
}
