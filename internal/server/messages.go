package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
)

// sendRoute picks how PUT /v1/messages/{username} is authenticated: by the
// device's credentials (Authorization), or, for an unidentified
// (sealed-sender) send, by the recipient's unidentified access key
// (Unidentified-Access-Key). Both at once is a mistake: 400.
func (s *Server) sendRoute(authenticated, unidentified handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if len(r.Header.Values(api.HeaderUnidentifiedAccessKey)) == 0 {
			return authenticated(w, r)
		}
		if len(r.Header.Values("Authorization")) > 0 {
			return badRequest("a send carries Authorization or %s, not both", api.HeaderUnidentifiedAccessKey)
		}
		return unidentified(w, r)
	}
}

// PUT /v1/messages/{username} with Authorization: queues one envelope for
// every current device of the recipient (but the sending device, when
// writing to one's own account), durably, then signals those devices.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request, sender *store.Device) error {
	ctx := r.Context()
	req, err := s.decodeSend(w, r, false)
	if err != nil {
		return err
	}
	recipient, err := s.accountByUsername(ctx, r.PathValue("username"))
	if err != nil {
		return err
	}
	return s.deliver(w, r, recipient, sender, req, func() (bool, error) {
		return s.st.SendUsed(ctx, sender.AccountID, sender.ID, req.ID)
	})
}

// orDuplicate answers a send refused by err (its devices checked, not
// queued) with errDuplicateSend instead when its id was used: a retry of a
// send that landed (its answer lost) is a duplicate whatever the
// recipient's devices are now, for answering 409/410 would have the
// client re-encrypt under a new id and deliver twice. A send that passes
// its checks needs no such read: Enqueue refuses a used id atomically.
func orDuplicate(err error, used func() (bool, error)) error {
	var he *httpError
	if err == nil || !errors.As(err, &he) {
		return err
	}
	switch u, uerr := used(); {
	case uerr != nil:
		return uerr
	case u:
		return errDuplicateSend
	}
	return err
}

var (
	errDuplicateSend = errorf(http.StatusConflict, api.CodeDuplicate, "send id already used")
	// errAccessDenied answers every unidentified send that may not go
	// through, whatever the reason: a missing, malformed or wrong key, or
	// no such user.
	errAccessDenied = errorf(http.StatusUnauthorized, api.CodeUnidentifiedAccessDenied, "unidentified access denied")
)

// PUT /v1/messages/{username} with Unidentified-Access-Key: an unidentified
// (sealed-sender) send. The recipient's key (or its unrestricted access)
// stands in for the sender's credentials, so the server does not learn who
// sends: the envelopes name no source, and the send id is recorded under
// the recipient alone. The request is charged to its IP address and to the
// recipient's unidentified-send bucket; the device checks are those of an
// authenticated send.
func (s *Server) handleUnidentifiedSend(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	recipient, err := s.unidentifiedAccess(r)
	if err != nil {
		return err
	}
	if ok, retry := s.recipientLimit.allow(recipient.ID, s.now()); !ok {
		s.met.rateLimited.WithLabelValues("recipient").Inc()
		return rateLimited(retry)
	}
	req, err := s.decodeSend(w, r, true)
	if err != nil {
		return err
	}
	return s.deliver(w, r, recipient, nil, req, func() (bool, error) {
		return s.st.SealedSendUsed(ctx, recipient.ID, req.ID)
	})
}

