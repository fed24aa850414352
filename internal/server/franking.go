package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/franking"
	"github.com/doorless/doorless/internal/store"
)

// Message franking (internal/franking) on the server: every send carries a
// franking commitment, stored with each queued envelope; the envelope is
// handed out with a delivery tag binding the commitment to that delivery
// (the tag is computed then and never stored); each account's devices get
// the account's franking key; and a recipient may report a message it
// received, which is verified and kept for the operator's review.

// Report limits.
const (
	// ReportWindow is how old a message may be reported: at most 90 days
	// by its envelope's server timestamp, and by the content's own
	// timestamp (the sender's clock, inside the committed bytes), at most
	// 90 days and ReportClockSkew. The second bounds a sealed group
	// message, whose commitment anyone can have delivered again later (a
	// fresh server timestamp; internal/franking).
	ReportWindow = 90 * 24 * time.Hour
	// ReportClockSkew is how far behind the sender's clock may be without
	// shortening the window.
	ReportClockSkew = 24 * time.Hour
	// ReportRetention is how long a report is kept after it was made.
	ReportRetention = 90 * 24 * time.Hour
)

// Labels of the hashes a report keeps in place of what it identifies.
const (
	commitmentHashLabel = "doorless report commitment v1"
)

var (
	errNoFranking = badRequest("a send carries a franking commitment of %d bytes", api.FrankingSize)
	errReported   = errorf(http.StatusConflict, api.CodeDuplicate, "the message is already reported by this account")
)

// newFranking makes franking keys from a random secret, for a Server
// configured without any.
func newFranking() (*franking.Server, error) {
	secret, err := franking.NewSecret(rand.Reader)
	if err != nil {
		return nil, err
	}
	return franking.NewServer(secret)
}

func (s *Server) frankingRoutes(handle func(string, handlerFunc)) {
	handle("GET "+api.PathFrankingKey, s.limitIP(s.authed(s.handleFrankingKey)))
	handle("POST "+api.PathReports, s.limitIP(s.authed(s.handleReport)))
}

