package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/doorless/doorless/client/internal/profile"
	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/content"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/session"
)

// Errors that end a streaming Receive, since reconnecting cannot help.
var (
	// ErrDisplaced: another connection of this device (another process using
	// the same profile, say) replaced this one. Receive does not reconnect,
	// or the two would displace each other forever.
	ErrDisplaced = errors.New("client: receive: another connection of this device replaced this one")
	// ErrDeviceRevoked: the server no longer knows this device or its
	// credentials.
	ErrDeviceRevoked = errors.New("client: this device was removed or its credentials were refused")
)

// ReceiveOptions configure Receive.
type ReceiveOptions struct {
	// UntilEmpty: return nil once the server has sent everything it held for
	// the device when the connection opened (its "queue_empty" frame) and
	// all of it has been handled. Otherwise Receive streams until ctx ends,
	// reconnecting after a lost connection.
	UntilEmpty bool
}

// Receiving parameters.
const (
	// processedRetention is how long an envelope id is remembered for
	// deduplication; the server keeps a message at most 30 days.
	processedRetention = 45 * 24 * time.Hour
	// frameBuffer is how many frames the reader goroutine may run ahead of
	// their processing. Each may be up to api.MaxFrameSize(
	// session.MaxMessageSize) (about 1.4 MiB), which a hostile server
	// could pin: 8 frames bound that to about 11 MiB. While the buffer is
	// full (the server sends up to 64 envelopes ahead of their acks) the
	// reader waits, and the server's pings with it, until processing takes
	// the next frame: one envelope's decryption, commit and handler.
	frameBuffer = 8
	// sweepInterval is how often a streaming Receive deletes the messages
	// whose time ran out.
	sweepInterval = time.Second
	// ackTimeout bounds the write of one acknowledgement.
	ackTimeout = 10 * time.Second
	// receiptFlushTimeout bounds the sending of the receipts still pending
	// when a stream is stopped.
	receiptFlushTimeout = 5 * time.Second
)

// Reconnection backoff, variables for the tests.
var (
	backoffMin = 500 * time.Millisecond
	backoffMax = 30 * time.Second
)

// Receive connects to the server's delivery WebSocket and hands every
// message for this device to handle, in the order the server queued them.
//
// Each envelope is decrypted and, in one local transaction, its session
// state saved, its id recorded and its events put in the profile's inbox;
// only then is it acknowledged to the server. Then the inbox is handed to
// handle, oldest first, each event deleted from the inbox once handle has
// returned nil for it. So an event survives a crash at any point, and an
// envelope the server sends again (its acknowledgement lost) is recognised
// and not handed to handle again. Delivery to handle is at least once, not
// exactly once: a crash (or a failing store) after handle returned nil for
// an event and before its deletion from the inbox committed hands that one
// event over again on the next Receive, so a handler with side effects
// should tolerate a repeat (Message.ID identifies it). When handle returns
// an error, Receive returns that error unchanged, and the event stays in the
// inbox for the next Receive, which hands it over first.
//
// An *IdentityChanged event comes just before the first message from a
// contact under a new identity key; a verified contact's new key is not
// trusted until the user verifies it (see IdentityChanged). Envelopes that do not decrypt (forged,
// corrupt, replayed) are acknowledged and dropped, and counted in Stats.
// A "refill" request from the server is answered by generating and
// uploading one-time prekeys, at most once a minute. Every
// Options.MonitorInterval (and when it starts, if that long has passed
// since the last check) it runs the key transparency owner monitor
// (CheckTransparency); an alert it raises comes as a *TransparencyAlert
// event.
//
// With opt.UntilEmpty, Receive returns nil once everything the server held
// when it connected has been handled; it returns an error if the connection
// fails first, or ctx.Err() if ctx ends first. Otherwise it streams: it
// reconnects after a lost connection, with exponential backoff (500 ms
// doubling to 30 s, with jitter), and returns nil when ctx is cancelled or
// its deadline passes, since that is how a stream is stopped. Either way it
// returns at once for an error reconnecting cannot mend: an error from
// handle, from the local store, ErrDeviceRevoked or ErrDisplaced.
//
// Calls to Receive on one Client run one at a time.
func (c *Client) Receive(ctx context.Context, opt ReceiveOptions, handle func(Event) error) error {
	if handle == nil {
		return errors.New("client: receive: nil handler")
	}
	select {
	case c.recvMu <- struct{}{}:
	case <-ctx.Done():
		return c.result(ctx, opt, nil)
	}
	defer func() { <-c.recvMu }()

	err := c.st.Update(ctx, func(tx *profile.Tx) error {
		_, err := tx.PruneProcessed(time.Now().Add(-processedRetention))
		return err
	})
	if err != nil {
		return c.result(ctx, opt, err)
	}
	if err := c.sweepExpired(ctx); err != nil {
		return c.result(ctx, opt, err)
	}
	// This account's devices, for the transcripts of what it sends. A
	// failure is not worth the stream: the next Receive asks again.
	c.ownDevices(ctx)
	// The trust root sealed messages are checked against, for a profile
	// from before sealed sender (new ones pin it when they join); without
	// it, sealed messages would be dropped. Also best effort.
	c.trustRoot(ctx)
	// The owner monitor, when its interval has passed since the last check
	// (by this or another process); its alerts reach handle through the
	// inbox.
	c.monitorIfDue(ctx)
	// What an earlier Receive stored and did not hand over comes first.
	if err := c.drainInbox(ctx, handle); err != nil {
		return c.result(ctx, opt, err)
	}
	delay := backoffMin
	for {
		progressed, err := c.receiveOnce(ctx, opt, handle)
		var t *transient
		if err == nil || opt.UntilEmpty || ctx.Err() != nil || !errors.As(err, &t) {
			return c.result(ctx, opt, err)
		}
		if progressed {
			delay = backoffMin
		}
		// Jitter: wait somewhere in [delay/2, delay].
		wait := delay/2 + rand.N(delay/2+1)
		if sleepCtx(ctx, wait) != nil {
			return c.result(ctx, opt, nil)
		}
		delay = min(delay*2, backoffMax)
	}
}

