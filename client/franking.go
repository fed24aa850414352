package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/internal/franking"
)

// Message franking (internal/franking; docs/protocol.md, "Message
// franking"): every content this device encrypts is franked by
// encodeFranked, the one place content is encoded for sending, and its
// commitment goes beside the ciphertext to the server. Every content it
// decrypts must open the commitment its envelope carried, or it is dropped
// (a *DroppedMessage event says so): everything shown can be reported. For
// each message shown, the history keeps what a report reveals (Report).
// An envelope with no commitment at all was queued before the server
// franked (an upgraded server delivers what it held from before): what of
// it shows nothing is still acted on, and the rest dropped (opened).

// Errors of Report a caller branches on.
var (
	// ErrUnknownMessage: no message with that id from that user is in this
	// device's history (it may have disappeared).
	ErrUnknownMessage = errors.New("client: no such message from that user on this device")
	// ErrNotReportable: the message is in the history, but this device
	// kept nothing to report it with (it came before franking).
	ErrNotReportable = errors.New("client: the message cannot be reported from this device")
	// ErrReportRejected: the server checked the report and refused it: it
	// does not verify (or the message is too old to report).
	ErrReportRejected = errors.New("client: the server rejected the report")
	// ErrAlreadyReported: this account reported the message before.
	ErrAlreadyReported = errors.New("client: the message was reported already")
)

// frankingKey returns this account's franking key, which binds the
// commitments of the messages this device sends to the account: held in
// memory once read, else from the profile, or, the first time, from the
// server (each device of the account asks for its own copy). The key
// never changes once stored, so every send after the first reads nothing.
func (c *Client) frankingKey(ctx context.Context) ([franking.KeySize]byte, error) {
	if k := c.frankKey.Load(); k != nil {
		return *k, nil
	}
	var key [franking.KeySize]byte
	var stored []byte
	err := c.st.View(ctx, func(tx *profile.Tx) error {
		var err error
		stored, err = tx.FrankingKey()
		return err
	})
	if err != nil {
		return key, err
	}
	if stored != nil {
		copy(key[:], stored)
		clear(stored)
		c.frankKey.Store(&key)
		return key, nil
	}
	var resp api.FrankingKeyResponse
	if err := c.do(ctx, http.MethodGet, api.PathFrankingKey, nil, &resp); err != nil {
		return key, fmt.Errorf("client: fetching the franking key: %w", err)
	}
	defer clear(resp.Key)
	if len(resp.Key) != franking.KeySize {
		return key, errors.New("client: the server's franking key is malformed")
	}
	copy(key[:], resp.Key)
	if err := c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error { return tx.PutFrankingKey(resp.Key) }); err != nil {
		return key, err
	}
	c.frankKey.Store(&key)
	return key, nil
}

// encodeFranked franks a copy of cont and encodes it for sending: the one
// place content is encoded for the wire. The commitment's context is the
// group for group content, else the recipient's account (this account's
// own for a transcript to its other devices). It returns the padded
// plaintext and the commitment, which travels beside the ciphertext; cont
// itself is left as it was.
func encodeFranked(cont *content.Content, accountKey [franking.KeySize]byte, recipientAccountID string) (pt, commitment []byte, err error) {
	fc := *cont
	cm := franking.Frank(&fc, accountKey, franking.ContextFor(&fc, recipientAccountID))
	if pt, err = content.Encode(&fc); err != nil {
		return nil, nil, err
	}
	return pt, cm[:], nil
}

// opened checks, inside processEnvelope's transaction, that content
// decrypted from env opens the franking commitment env carried, and
// returns the content to act on: cont itself when it does.
//
// When env carries no commitment at all, it was queued before the server
// franked (migration 5 of its store), and could not be reported: what of
// it would be shown is dropped (text, an attachment, a transcript, a
// timer update, a group change), but what shows nothing is still acted on
// (quietPart), lest an upgrade cost a member the sender key that opens a
// sender's group messages until its next distribution. A commitment that
// is present and does not match still drops everything: the sender (or
// the server) lied.
//
// Content that is dropped has the events found so far (an identity
// change) stored with a *DroppedMessage, and errDropContent returned.
func (c *Client) opened(tx *profile.Tx, env *api.Envelope, from string, cont *content.Content, events []any, now time.Time) (*content.Content, error) {
	if franking.Opens(cont, env.Franking) {
		return cont, nil
	}
	if len(env.Franking) == 0 {
		quiet := quietPart(cont)
		if quiet.Receipt != nil || quiet.SenderKey != nil {
			return quiet, nil
		}
		// Nothing to act on but the sender's profile key, which another
		// account's content is taken for as it comes (the session
		// authenticates it); this account's own content is judged in
		// pairwiseContent, which is not reached.
		if env.SourceAccount != c.accountID {
			if err := c.keepProfileKey(tx, env.SourceAccount, quiet.ProfileKey, now); err != nil {
				return nil, err
			}
		}
	}
	c.dropped.Add(1)
	ev := &storedDropped{From: from, FromDevice: env.SourceDevice, Received: env.ServerTimestamp}
	if err := c.storeEvents(tx, env.ID, append(events, ev), nil); err != nil {
		return nil, err
	}
	return nil, errDropContent
}

