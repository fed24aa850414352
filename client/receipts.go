package client

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/content"
)

// Receipts: a device that receives a message from another account sends
// the sender a delivery receipt, and one that displays it (MarkRead) a read
// receipt. Receipts are end-to-end encrypted messages of their own, sealed
// like any other, naming the messages by their sender timestamps; the
// server cannot tell them from other messages (both are padded). Either
// kind can be turned off (SetReceipts); a device with read receipts off
// still marks messages read, silently.

// Settings of receipts, "0" when off (unset: on).
const (
	settingDeliveryReceipts = "receipts.delivery"
	settingReadReceipts     = "receipts.read"
)

// pendingReceipts collects the delivery receipts of one Receive, sent in a
// batch per sender once the queue is drained.
type pendingReceipts struct {
	mu sync.Mutex
	m  map[string][]int64 // username -> sender timestamps
}

// queueReceipt notes a delivery receipt to send to a user.
func (c *Client) queueReceipt(username string, typ content.ReceiptType, ts int64) {
	if typ != content.ReceiptDelivered || ts <= 0 {
		return
	}
	c.receipts.mu.Lock()
	defer c.receipts.mu.Unlock()
	if c.receipts.m == nil {
		c.receipts.m = map[string][]int64{}
	}
	c.receipts.m[username] = append(c.receipts.m[username], ts)
}

// flushReceipts sends the delivery receipts queued, if they are on. A
// failure drops them: a receipt is a courtesy, not worth holding up
// delivery.
func (c *Client) flushReceipts(ctx context.Context) {
	c.receipts.mu.Lock()
	m := c.receipts.m
	c.receipts.m = nil
	c.receipts.mu.Unlock()
	if len(m) == 0 {
		return
	}
	on, _, err := c.Receipts(ctx)
	if err != nil || !on {
		return
	}
	for username, ts := range m {
		c.sendReceipt(ctx, username, content.ReceiptDelivered, ts)
	}
}

// sendReceipt sends one user receipts for messages named by their sender
// timestamps, in batches the format allows.
func (c *Client) sendReceipt(ctx context.Context, username string, typ content.ReceiptType, ts []int64) error {
	slices.Sort(ts)
	ts = slices.Compact(ts)
	for len(ts) > 0 {
		n := min(len(ts), content.MaxReceiptTimestamps)
		cont := &content.Content{Timestamp: time.Now().UnixMilli(), Receipt: &content.Receipt{Type: typ, Timestamps: ts[:n]}}
		if _, err := c.deliver(ctx, username, cont, nil); err != nil {
			return err
		}
		ts = ts[n:]
	}
	return nil
}

// applyReceipt marks the messages a receipt names as delivered to, or read
// by, its sender, inside processEnvelope's transaction. Only messages sent
// to that user, or to a group the user is a member of, are marked.
func (c *Client) applyReceipt(tx *profile.Tx, accountID, from string, r *content.Receipt) ([]any, error) {
	ev := &Receipt{From: from, Read: r.Type == content.ReceiptRead}
	for _, ts := range r.Timestamps {
		items, err := tx.SentAt(time.UnixMilli(ts))
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			var m storedMessage
			if err := json.Unmarshal(it.Data, &m); err != nil {
				return nil, fmt.Errorf("client: corrupt history entry: %v", err)
			}
			clear(it.Data)
			ok, err := c.wasSentTo(tx, &m, accountID, from)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			list := &m.DeliveredTo
			if ev.Read {
				list = &m.ReadBy
			}
			if !slices.Contains(*list, from) {
				*list = append(*list, from)
			}
			if err := putHistory(tx, &m); err != nil {
				return nil, err
			}
			ev.Messages = append(ev.Messages, m.ID)
		}
	}
	if len(ev.Messages) == 0 {
		return nil, nil
	}
	return []any{ev}, nil
}

// wasSentTo tells whether a message this account sent went to the user.
func (c *Client) wasSentTo(tx *profile.Tx, m *storedMessage, accountID, username string) (bool, error) {
	if !m.Outgoing {
		return false, nil
	}
	if m.GroupID == "" {
		return m.To == username, nil
	}
	g, err := c.storedGroup(tx, m.GroupID)
	if err != nil || g == nil {
		return false, err
	}
	_, ok := g.state.Member(accountID)
	return ok, nil
}

// MarkRead marks the messages received in a conversation (a username, or
// "#" and a group's title, or a group id) as read, and sends their senders
// read receipts unless those are off. It returns how many it marked.
func (c *Client) MarkRead(ctx context.Context, with string) (int, error) {
	conv, err := c.conversationOf(ctx, with)
	if err != nil {
		return 0, err
	}
	_, readOn, err := c.Receipts(ctx)
	if err != nil {
		return 0, err
	}
	bySender := map[string][]int64{}
	n := 0
	err = c.st.Update(ctx, func(tx *profile.Tx) error {
		clear(bySender)
		n = 0
		items, err := tx.Unread(conv)
		if err != nil {
			return err
		}
		for _, it := range items {
			var m storedMessage
			if err := json.Unmarshal(it.Data, &m); err != nil {
				return fmt.Errorf("client: corrupt history entry: %v", err)
			}
			clear(it.Data)
			m.Unread = false
			if err := putHistory(tx, &m); err != nil {
				return err
			}
			bySender[m.From] = append(bySender[m.From], m.Sent)
			n++
		}
		return nil
	})
	if err != nil || !readOn {
		return n, err
	}
	for username, ts := range bySender {
		if err := c.sendReceipt(ctx, username, content.ReceiptRead, ts); err != nil {
			return n, fmt.Errorf("client: sending a read receipt to %s: %w", username, err)
		}
	}
	return n, nil
}

// Receipts tells whether this device sends delivery and read receipts.
func (c *Client) Receipts(ctx context.Context) (delivery, read bool, err error) {
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		d, err := tx.Setting(settingDeliveryReceipts)
		if err != nil {
			return err
		}
		r, err := tx.Setting(settingReadReceipts)
		delivery, read = string(d) != "0", string(r) != "0"
		return err
	})
	return delivery, read, err
}

// SetReceipts turns this device's delivery and read receipts on or off.
func (c *Client) SetReceipts(ctx context.Context, delivery, read bool) error {
	flag := func(on bool) []byte {
		if on {
			return nil // the default
		}
		return []byte("0")
	}
	return c.st.Update(ctx, func(tx *profile.Tx) error {
		if err := tx.PutSetting(settingDeliveryReceipts, flag(delivery)); err != nil {
			return err
		}
		return tx.PutSetting(settingReadReceipts, flag(read))
	})
}

// storedGroup loads a group by its id in hex, inside a transaction; nil if
// this device does not know it.
func (c *Client) storedGroup(tx *profile.Tx, hexID string) (*localGroup, error) {
	id, err := hex.DecodeString(hexID)
	if err != nil {
		return nil, nil
	}
	pg, err := tx.Group(id)
	if err != nil || pg == nil {
		return nil, err
	}
	return loadGroup(pg)
}