// result is what Receive returns for err. An error of its own (from handle,
// the local store, or one that ends the device's connections) wins;
// otherwise, once ctx has ended, UntilEmpty returns ctx.Err() and streaming
// returns nil.
func (c *Client) result(ctx context.Context, opt ReceiveOptions, err error) error {
	var t *transient
	if err != nil && !errors.As(err, &t) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if ctx.Err() != nil {
		if opt.UntilEmpty {
			return ctx.Err()
		}
		return nil
	}
	return err
}

// transient is a connection failure: another connection may do better.
type transient struct{ err error }

func (t *transient) Error() string { return "client: receive: " + t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

type frameOrErr struct {
	f   *api.Frame
	err error
}

func (c *Client) wsURL() string {
	u := c.serverURL
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + u[len("https://"):]
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + u[len("http://"):]
	}
	return u + api.PathWebSocket
}

// receiveOnce runs one connection. progressed reports whether the
// connection got as far as a frame from the server.
func (c *Client) receiveOnce(ctx context.Context, opt ReceiveOptions, handle func(Event) error) (progressed bool, err error) {
	cred := base64.StdEncoding.EncodeToString([]byte(api.Login(c.accountID, c.deviceID) + ":" + c.password))
	hdr := http.Header{"Authorization": {"Basic " + cred}}
	conn, resp, err := websocket.Dial(ctx, c.wsURL(), &websocket.DialOptions{
		HTTPClient:      c.hc,
		HTTPHeader:      hdr,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, ErrDeviceRevoked
		}
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			if ae := readAPIError(resp); ae != nil {
				return false, fmt.Errorf("client: receive: %w", ae)
			}
			return false, fmt.Errorf("client: receive: server answered %s", resp.Status)
		}
		return false, &transient{err: err}
	}
	conn.SetReadLimit(int64(api.MaxFrameSize(session.MaxMessageSize)))

	// One reader goroutine keeps reading (and so answering the server's
	// pings) while this one processes frames in order and writes acks.
	frames := make(chan frameOrErr, frameBuffer)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			typ, b, err := conn.Read(context.Background())
			var f *api.Frame
			if err == nil {
				if typ != websocket.MessageText {
					err = errors.New("binary frame from the server")
				} else {
					f, err = api.ParseFrame(b)
				}
			}
			frames <- frameOrErr{f: f, err: err} // the deferred drain below unblocks this at the end
			if err != nil {
				return
			}
		}
	})
	closed := false
	defer func() {
		if !closed {
			conn.CloseNow()
		}
		// Unblock the reader if it waits to hand over a frame, and wait
		// for it to end.
		go func() {
			for range frames {
			}
		}()
		wg.Wait()
		close(frames)
	}()

	// Disappearing messages go while the stream runs.
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	// And the owner monitor checks this account's entry.
	monitor := time.NewTicker(c.kt.monitorInterval)
	defer monitor.Stop()
	for {
		var fe frameOrErr
		select {
		case <-sweep.C:
			if err := c.sweepExpired(ctx); err != nil {
				return progressed, err
			}
			c.flushReceipts(ctx)
			continue
		case <-monitor.C:
			c.monitorIfDue(ctx)
			if err := c.drainInbox(ctx, handle); err != nil {
				return progressed, err
			}
			continue
		case <-ctx.Done():
			// Stop cleanly: the acks written so far reach the server.
			conn.Close(websocket.StatusNormalClosure, "")
			closed = true
			// And the receipts still pending, briefly.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), receiptFlushTimeout)
			c.flushReceipts(fctx)
			cancel()
			return progressed, ctx.Err()
		case fe = <-frames:
		}
		if fe.err != nil {
			switch websocket.CloseStatus(fe.err) {
			case api.CloseDisplaced:
				return progressed, ErrDisplaced
			case api.CloseRevoked:
				return progressed, ErrDeviceRevoked
			}
			return progressed, &transient{err: fe.err}
		}
		progressed = true
		switch fe.f.Type {
		case api.FrameEnvelope:
			if err := c.processEnvelope(ctx, fe.f.Envelope); err != nil {
				return progressed, err
			}
			if env := fe.f.Envelope; env.SourceAccount == c.accountID && env.SourceDevice != c.deviceID {
				c.learnOwnDevice(ctx, env.SourceDevice)
			}
			if !c.noAck {
				if err := c.ack(ctx, conn, fe.f.Envelope.ID); err != nil {
					return progressed, &transient{err: err}
				}
			}
			if err := c.drainInbox(ctx, handle); err != nil {
				return progressed, err
			}
			if len(frames) == 0 {
				// Nothing more waiting: the receipts go now, in one
				// message per sender for what came in together.
				c.flushReceipts(ctx)
			}
		case api.FrameRefill:
			// A failed upload is not worth the connection: the server
			// asks again.
			c.refill(ctx, fe.f.Keys)
		case api.FrameQueueEmpty:
			c.flushReceipts(ctx)
			if opt.UntilEmpty {
				// Everything before it is handled and acked; the close
				// handshake lets the server read the acks first.
				conn.Close(websocket.StatusNormalClosure, "")
				closed = true
				return progressed, nil
			}
		case api.FrameAck:
			return progressed, &transient{err: errors.New("ack frame from the server")}
		}
	}
}

