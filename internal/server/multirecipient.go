package server

import (
	"crypto/subtle"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/protocol/sealedsender"
)

// PUT /v1/messages/multi-recipient: a sealed sender v2 message for many
// recipients at once (a group message), split here, without any key, into
// one envelope per recipient device. Like every unidentified send it names
// no sender: the combined access key of the recipients authorises it, the
// envelopes have no source, and the send id is recorded under no one. What
// the server learns is the recipient set, which it needs to deliver.
//
// The devices of every recipient are checked as for a one-recipient send;
// any mismatch refuses the whole send (nothing is queued) and lists each
// recipient's missing, extra or stale devices.
func (s *Server) handleMultiRecipient(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if len(r.Header.Values("Authorization")) > 0 {
		return badRequest("a multi-recipient send carries %s, not Authorization", api.HeaderUnidentifiedAccessKey)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != api.ContentTypeMultiRecipient {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "content type must be %s", api.ContentTypeMultiRecipient)
	}
	q := r.URL.Query()
	sendID := q.Get("id")
	if !api.ValidUUID(sendID) {
		return badRequest("send id must be a lower-case version-4 uuid")
	}
	ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if err != nil || ts <= 0 {
		return badRequest("timestamp must be positive Unix milliseconds")
	}
	commitment, err := parseFrankingQuery(q)
	if err != nil {
		return err
	}
	var got [api.UnidentifiedAccessKeySize]byte
	vals := r.Header.Values(api.HeaderUnidentifiedAccessKey)
	if len(vals) != 1 {
		return errAccessDenied
	}
	if got, err = api.ParseUnidentifiedAccessKey(vals[0]); err != nil {
		return errAccessDenied
	}
	limit := s.cfg.MaxBody
	if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "body over %d bytes", limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "body over %d bytes", limit)
	}
	if err != nil {
		return badRequest("reading the body: %v", err)
	}
	msg, err := sealedsender.ParseSent(body)
	if err != nil {
		return badRequest("not a multi-recipient message: %v", err)
	}
	if len(msg.Recipients) == 0 || len(msg.Recipients) > api.MaxMultiRecipients {
		return badRequest("a multi-recipient send has 1 to %d recipients", api.MaxMultiRecipients)
	}

	// The recipients and their combined key. Every recipient is looked up
	// (in one read) and XORed whatever happens, so that the answer's timing
	// does not tell which recipient is unknown.
	ids := make([]string, len(msg.Recipients))
	for i, rc := range msg.Recipients {
		if !rc.ServiceID.IsACI() {
			return badRequest("recipient %d is not an account", i)
		}
		seen := make(map[uint32]bool, len(rc.Devices))
		for _, d := range rc.Devices {
			if seen[d.ID] {
				return badRequest("recipient %d: device %d addressed twice", i, d.ID)
			}
			seen[d.ID] = true
		}
		ids[i] = rc.ServiceID.UUID()
	}
	accts, err := s.st.AccountsByID(ctx, ids)
	if err != nil {
		return err
	}
	var want [api.UnidentifiedAccessKeySize]byte
	known := true
	for _, a := range accts {
		switch {
		case a == nil:
			known = false
		case len(a.UnidentifiedAccessKey) == api.UnidentifiedAccessKeySize:
			want = api.CombineAccessKeys(want, [api.UnidentifiedAccessKeySize]byte(a.UnidentifiedAccessKey))
		case !a.UnrestrictedUnidentifiedAccess:
			// No key and not open to anyone: no sealed send may
			// reach it, as for a one-recipient send.
			known = false
		}
	}
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		return errAccessDenied
	}
	now := s.now()
	for _, a := range accts {
		if ok, retry := s.recipientLimit.allow(a.ID, now); !ok {
			s.met.rateLimited.WithLabelValues("recipient").Inc()
			return rateLimited(retry)
		}
	}
	used := func() (bool, error) { return s.st.SealedSendUsed(ctx, multiRecipient, sendID) }
	send := &store.Send{Recipient: multiRecipient, SendID: sendID}
	if err := s.checkRecipients(r, msg, accts); err != nil {
		return orDuplicate(err, used)
	}
	for i, rc := range msg.Recipients {
		content := msg.ForRecipient(i)
		if len(content) > s.cfg.MaxEnvelope {
			return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "message content over %d bytes", s.cfg.MaxEnvelope)
		}
		for _, d := range rc.Devices {
			send.Envelopes = append(send.Envelopes, store.Envelope{
				ID:              api.NewUUID(),
				AccountID:       accts[i].ID,
				DeviceID:        d.ID,
				Type:            api.EnvelopeUnidentifiedSender,
				ClientTimestamp: time.UnixMilli(ts),
				ServerTimestamp: now,
				Content:         content,
				Franking:        commitment,
			})
		}
	}
	return s.enqueue(ctx, w, send, func() error {
		if err := s.checkRecipients(r, msg, accts); err != nil {
			return orDuplicate(err, used)
		}
		return orDuplicate(errorf(http.StatusConflict, api.CodeMismatchedDevices, "the recipients' devices changed"), used)
	})
}

// multiRecipient is the recipient multi-recipient send ids are recorded
// under: no account's id, so the record names no one.
const multiRecipient = ""

// checkRecipients checks every recipient's devices as checkDevices does for
// one, and answers for all of them: 409 when any has missing or extra
// devices, else 410 when any has stale ones, each listed in Recipients.
func (s *Server) checkRecipients(r *http.Request, msg *sealedsender.SentMessage, accts []*store.Account) error {
	ids := make([]string, len(accts))
	for i, a := range accts {
		ids[i] = a.ID
	}
	devs, err := s.st.DevicesOf(r.Context(), ids)
	if err != nil {
		return err
	}
	var mismatched, stale []api.RecipientDevices
	for i, rc := range msg.Recipients {
		msgs := make([]api.OutgoingMessage, len(rc.Devices))
		for j, d := range rc.Devices {
			msgs[j] = api.OutgoingMessage{DeviceID: d.ID, RegistrationID: d.RegistrationID}
		}
		err := compareDevices(accts[i].ID, devs[i], nil, msgs)
		var he *httpError
		switch {
		case err == nil:
		case errors.As(err, &he) && he.body.Code == api.CodeMismatchedDevices:
			mismatched = append(mismatched, api.RecipientDevices{AccountID: accts[i].ID,
				MissingDevices: he.body.MissingDevices, ExtraDevices: he.body.ExtraDevices})
		case errors.As(err, &he) && he.body.Code == api.CodeStaleDevices:
			stale = append(stale, api.RecipientDevices{AccountID: accts[i].ID, StaleDevices: he.body.StaleDevices})
		case errors.As(err, &he) && he.body.Code == api.CodeNotFound:
			// An account without devices: all it was sent to are extra.
			rd := api.RecipientDevices{AccountID: accts[i].ID}
			for _, m := range msgs {
				rd.ExtraDevices = append(rd.ExtraDevices, m.DeviceID)
			}
			mismatched = append(mismatched, rd)
		default:
			return err
		}
	}
	if len(mismatched) > 0 {
		e := errorf(http.StatusConflict, api.CodeMismatchedDevices, "the devices addressed are not the recipients' current devices")
		e.body.Recipients = mismatched
		return e
	}
	if len(stale) > 0 {
		e := errorf(http.StatusGone, api.CodeStaleDevices, "sessions with these devices are stale")
		e.body.Recipients = stale
		return e
	}
	return nil
}