// unidentifiedAccess checks the request's Unidentified-Access-Key against
// the recipient's: it returns the recipient when the key is well formed
// and is the account's key, or the account accepts any key; errAccessDenied
// otherwise. Whether the user does not exist, has no key or has another
// key, one 16-byte comparison runs in constant time (against a random key
// no one knows when there is nothing else to compare with), so the answer
// and its timing do not tell these apart.
func (s *Server) unidentifiedAccess(r *http.Request) (*store.Account, error) {
	var got [api.UnidentifiedAccessKeySize]byte
	wellFormed := false
	if vals := r.Header.Values(api.HeaderUnidentifiedAccessKey); len(vals) == 1 {
		k, err := api.ParseUnidentifiedAccessKey(vals[0])
		got, wellFormed = k, err == nil
	}
	want := s.dummyAccessKey[:]
	var acct *store.Account
	if name := r.PathValue("username"); api.ValidUsername(name) {
		a, err := s.st.AccountByUsername(r.Context(), name)
		switch {
		case err == nil:
			acct = a
			if len(a.UnidentifiedAccessKey) == api.UnidentifiedAccessKeySize {
				want = a.UnidentifiedAccessKey
			}
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	match := subtle.ConstantTimeCompare(got[:], want) == 1
	switch {
	case acct == nil || !wellFormed:
		return nil, errAccessDenied
	case acct.UnrestrictedUnidentifiedAccess:
		return acct, nil
	case match && len(acct.UnidentifiedAccessKey) == api.UnidentifiedAccessKeySize:
		return acct, nil
	}
	return nil, errAccessDenied
}

// decodeSend reads and checks a send's body: its id, timestamp and
// messages, whose types must be those of an unidentified send or of an
// authenticated one (api.ValidSendType).
func (s *Server) decodeSend(w http.ResponseWriter, r *http.Request, unidentified bool) (*api.SendRequest, error) {
	var req api.SendRequest
	if err := decode(w, r, s.cfg.MaxBody, &req); err != nil {
		return nil, err
	}
	if !api.ValidUUID(req.ID) {
		return nil, badRequest("send id must be a lower-case version-4 uuid")
	}
	if req.Timestamp <= 0 {
		return nil, badRequest("timestamp must be positive Unix milliseconds")
	}
	if len(req.Franking) != api.FrankingSize {
		return nil, errNoFranking
	}
	seen := make(map[uint32]bool, len(req.Messages))
	for _, m := range req.Messages {
		switch {
		case seen[m.DeviceID]:
			return nil, badRequest("device %d addressed twice", m.DeviceID)
		case !api.ValidSendType(m.Type, unidentified):
			return nil, badSendType(m.Type, unidentified)
		case len(m.Content) == 0:
			return nil, badRequest("message without content")
		case len(m.Content) > s.cfg.MaxEnvelope:
			return nil, errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "message content over %d bytes", s.cfg.MaxEnvelope)
		}
		seen[m.DeviceID] = true
	}
	return &req, nil
}

func badSendType(t int, unidentified bool) error {
	switch {
	case !api.ValidEnvelopeType(t):
		return badRequest("message type %d unknown", t)
	case unidentified:
		return badRequest("an unidentified send carries messages of type %d only", api.EnvelopeUnidentifiedSender)
	}
	return badRequest("messages of type %d go in an unidentified send (%s)", t, api.HeaderUnidentifiedAccessKey)
}

// deliver checks the devices a send addresses and queues its envelopes,
// from sender, or from no one (nil: an unidentified send). used tells
// whether the send's id was used (orDuplicate).
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, recipient *store.Account, sender *store.Device, req *api.SendRequest, used func() (bool, error)) error {
	ctx := r.Context()
	if err := s.checkDevices(ctx, recipient.ID, sender, req.Messages); err != nil {
		return orDuplicate(err, used)
	}
	if len(req.Messages) == 0 {
		// Writing to one's own account, which has no other device.
		writeJSON(w, http.StatusOK, api.SendResponse{Delivered: 0})
		return nil
	}

	now := s.now()
	send := &store.Send{Recipient: recipient.ID, SendID: req.ID, Envelopes: make([]store.Envelope, 0, len(req.Messages))}
	if sender != nil {
		send.SourceAccount, send.SourceDevice = sender.AccountID, sender.ID
	}
	for _, m := range req.Messages {
		send.Envelopes = append(send.Envelopes, store.Envelope{
			ID:              api.NewUUID(),
			AccountID:       recipient.ID,
			DeviceID:        m.DeviceID,
			Type:            m.Type,
			SourceAccount:   send.SourceAccount,
			SourceDevice:    send.SourceDevice,
			ClientTimestamp: time.UnixMilli(req.Timestamp),
			ServerTimestamp: now,
			Content:         m.Content,
			Franking:        req.Franking,
		})
	}
	return s.enqueue(ctx, w, send, func() error {
		if err := s.checkDevices(ctx, recipient.ID, sender, req.Messages); err != nil {
			return orDuplicate(err, used)
		}
		return orDuplicate(errorf(http.StatusConflict, api.CodeMismatchedDevices, "the recipient's devices changed"), used)
	})
}

