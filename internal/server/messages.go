package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
)

// PUT /v1/messages/{username}: queues one envelope for every current device
// of the recipient (but the sending device, when writing to one's own
// account), durably, then signals those devices.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request, sender *store.Device) error {
	ctx := r.Context()
	var req api.SendRequest
	if err := decode(w, r, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if !api.ValidUUID(req.ID) {
		return badRequest("send id must be a lower-case version-4 uuid")
	}
	if req.Timestamp <= 0 {
		return badRequest("timestamp must be positive Unix milliseconds")
	}
	seen := make(map[uint32]bool, len(req.Messages))
	for _, m := range req.Messages {
		switch {
		case seen[m.DeviceID]:
			return badRequest("device %d addressed twice", m.DeviceID)
		case !api.ValidEnvelopeType(m.Type):
			return badRequest("message type %d unknown", m.Type)
		case len(m.Content) == 0:
			return badRequest("message without content")
		case len(m.Content) > s.cfg.MaxEnvelope:
			return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "message content over %d bytes", s.cfg.MaxEnvelope)
		}
		seen[m.DeviceID] = true
	}
	recipient, err := s.accountByUsername(ctx, r.PathValue("username"))
	if err != nil {
		return err
	}
	// A retry of a send that landed (its answer lost) is a duplicate
	// whatever the recipient's devices are now: answering 409/410 instead
	// would have the client re-encrypt under a new id and deliver twice.
	// Enqueue still refuses a duplicate atomically, for a retry racing the
	// first attempt.
	switch used, err := s.st.SendUsed(ctx, sender.AccountID, sender.ID, req.ID); {
	case err != nil:
		return err
	case used:
		return errorf(http.StatusConflict, api.CodeDuplicate, "send id already used")
	}
	if err := s.checkDevices(ctx, recipient.ID, sender, req.Messages); err != nil {
		return err
	}
	if len(req.Messages) == 0 {
		// Writing to one's own account, which has no other device.
		writeJSON(w, http.StatusOK, api.SendResponse{Delivered: 0})
		return nil
	}

	now := s.now()
	send := &store.Send{
		SourceAccount: sender.AccountID,
		SourceDevice:  sender.ID,
		SendID:        req.ID,
		Envelopes:     make([]store.Envelope, 0, len(req.Messages)),
	}
	for _, m := range req.Messages {
		send.Envelopes = append(send.Envelopes, store.Envelope{
			ID:              api.NewUUID(),
			AccountID:       recipient.ID,
			DeviceID:        m.DeviceID,
			Type:            m.Type,
			SourceAccount:   sender.AccountID,
			SourceDevice:    sender.ID,
			ClientTimestamp: time.UnixMilli(req.Timestamp),
			ServerTimestamp: now,
			Content:         m.Content,
		})
	}
	switch err := s.st.Enqueue(ctx, send, s.cfg.MaxQueue); {
	case errors.Is(err, store.ErrDuplicate):
		return errorf(http.StatusConflict, api.CodeDuplicate, "send id already used")
	case errors.Is(err, store.ErrQueueFull):
		return errorf(http.StatusTooManyRequests, api.CodeQueueFull, "a recipient device's queue is full")
	case errors.Is(err, store.ErrNotFound):
		// A device went away since the check: tell the sender which.
		if err := s.checkDevices(ctx, recipient.ID, sender, req.Messages); err != nil {
			return err
		}
		return errorf(http.StatusConflict, api.CodeMismatchedDevices, "the recipient's devices changed")
	case err != nil:
		return err
	}
	s.met.enqueued.Add(float64(len(send.Envelopes)))
	for _, m := range req.Messages {
		s.br.Notify(recipient.ID, m.DeviceID, broker.Mail)
	}
	writeJSON(w, http.StatusOK, api.SendResponse{Delivered: len(send.Envelopes)})
	return nil
}

// checkDevices compares the devices a send addresses with the recipient's
// current ones: 409 mismatched_devices for missing or extra devices (the
// sending device itself is always extra), else 410 stale_devices for
// registration ids that are not current.
func (s *Server) checkDevices(ctx context.Context, recipientID string, sender *store.Device, msgs []api.OutgoingMessage) error {
	devs, err := s.st.Devices(ctx, recipientID)
	if err != nil {
		return err
	}
	self := recipientID == sender.AccountID
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
