package server

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/frontdoor"
	"github.com/doorless/doorless/internal/requestlog"
	"github.com/doorless/doorless/internal/store"
)

// The front door (docs/legal-requests.md): the public request log, the
// legal key, transparency reports, the notices of published requests for
// their targets, and the admin API that processes a request. Run publishes
// requests whose non-disclosure date has passed, at start and every
// LegalConfig.PublishInterval.

// DefaultPublishInterval is how often Run publishes requests whose
// non-disclosure date has passed.
const DefaultPublishInterval = 10 * time.Minute

// LegalConfig configures the front door.
type LegalConfig struct {
	// Desk processes requests and publishes them (doorlessd: over the
	// data directory's "legal").
	Desk *frontdoor.Desk
	// Log serves the request log read-only (requestlog.Log.Handler).
	Log http.Handler
	// Key is the legal key's note verifier key.
	Key string
	// AdminToken guards the admin API.
	AdminToken *frontdoor.AdminToken
	// PublishInterval is how often Run publishes (default
	// DefaultPublishInterval).
	PublishInterval time.Duration
}

// legalRoutes registers the front door's endpoints when it is configured.
func (s *Server) legalRoutes(handle func(string, handlerFunc)) {
	lc := s.cfg.Legal
	if lc == nil {
		return
	}
	logHandler := http.StripPrefix(strings.TrimSuffix(api.PathLegalLogPrefix, "/"), lc.Log)
	handle("GET "+api.PathLegalLogPrefix, s.limitIP(func(w http.ResponseWriter, r *http.Request) error {
		logHandler.ServeHTTP(w, r)
		return nil
	}))
	handle("GET "+api.PathLegalKey, s.limitIP(s.handleLegalKey))
	handle("GET "+api.PathTransparencyReport, s.limitIP(s.handleTransparencyReport))
	handle("GET "+api.PathLegalNotices, s.limitIP(s.authed(s.handleLegalNotices)))
	handle("POST "+api.PathAdminLegalRequests, s.limitIP(s.handleLegalRequest))
}

func writeText(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (s *Server) handleLegalKey(w http.ResponseWriter, r *http.Request) error {
	writeText(w, []byte(s.cfg.Legal.Key+"\n"))
	return nil
}

func (s *Server) handleTransparencyReport(w http.ResponseWriter, r *http.Request) error {
	period := r.URL.Query().Get("period")
	if period != "" {
		if _, _, err := requestlog.PeriodBounds(period); err != nil {
			return badRequest("period must be YYYY-QN")
		}
	}
	rep, err := s.st.TransparencyReport(r.Context(), period)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no transparency report for the period")
	}
	if err != nil {
		return err
	}
	w.Header().Set(api.HeaderLogIndex, strconv.FormatUint(rep.LogIndex, 10))
	writeText(w, rep.Signed)
	return nil
}

func (s *Server) handleLegalNotices(w http.ResponseWriter, r *http.Request, dev *store.Device) error {
	ns, err := s.cfg.Legal.Desk.Notices(r.Context(), dev.AccountID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.LegalNoticesResponse{Notices: ns})
	return nil
}

// handleLegalRequest processes a signed legal request for the operator
// (bearer admin token): 200 with the disclosure package, or 422 "refused"
// naming the reason. Either way the request is logged.
func (s *Server) handleLegalRequest(w http.ResponseWriter, r *http.Request) error {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.cfg.Legal.AdminToken.Check(token) {
		return errorf(http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong admin token")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "content type must be text/plain")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, frontdoor.MaxRequest))
	if err != nil {
		return err
	}
	res, err := s.cfg.Legal.Desk.Process(r.Context(), body)
	if err != nil {
		return err
	}
	if res.Refusal != nil {
		return errorf(http.StatusUnprocessableEntity, api.CodeRefused, "%s", res.Refusal.Reason)
	}
	writeText(w, res.Package)
	return nil
}

// runLegal publishes due requests now and every PublishInterval until ctx
// ends; it closes the returned channel when it has stopped.
func (s *Server) runLegal(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if s.cfg.Legal == nil {
		close(done)
		return done
	}
	interval := s.cfg.Legal.PublishInterval
	if interval <= 0 {
		interval = DefaultPublishInterval
	}
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			n, err := s.cfg.Legal.Desk.Publish(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("publishing legal requests failed", "err", err)
			case n > 0:
				s.log.Info("published legal requests", "count", n)
			}
			if s.onLegalPublished != nil {
				s.onLegalPublished()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return done
}