// enqueue stores a send's envelopes durably, signals their devices and
// answers with how many were queued. When a device went away between the
// checks and the store, refused answers what the sender must hear instead.
func (s *Server) enqueue(ctx context.Context, w http.ResponseWriter, send *store.Send, refused func() error) error {
	switch err := s.st.Enqueue(ctx, send, s.cfg.MaxQueue); {
	case errors.Is(err, store.ErrDuplicate):
		return errDuplicateSend
	case errors.Is(err, store.ErrQueueFull):
		return errorf(http.StatusTooManyRequests, api.CodeQueueFull, "a recipient device's queue is full")
	case errors.Is(err, store.ErrNotFound):
		return refused()
	case err != nil:
		return err
	}
	s.met.enqueued.Add(float64(len(send.Envelopes)))
	// With no other node to tell, a device connected here gets the
	// envelope handed over rather than signalled to read it back.
	var conns []*wsConn
	if s.localOnly {
		conns = s.connsOf(send.Envelopes)
	}
	for i := range send.Envelopes {
		e := &send.Envelopes[i]
		if conns != nil && conns[i] != nil {
			conns[i].push(e)
		} else {
			s.br.Notify(e.AccountID, e.DeviceID, broker.Mail)
		}
	}
	writeJSON(w, http.StatusOK, api.SendResponse{Delivered: len(send.Envelopes)})
	return nil
}

// checkDevices compares the devices a send addresses with the recipient's
// current ones: 409 mismatched_devices for missing or extra devices (the
// sending device itself is always extra; sender is nil for an unidentified
// send), else 410 stale_devices for registration ids that are not current.
func (s *Server) checkDevices(ctx context.Context, recipientID string, sender *store.Device, msgs []api.OutgoingMessage) error {
	devs, err := s.st.Devices(ctx, recipientID)
	if err != nil {
		return err
	}
	return compareDevices(recipientID, devs, sender, msgs)
}

// compareDevices is checkDevices with the recipient's devices already read.
func compareDevices(recipientID string, devs []store.Device, sender *store.Device, msgs []api.OutgoingMessage) error {
	self := sender != nil && recipientID == sender.AccountID
	if !self && len(devs) == 0 {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no such user")
	}
	current := make(map[uint32]uint32, len(devs)) // device id → registration id
	for _, d := range devs {
		if !self || d.ID != sender.ID {
			current[d.ID] = d.RegistrationID
		}
	}
	addressed := make(map[uint32]bool, len(msgs))
	var mismatch api.Error
	var stale []uint32
	for _, m := range msgs {
		addressed[m.DeviceID] = true
		switch reg, ok := current[m.DeviceID]; {
		case !ok:
			mismatch.ExtraDevices = append(mismatch.ExtraDevices, m.DeviceID)
		case reg != m.RegistrationID:
			stale = append(stale, m.DeviceID)
		}
	}
	for id := range current {
		if !addressed[id] {
			mismatch.MissingDevices = append(mismatch.MissingDevices, id)
		}
	}
	if len(mismatch.MissingDevices) > 0 || len(mismatch.ExtraDevices) > 0 {
		slices.Sort(mismatch.MissingDevices)
		slices.Sort(mismatch.ExtraDevices)
		e := errorf(http.StatusConflict, api.CodeMismatchedDevices, "the devices addressed are not the recipient's current devices")
		e.body.MissingDevices, e.body.ExtraDevices = mismatch.MissingDevices, mismatch.ExtraDevices
		return e
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		e := errorf(http.StatusGone, api.CodeStaleDevices, "sessions with these devices are stale")
		e.body.StaleDevices = stale
		return e
	}
	return nil
}
