package server

import (
	"errors"
	"net/http"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

// certificateRoutes adds the sealed-sender certificate endpoints, when the
// server has an issuer; without one they answer 404 and clients send
// authenticated.
func (s *Server) certificateRoutes(handle func(string, handlerFunc)) {
	if s.cfg.Certificates == nil {
		return
	}
	handle("GET "+api.PathSenderCertificate, s.limitIP(s.authed(s.handleSenderCertificate)))
	handle("GET "+api.PathTrustRoot, s.limitIP(s.handleTrustRoot))
}

// GET /v1/certificate/delivery: a certificate for the calling device. Nothing
// is stored: the certificate is made, signed and forgotten.
func (s *Server) handleSenderCertificate(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	acct, err := s.st.AccountByID(r.Context(), dev.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthorized // deleted since the credentials were checked
	}
	if err != nil {
		return err
	}
	ik, err := keys.ParsePublicKey(acct.IdentityKey)
	if err != nil {
		return err
	}
	cert, err := s.cfg.Certificates.Issue(sealedsender.Sender{
		UUID: acct.ID, Name: acct.Username, DeviceID: dev.ID, IdentityKey: ik,
	}, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.SenderCertificateResponse{Certificate: cert.Bytes()})
	return nil
}

// GET /v1/certificate/trust-root
func (s *Server) handleTrustRoot(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, api.TrustRootResponse{PublicKey: s.cfg.Certificates.TrustRoot().Bytes()})
	return nil
}