func readAPIError(resp *http.Response) *api.Error {
	if resp.Body == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		return eb.Error
	}
	return nil
}

func (c *Client) ack(ctx context.Context, conn *websocket.Conn, id string) error {
	b, err := json.Marshal(&api.Frame{Type: api.FrameAck, ID: id})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	return conn.Write(wctx, websocket.MessageText, b)
}

// drainInbox hands the inbox to handle, oldest first, deleting each event
// once handle has returned nil for it.
func (c *Client) drainInbox(ctx context.Context, handle func(Event) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var it *profile.InboxItem
		err := c.st.View(ctx, func(tx *profile.Tx) error {
			var err error
			it, err = tx.FirstInbox(0)
			return err
		})
		if err != nil || it == nil {
			return err
		}
		ev, err := decodeEvent(it)
		if err == nil {
			if ev, err = c.prepareEvent(ctx, it, ev); err != nil {
				return err
			}
			if err := handle(event(ev)); err != nil {
				return err
			}
		} else {
			c.dropped.Add(1) // our own encoding, corrupt: nothing to hand over
		}
		err = c.st.Update(context.WithoutCancel(ctx), func(tx *profile.Tx) error {
			_, err := tx.DeleteInbox(it.Seq)
			return err
		})
		if err != nil {
			return err
		}
	}
}