// quietPart is what of cont shows the user nothing: a receipt, a sender
// key distribution (with the group id it is for) and the sender's profile
// key. Nothing of a transcript (this account's own message, shown as
// sent) is quiet. The rest is set aside: text, an attachment, a timer
// and a group change (the one a sender key distribution carries along,
// which members hold already unless it is news, and news is shown).
func quietPart(cont *content.Content) *content.Content {
	q := &content.Content{Timestamp: cont.Timestamp}
	if cont.Sync {
		return q
	}
	q.Receipt, q.ProfileKey = cont.Receipt, cont.ProfileKey
	if cont.GroupID != nil && cont.SenderKey != nil {
		q.GroupID, q.SenderKey = cont.GroupID, cont.SenderKey
	}
	return q
}

// reportable is what reporting a message received takes, from the envelope
// as the server delivered it to this device (outer: the sealed one, for
// sealed sender) and the content as decrypted (pt, padded). The sender
// claimed is the one the envelope or, sealed, its certificate named (env,
// the envelope opened).
func (c *Client) reportable(outer, env *api.Envelope, pt []byte) *api.ReportRequest {
	return &api.ReportRequest{
		Content:         append([]byte(nil), pt...),
		Sender:          env.SourceAccount,
		DeviceID:        c.deviceID,
		Type:            outer.Type,
		SourceAccount:   outer.SourceAccount,
		SourceDevice:    outer.SourceDevice,
		ServerTimestamp: outer.ServerTimestamp,
		Franking:        outer.Franking,
		FrankingTag:     outer.FrankingTag,
	}
}

// putReportable keeps what reporting message id takes, beside it in the
// history.
func putReportable(tx *profile.Tx, id string, r *api.ReportRequest) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("client: encoding a message: %v", err)
	}
	defer clear(b)
	return tx.PutReportable(id, b)
}

// Report reports a message received from a user to the server's operator
// as abusive, with reason (at most api.MaxReportReason bytes; may be
// empty): it reveals the message's content and the envelope that brought
// it, which the server checks against the franking commitment the message
// was sent and delivered under, so that the report proves who sent what.
// messageID is the message's ID in the history (Message.ID). It returns
// the server's id for the report.
//
// ErrUnknownMessage when the history holds no such message from username;
// ErrNotReportable for one this device kept nothing to report with;
// ErrReportRejected when the server finds that the report does not verify
// (or the message is too old); ErrAlreadyReported for a second report of
// one message.
func (c *Client) Report(ctx context.Context, username, messageID, reason string) (string, error) {
	username, err := normalizeUsername(username)
	if err != nil {
		return "", err
	}
	if len(reason) > api.MaxReportReason {
		return "", fmt.Errorf("client: a report's reason is at most %d bytes", api.MaxReportReason)
	}
	var req api.ReportRequest
	err = c.st.View(ctx, func(tx *profile.Tx) error {
		h, err := tx.History(messageID)
		if err != nil {
			return err
		}
		if h == nil {
			return ErrUnknownMessage
		}
		var m storedMessage
		err = json.Unmarshal(h.Data, &m)
		clear(h.Data)
		if err != nil {
			return fmt.Errorf("client: corrupt history entry: %v", err)
		}
		if m.Outgoing || m.From != username {
			return ErrUnknownMessage
		}
		b, err := tx.Reportable(messageID)
		if err != nil {
			return err
		}
		if b == nil {
			return ErrNotReportable
		}
		defer clear(b)
		if err := json.Unmarshal(b, &req); err != nil {
			return fmt.Errorf("client: corrupt history entry: %v", err)
		}
		return nil
	})
	defer clear(req.Content)
	if err != nil {
		return "", err
	}
	req.Reason = reason
	var resp api.ReportResponse
	err = c.do(ctx, http.MethodPost, api.PathReports, &req, &resp)
	if ae, ok := isCode(err, api.CodeReportRejected); ok {
		return "", fmt.Errorf("%w: %w", ErrReportRejected, ae)
	}
	if _, ok := isCode(err, api.CodeDuplicate); ok {
		return "", ErrAlreadyReported
	}
	if err != nil {
		return "", fmt.Errorf("client: reporting: %w", err)
	}
	return resp.ID, nil
}

// DroppedMessage tells that a message was dropped unread: what it carried
// did not open the franking commitment it came with, so it could not have
// been reported. A client that does not frank, or one that tries to show
// one text and have another reported, sends such messages; so can a
// server that alters commitments. Nothing of the message is kept.
type DroppedMessage struct {
	// From is the sender's username as for Message.From (for a sealed
	// message, the one its sender certificate named).
	From       string
	FromDevice uint32
	Received   time.Time // when the server queued it
}

func (*DroppedMessage) isEvent() {}

// storedDropped is a DroppedMessage as the inbox stores it.
type storedDropped struct {
	From       string `json:"from"`
	FromDevice uint32 `json:"from_device"`
	Received   int64  `json:"received"`
}
