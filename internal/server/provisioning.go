package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/store"
)

// The provisioning relay: a new device opens a mailbox (POST), shows its
// address to one of the account's devices (as a QR code, say), and
// long-polls it (GET); that device puts one message in it (PUT), ciphertext
// for a key only the new device holds; the waiting GET takes it, and the
// mailbox is gone.
//
// The long-poll subscribes to the broker as a pseudo-device for the mailbox
// (provisioningSubject), so that a PUT on any node wakes it; the store holds
// the message, the signal only says "look again".

const (
	// provisioningAddressSize is the entropy of a mailbox address, in
	// bytes (128 bits, 22 characters of base64url).
	provisioningAddressSize = 16
	// provisioningTTL is how long a mailbox stays valid.
	provisioningTTL = api.ProvisioningTTL * time.Millisecond
	// provisioningWait is how long a GET waits for the message before
	// answering 204: under the 30-60 s idle timeouts of common proxies.
	provisioningWait = 25 * time.Second
	// maxProvisioningBody bounds a PUT's body: the message in base64 and
	// the JSON around it.
	maxProvisioningBody = api.MaxProvisioningMessage*4/3 + 1024
)

// parseAddress decodes a mailbox address and returns the hash it is stored
// under; false for anything but 22 characters of base64url.
func parseAddress(address string) ([]byte, bool) {
	if len(address) != base64.RawURLEncoding.EncodedLen(provisioningAddressSize) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(address)
	if err != nil || len(b) != provisioningAddressSize {
		return nil, false
	}
	h := sha256.Sum256([]byte(address))
	return h[:], true
}

// provisioningSubject is the broker "account" a long-poll for the mailbox
// subscribes as (with device 0): not an account id (those are UUIDs), and
// derived from the address's hash, so that a broker between nodes never
// carries the address.
func provisioningSubject(addressHash []byte) string {
	return "provisioning." + hex.EncodeToString(addressHash)
}

var errNoMailbox = errorf(http.StatusNotFound, api.CodeNotFound, "no such provisioning mailbox, or it expired")

// POST /v1/provisioning
func (s *Server) handleOpenMailbox(w http.ResponseWriter, r *http.Request) error {
	var b [provisioningAddressSize]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	address := base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(address))
	if err := s.st.CreateMailbox(r.Context(), &store.Mailbox{AddressHash: h[:], Expires: s.now().Add(provisioningTTL)}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.ProvisioningAddress{Address: address})
	return nil
}

// GET /v1/provisioning/{address}: the message, once; 204 when none came
// within the wait.
func (s *Server) handlePollMailbox(w http.ResponseWriter, r *http.Request) error {
	h, ok := parseAddress(r.PathValue("address"))
	if !ok {
		return errNoMailbox
	}
	ctx := r.Context()
	// Subscribe before looking, so that a message put after the look
	// still wakes this request.
	sigs, unsubscribe, err := s.br.Subscribe(provisioningSubject(h), 0)
	if err != nil {
		return err
	}
	defer unsubscribe()
	wait := s.provisioningWait
	if wait <= 0 {
		wait = provisioningWait
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		msg, err := s.st.TakeMailbox(ctx, h, s.now())
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, api.ProvisioningMessage{Message: msg})
			return nil
		case errors.Is(err, store.ErrNotFound):
			return errNoMailbox
		case !errors.Is(err, store.ErrMailboxEmpty):
			return err
		}
		select {
		case sig := <-sigs:
			if sig&broker.Displaced != 0 {
				// Another poll of the same mailbox took over.
				w.WriteHeader(http.StatusNoContent)
				return nil
			}
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-s.drain:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// PUT /v1/provisioning/{address}
func (s *Server) handlePutMailbox(w http.ResponseWriter, r *http.Request, _ *store.Device) error {
	h, ok := parseAddress(r.PathValue("address"))
	if !ok {
		return errNoMailbox
	}
	var req api.ProvisioningMessage
	if err := decode(w, r, maxProvisioningBody, &req); err != nil {
		return err
	}
	switch n := len(req.Message); {
	case n == 0:
		return badRequest("the message is empty")
	case n > api.MaxProvisioningMessage:
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "message over %d bytes", api.MaxProvisioningMessage)
	}
	switch err := s.st.PutMailbox(r.Context(), h, req.Message, s.now()); {
	case errors.Is(err, store.ErrNotFound):
		return errNoMailbox
	case errors.Is(err, store.ErrMailboxFull):
		return errorf(http.StatusConflict, api.CodeDuplicate, "the mailbox already holds a message")
	case err != nil:
		return err
	}
	s.br.Notify(provisioningSubject(h), 0, broker.Provisioned)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sweepProvisioning deletes expired link tokens and mailboxes.
func (s *Server) sweepProvisioning(ctx context.Context, now time.Time) {
	if _, err := s.st.ExpireProvisioning(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Error("provisioning expiry failed", "err", err)
	}
}