// preKeys is the PreKeyStore over a transaction; it remembers an error that
// is not a missing key, so that a failing database is not mistaken for a
// bad message.
type preKeys struct {
	tx  *profile.Tx
	err error
}

func (p *preKeys) note(err error) error {
	if err != nil && !errors.Is(err, session.ErrMissingPreKey) && p.err == nil {
		p.err = err
	}
	return err
}

func (p *preKeys) PreKey(id uint32) (*keys.PreKey, error) {
	k, err := p.tx.PreKey(id)
	return k, p.note(err)
}

func (p *preKeys) SignedPreKey(id uint32) (*keys.SignedPreKey, error) {
	k, err := p.tx.SignedPreKey(id)
	return k, p.note(err)
}

func (p *preKeys) KyberPreKey(id uint32) (*keys.KyberPreKey, error) {
	k, err := p.tx.KyberPreKey(id)
	return k, p.note(err)
}

// errDrop marks an envelope that is acknowledged without anything handed on.
var errDrop = errors.New("client: envelope dropped")

// unlistedSender: an envelope came from a device that the sender's device
// list in the log, as this device last verified it, does not name. The
// device may be new (the list this device holds is old), or removed (it
// still holds the identity key, and the server can relay what it makes).
type unlistedSender struct {
	username string // whose entry to look up
}

func (u *unlistedSender) Error() string {
	return "client: a message from a device not on its account's device list"
}

// processEnvelope decrypts one envelope and, in one transaction, saves the
// session, records the envelope id and stores its events in the inbox. It
// returns nil when the envelope may be acknowledged: done now, done before,
// or dropped as undecryptable. Any other error is local and ends Receive,
// but for a *transient one: the envelope comes again on a new connection.
//
// An envelope from a device the sender's list in the log (as this device
// last verified it) does not name makes it look the sender up again (this
// account's own entry: the owner monitor's check) and try once more; a
// device still not listed is dropped, as a message from a device removed
// from the account: it holds the identity key still, but is no longer the
// account's. (A sender whose entry this device has not verified, a user
// who wrote first, is taken as before: nothing is encrypted to it before
// the lookup that shows its list.) A lookup that fails without a verdict
// (no network, the server's error) leaves the envelope for later.
func (c *Client) processEnvelope(ctx context.Context, env *api.Envelope) error {
	err := c.processOnce(ctx, env)
	var u *unlistedSender
	if errors.As(err, &u) {
		if err := c.lookAgain(ctx, u.username); err != nil {
			return &transient{err: err}
		}
		if err = c.processOnce(ctx, env); errors.As(err, &u) {
			err = errDrop
		}
	}
	if !errors.Is(err, errDrop) {
		return err
	}
	now := c.now()
	c.dropped.Add(1)
	// The decryption changed nothing (the transaction rolled back);
	// remember the id all the same, so that a redelivery is skipped at once.
	return c.st.Update(ctx, func(tx *profile.Tx) error { return tx.MarkProcessed(env.ID, now) })
}

// lookAgain verifies a user's entry in the log anew, so that its device
// list is the newest. Only a failure that is no verdict on the entry (no
// network, a server error) is returned.
func (c *Client) lookAgain(ctx context.Context, username string) error {
	var err error
	if username == c.username {
		_, err = c.checkOwn(ctx, false)
	} else {
		_, err = c.lookup(ctx, username)
	}
	if err == nil || errors.Is(err, ErrTransparency) || errors.Is(err, ErrUnknownUser) || errors.Is(err, ErrTransparencyAlert) {
		return nil
	}
	return err
}

// checkListed returns an *unlistedSender when the device list the log
// holds for the account, as this device last verified it, does not name
// the device (for this account: its own list). A sender whose entry this
// device has not verified under that account and key passes.
func (c *Client) checkListed(tx *profile.Tx, username, accountID string, device uint32, ik keys.PublicKey) error {
	if accountID == c.accountID {
		username = c.username
	}
	l, err := loggedList(tx, username, accountID, ik)
	if err != nil {
		return err
	}
	if l != nil && !l.Contains(device) {
		return &unlistedSender{username: username}
	}
	return nil
}