// parseFrankingQuery reads a multi-recipient send's franking commitment:
// exactly one api.QueryFranking parameter, unpadded URL-safe base64 of
// api.FrankingSize bytes.
func parseFrankingQuery(q url.Values) ([]byte, error) {
	vals := q[api.QueryFranking]
	// The length first: the decoder skips line breaks, even when strict.
	if len(vals) != 1 || len(vals[0]) != base64.RawURLEncoding.EncodedLen(api.FrankingSize) {
		return nil, errNoFranking
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(vals[0])
	if err != nil || len(b) != api.FrankingSize {
		return nil, errNoFranking
	}
	return b, nil
}

// deliveryTag returns the commitment of envelope e, as queued for the
// device (account, device), and the delivery tag that binds it to this
// delivery; neither for an envelope queued without a commitment.
func (s *Server) deliveryTag(e *store.Envelope, account string, device uint32) (commitment, tag []byte) {
	if len(e.Franking) == 0 {
		return nil, nil
	}
	t := s.cfg.Franking.Tag(&franking.Delivery{
		Commitment:      e.Franking,
		Recipient:       account,
		RecipientDevice: device,
		Source:          e.SourceAccount,
		SourceDevice:    e.SourceDevice,
		EnvelopeType:    e.Type,
		ServerTimestamp: e.ServerTimestamp.UnixMilli(),
	})
	return e.Franking, t[:]
}

// GET /v1/franking/key: the caller's account franking key.
func (s *Server) handleFrankingKey(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	k := s.cfg.Franking.AccountKey(dev.AccountID)
	writeJSON(w, http.StatusOK, api.FrankingKeyResponse{Key: k[:]})
	return nil
}

// reportRejected answers a report that does not verify or may not be kept.
func reportRejected(why string) *httpError {
	return errorf(http.StatusUnprocessableEntity, api.CodeReportRejected, "%s", why)
}

// POST /v1/reports: an abuse report of a message the caller's account
// received. The delivery it claims is the caller's: the report is verified
// with the caller's account as the recipient, so an account can only
// report what was delivered to it. The recipient device may be any device
// id, current or removed: the delivery tag proves the envelope went to that
// device of this account, and a device removed since may have shown the
// message to its user all the same. A report that verifies, is of a message
// at most ReportWindow old from another account, and has something to
// review (text or an attachment) is stored once per reporter and message.
// A sealed group message's report proves less: that the sender sent the
// content to a group and that its commitment reached the reporter, not
// that the sender addressed the reporter (internal/franking); the stored
// report says so (store.Report.DeliveryUnproven).
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	var req api.ReportRequest
	// The content is at most an envelope's size, in base64, with room for
	// the reason (JSON escapes take up to 6 bytes a byte) and the rest.
	limit := int64(base64.StdEncoding.EncodedLen(s.cfg.MaxEnvelope)) + 10<<10
	if err := decode(w, r, limit, &req); err != nil {
		return err
	}
	switch {
	case len(req.Content) == 0:
		return badRequest("a report carries the message's content")
	case len(req.Content) > s.cfg.MaxEnvelope:
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "content over %d bytes", s.cfg.MaxEnvelope)
	case !api.ValidUUID(req.Sender):
		return badRequest("sender must be an account id")
	case req.SourceAccount != "" && !api.ValidUUID(req.SourceAccount):
		return badRequest("source account must be empty or an account id")
	case req.DeviceID < 1 || req.DeviceID > api.MaxDevicesPerAccount:
		return badRequest("device id must be 1..%d", api.MaxDevicesPerAccount)
	case req.ServerTimestamp <= 0:
		return badRequest("server timestamp must be positive Unix milliseconds")
	case len(req.Franking) != api.FrankingSize || len(req.FrankingTag) != api.FrankingSize:
		return badRequest("franking commitment and tag are %d bytes each", api.FrankingSize)
	case len(req.Reason) > api.MaxReportReason:
		return badRequest("reason over %d bytes", api.MaxReportReason)
	case !utf8.ValidString(req.Reason):
		return badRequest("reason is not utf-8")
	}
	v, err := s.cfg.Franking.VerifyReport(&franking.Report{
		Content: req.Content,
		Delivery: franking.Delivery{
			Commitment:      req.Franking,
			Recipient:       dev.AccountID,
			RecipientDevice: req.DeviceID,
			Source:          req.SourceAccount,
			SourceDevice:    req.SourceDevice,
			EnvelopeType:    req.Type,
			ServerTimestamp: req.ServerTimestamp,
		},
		DeliveryTag: req.FrankingTag,
		Sender:      req.Sender,
	})
	switch {
	case errors.Is(err, franking.ErrUnfranked):
		return reportRejected("the content is not franked content")
	case errors.Is(err, franking.ErrAltered):
		return reportRejected("the content does not match its commitment")
	case errors.Is(err, franking.ErrForgedDelivery):
		return reportRejected("the delivery tag does not verify for this account")
	case errors.Is(err, franking.ErrSenderUnproven):
		return reportRejected("the sender is not proven")
	case err != nil:
		return err
	}
	now := s.now()
	queued := time.UnixMilli(req.ServerTimestamp)
	c := v.Content
	sent := time.UnixMilli(c.Timestamp)
	switch {
	case now.Sub(queued) > ReportWindow:
		return reportRejected("the message is older than 90 days")
	case now.Sub(sent) > ReportWindow+ReportClockSkew:
		return reportRejected("the message is older than 90 days by its own timestamp")
	case v.Sender == dev.AccountID:
		return reportRejected("the message is from the reporter's own account")
	case c.Body == "" && c.Attachment == nil:
		return reportRejected("the message has no text or attachment to review")
	}
	rep := &store.Report{
		ID:             api.NewUUID(),
		Reporter:       dev.AccountID,
		Sender:         v.Sender,
		Sealed:         v.Sealed,
		CommitmentHash: labelledHash(commitmentHashLabel, req.Franking),
		Sent:           sent,
		Queued:         queued,
		Reported:       now,
		Body:           c.Body,
		Reason:         req.Reason,
		ToMany:         c.GroupID != nil,
	}
	if a := c.Attachment; a != nil {
		rep.Attachment = &store.ReportAttachment{ContentType: a.ContentType, FileName: a.FileName, Size: a.Size}
	}
	switch err := s.st.AddReport(r.Context(), rep); {
	case errors.Is(err, store.ErrDuplicateReport):
		return errReported
	case err != nil:
		return err
	}
	s.log.Info("abuse report accepted", "report", rep.ID)
	writeJSON(w, http.StatusOK, api.ReportResponse{ID: rep.ID})
	return nil
}

// labelledHash is SHA-256 over a label, a zero byte and b.
func labelledHash(label string, b []byte) []byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

// sweepReports deletes the reports older than ReportRetention.
func (s *Server) sweepReports(ctx context.Context, now time.Time) {
	n, err := s.st.ExpireReports(ctx, now.Add(-ReportRetention))
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("report expiry failed", "err", err)
	case n > 0:
		s.log.Info("expired abuse reports", "count", n)
	}
}