// processOnce is processEnvelope's transaction.
func (c *Client) processOnce(ctx context.Context, env *api.Envelope) error {
	now := c.now()
	local, localAddr := c.local()
	return c.st.Update(ctx, func(tx *profile.Tx) error {
		done, err := tx.Processed(env.ID)
		if err != nil {
			return err
		}
		if done {
			c.redelivered.Add(1)
			return nil
		}
		// outer is the envelope as delivered, which a report names; env
		// the one opened. sealedBy is the identity key a sealed message's
		// sender sealed it with: the inner message must be under the
		// same key.
		outer, env := env, env
		var sealedBy *keys.PublicKey
		if env.Type == api.EnvelopeUnidentifiedSender {
			inner, key, err := c.unseal(tx, env, now)
			if err != nil {
				return err
			}
			env, sealedBy = inner, &key
		}
		if env.Type == api.EnvelopeSenderKey {
			return c.decryptSenderKey(tx, outer, env, sealedBy, now)
		}
		remote := session.Address{Name: env.SourceAccount, DeviceID: env.SourceDevice}
		return c.decryptInto(tx, outer, env, local, localAddr, remote, sealedBy, now)
	})
}

// decryptInto does the work of processEnvelope inside its transaction, for
// env, the envelope outer delivered (itself unless sealed). It returns
// errDrop for an envelope to drop, and the caller rolls back.
func (c *Client) decryptInto(tx *profile.Tx, outer, env *api.Envelope, local *session.Identity, localAddr, remote session.Address, sealedBy *keys.PublicKey, now time.Time) error {
	rec, err := tx.Session(env.SourceAccount, env.SourceDevice)
	if err != nil {
		return err
	}
	var (
		pt       []byte
		events   []any
		changed  bool
		identity keys.PublicKey
	)
	// The sender is named by the contact this device knows for the account,
	// not by the server's label, which a hostile server chooses: a label
	// must not move messages, or the trust decided below, from one contact
	// to another. An unknown account is looked up by its label.
	from := env.SourceUsername
	ct, err := tx.ContactByAccount(env.SourceAccount)
	if err != nil {
		return err
	}
	if ct != nil {
		from = ct.Username
	} else if ct, err = tx.Contact(from); err != nil {
		return err
	}
	switch env.Type {
	case api.EnvelopePreKey:
		m, err := session.ParsePreKeySignalMessage(env.Content)
		if err != nil {
			return errDrop
		}
		identity = m.IdentityKey()
		if rec == nil {
			rec = new(session.Record)
		}
		store := &preKeys{tx: tx}
		var used *session.PreKeysUsed
		pt, used, err = rec.DecryptPreKey(m, local, localAddr, remote, store, randReader)
		if store.err != nil {
			return store.err
		}
		if err != nil {
			return errDrop
		}
		if used != nil {
			lastResort, err := tx.IsLastResort(used.KyberPreKeyID)
			if err != nil {
				return err
			}
			if lastResort {
				seen, err := tx.UseLastResort(used.KyberPreKeyID, used.BaseKey, now)
				if err != nil {
					return err
				}
				if seen {
					return errDrop // a first message replayed after its session was gone
				}
			} else if err := tx.RemoveKyberPreKey(used.KyberPreKeyID); err != nil {
				return err
			}
			if used.HasPreKeyID {
				if err := tx.RemovePreKey(used.PreKeyID); err != nil {
					return err
				}
			}
		}
	case api.EnvelopeWhisper:
		m, err := session.ParseSignalMessage(env.Content)
		if err != nil || rec == nil {
			return errDrop
		}
		if pt, err = rec.Decrypt(m, randReader); err != nil {
			return errDrop
		}
		var ok bool
		if identity, ok = rec.RemoteIdentity(); !ok {
			return errDrop
		}
	default:
		return errDrop
	}
	defer clear(pt)
	if sealedBy != nil && !identity.Equal(*sealedBy) {
		return errDrop // sealed by one key, the session is with another
	}
	// Nothing from a device the account's list in the log does not name
	// (the session just made is not kept either).
	if err := c.checkListed(tx, from, env.SourceAccount, env.SourceDevice, identity); err != nil {
		return err
	}

	// The identity key: trusted on first use. For a contact not verified, a
	// change is accepted on receipt (the message decrypted under it) and
	// announced. A verified contact's trusted key is never replaced on the
	// word of a message, which anyone holding a key pair can make: the new
	// key is set aside as pending, as Send does, and every message under it
	// is marked; Send refuses it (ErrUntrustedIdentity) until the user
	// verifies the new safety number.
	switch {
	case ct == nil:
		err = tx.PutContact(&profile.Contact{Username: from, AccountID: env.SourceAccount, IdentityKey: identity}, now)
	case ct.AccountID == env.SourceAccount && ct.IdentityKey.Equal(identity):
	case ct.Verified:
		changed = true
		if env.Type == api.EnvelopeWhisper {
			// A session made earlier under a key not trusted: marked;
			// what was pending stays.
			break
		}
		if ct.PendingKey != nil && ct.PendingAccount == env.SourceAccount && ct.PendingKey.Equal(identity) {
			break // announced already
		}
		events = append(events, &inboxIdentity{Username: from, Verified: true})
		ct.PendingAccount, ct.PendingKey = env.SourceAccount, &identity
		err = tx.PutContact(ct, now)
	case env.Type == api.EnvelopeWhisper && ct.AccountID == env.SourceAccount:
		// An older session under the key trusted before; the change was
		// announced when the new key arrived.
	default:
		changed = true
		events = append(events, &inboxIdentity{Username: from})
		if ct.AccountID != env.SourceAccount {
			// The server's word: the old account's sessions are
			// archived, not forgotten, so that its messages still in
			// flight decrypt.
			if err := archiveSessions(tx, ct.AccountID, now); err != nil {
				return err
			}
		}
		err = tx.PutContact(&profile.Contact{Username: from, AccountID: env.SourceAccount, IdentityKey: identity}, now)
	}
	if errors.Is(err, profile.ErrVerifiedContact) {
		return errDrop
	}
	if err != nil {
		return err
	}
	if err := tx.PutSession(env.SourceAccount, env.SourceDevice, rec, now); err != nil {
		return err
	}
	if err := tx.MarkProcessed(env.ID, now); err != nil {
		return err
	}
	// Content that decrypts but does not parse, or does not open its
	// franking commitment, is dropped, with the session moved on: the
	// sender's ratchet did.
	cont, err := content.Parse(pt)
	if err != nil {
		c.dropped.Add(1)
		return c.storeEvents(tx, env.ID, events, nil)
	}
	if cont, err = c.opened(tx, env, from, cont, events, now); err != nil {
		if errors.Is(err, errDropContent) {
			return nil
		}
		return err
	}
	more, err := c.pairwiseContent(tx, env, from, identity, cont, changed, now)
	if errors.Is(err, errDropContent) {
		c.dropped.Add(1)
		return c.storeEvents(tx, env.ID, events, nil)
	}
	if err != nil {
		return err
	}
	if err := c.keepProfileKey(tx, env.SourceAccount, cont.ProfileKey, now); err != nil {
		return err
	}
	return c.storeEvents(tx, env.ID, append(events, more...), c.reportable(outer, env, pt))
}

// errDropContent marks content that decrypted but is refused (a transcript
// from another account, a group change that does not apply): the session's
// progress is kept, nothing is handed on.
var errDropContent = errors.New("client: content refused")

// storeEvents puts the events of one envelope in the inbox, and the
// messages among them in the history, a message received with rep (when
// not nil): what reporting it takes.
func (c *Client) storeEvents(tx *profile.Tx, envelopeID string, events []any, rep *api.ReportRequest) error {
	for _, ev := range events {
		it, err := encodeEvent(envelopeID, ev)
		if err != nil {
			return err
		}
		if err := tx.AddInbox(it); err != nil {
			return err
		}
		if m, ok := ev.(*storedMessage); ok {
			if err := putHistory(tx, m); err != nil {
				return err
			}
			if rep != nil && !m.Outgoing {
				if err := putReportable(tx, m.ID, rep); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// pairwiseContent turns the content of a one-to-one message into events,
// after acting on what it carries: a transcript of this account's own
// message, a timer change, a group change or sender key.
func (c *Client) pairwiseContent(tx *profile.Tx, env *api.Envelope, from string, identity keys.PublicKey, cont *content.Content, changed bool, now time.Time) ([]any, error) {
	self := env.SourceAccount == c.accountID
	if self && !identity.Equal(c.identity.Public) {
		return nil, errDropContent // our own account under another key: not ours
	}
	if cont.Sync && !self {
		return nil, errDropContent // only this account's devices make transcripts
	}
	if cont.Receipt != nil {
		if self {
			return nil, errDropContent
		}
		return c.applyReceipt(tx, env.SourceAccount, from, cont.Receipt)
	}
	if cont.GroupID != nil {
		return c.groupContent(tx, env, from, identity, cont, now)
	}
	if self && !cont.Sync {
		return nil, nil // a new device of this account saying hello
	}
	if cont.Sync && cont.Destination != "" {
		if _, err := normalizeUsername(cont.Destination); err != nil {
			return nil, errDropContent
		}
	}
	m := c.newStoredMessage(env, from, cont, now)
	m.IdentityChanged = changed
	conv := m.conversation()
	// The conversation follows the timer of the newest message in it, as
	// Signal's clients do; a timer update says so out loud.
	timer, err := tx.Timer(conv)
	if err != nil {
		return nil, err
	}
	if want := time.Duration(cont.ExpireTimer) * time.Second; want != timer {
		if err := tx.SetTimer(conv, want, now); err != nil {
			return nil, err
		}
		m.TimerUpdate = true
	}
	return []any{m}, nil
}

// newStoredMessage makes the stored form of a message received.
func (c *Client) newStoredMessage(env *api.Envelope, from string, cont *content.Content, now time.Time) *storedMessage {
	m := messageFrom(cont, now)
	m.ID, m.From, m.FromDevice, m.Received = env.ID, from, env.SourceDevice, env.ServerTimestamp
	if cont.Sync {
		m.Outgoing, m.To = true, cont.Destination
	}
	if env.SourceAccount != c.accountID {
		m.Unread = true
		c.queueReceipt(from, content.ReceiptDelivered, cont.Timestamp)
	}
	if a := cont.Attachment; a != nil {
		m.Attachment = &storedAttachment{
			FileName:   sanitizeFileName(a.FileName),
			SenderType: a.ContentType,
			Size:       a.Size,
			ViewOnce:   cont.ViewOnce,
			BlobID:     a.ID,
			Key:        a.Key,
			Digest:     a.Digest,
			BlobSize:   a.BlobSize,
		}
	}
	return m
}

// refillInterval is the least time between two refills: each stores up to
// 2*targetPreKeys private keys, and a hostile server must not be able to
// grow the profile without limit by asking over and over.
const refillInterval = time.Minute

// errRefillTooSoon: a refill was asked for within refillInterval of the
// last one, and not answered; the server asks again.
var errRefillTooSoon = errors.New("client: refill asked for too soon after the last one")

// refill tops the one-time prekeys on the server up to targetPreKeys,
// storing their private halves before uploading; at most once per
// refillInterval.
func (c *Client) refill(ctx context.Context, ks *api.KeyStatus) error {
	nPre := min(max(targetPreKeys-ks.PreKeys, 0), api.MaxPreKeysPerUpload)
	nKyber := min(max(targetPreKeys-ks.KyberPreKeys, 0), api.MaxPreKeysPerUpload)
	if nPre == 0 && nKyber == 0 {
		return nil
	}
	now := time.Now()
	last := c.lastRefill.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < refillInterval || !c.lastRefill.CompareAndSwap(last, now.UnixNano()) {
		return errRefillTooSoon
	}
	var up *api.KeyUpload
	err := c.st.Update(ctx, func(tx *profile.Tx) error {
		var err error
		up, err = genOneTime(tx, c.identity.Private, nPre, nKyber, time.Now())
		return err
	})
	if err != nil {
		return err
	}
	if err := c.do(ctx, http.MethodPut, api.PathKeys, up, nil); err != nil {
		return fmt.Errorf("client: uploading prekeys: %w", err)
	}
	return nil
}
