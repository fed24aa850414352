package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/store"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handlerFunc is an API handler: it writes a success itself and returns an
// *httpError (or any error, which becomes a 500) otherwise.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// authedFunc is a handler for an authenticated device.
type authedFunc func(w http.ResponseWriter, r *http.Request, dev *store.Device) error

// httpError is an answer other than success.
type httpError struct {
	status     int
	body       api.Error
	retryAfter time.Duration
}

func (e *httpError) Error() string {
	return fmt.Sprintf("server: %d %s: %s", e.status, e.body.Code, e.body.Message)
}

func errorf(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, body: api.Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func badRequest(format string, args ...any) *httpError {
	return errorf(http.StatusBadRequest, api.CodeBadRequest, format, args...)
}

var (
	errUnauthorized = errorf(http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong credentials")
	errUnavailable  = errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "server shutting down")
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h handlerFunc) {
		mux.Handle(pattern, s.serve(h))
	}
	handle("POST "+api.PathAccounts, s.limitIP(s.handleRegister))
	handle("GET "+api.PathAccount, s.limitIP(s.authed(s.handleAccount)))
	handle("DELETE "+api.PathAccountMe, s.limitIP(s.authed(s.handleDeleteAccount)))
	handle("PUT "+api.PathAttributes, s.limitIP(s.authed(s.handleSetAttributes)))
	handle("GET "+api.PathDevices, s.limitIP(s.authed(s.handleDevices)))
	handle("DELETE "+api.PathDevice, s.limitIP(s.authed(s.handleRemoveDevice)))
	handle("POST "+api.PathDevices, s.limitIP(s.handleLinkDevice))
	handle("POST "+api.PathLinkTokens, s.limitIP(s.authed(s.handleLinkToken)))
	handle("POST "+api.PathProvisioning, s.limitIP(s.handleOpenMailbox))
	handle("GET "+api.PathProvisioningMailbox, s.limitIP(s.handlePollMailbox))
	handle("PUT "+api.PathProvisioningMailbox, s.limitIP(s.authed(s.handlePutMailbox)))
	handle("PUT "+api.PathKeys, s.limitIP(s.authed(s.handleUploadKeys)))
	handle("GET "+api.PathKeyStatus, s.limitIP(s.authed(s.handleKeyStatus)))
	handle("GET "+api.PathBundle, s.limitIP(s.authed(s.handleBundle)))
	handle("PUT "+api.PathMessages, s.limitIP(s.sendRoute(s.authed(s.handleSend), s.handleUnidentifiedSend)))
	handle("GET "+api.PathWebSocket, s.limitIP(s.authed(s.handleWebSocket)))
	s.attachmentRoutes(handle)
	s.certificateRoutes(handle)
	s.transparencyRoutes(handle)
	s.frankingRoutes(handle)
	s.legalRoutes(handle)
	handle("PUT "+api.PathMultiRecipient, s.limitIP(s.handleMultiRecipient))
	handle("GET "+api.PathHealth, s.handleHealth)
	mux.Handle("GET "+api.PathMetrics, s.metricsHandler())
	return s.outer(mux)
}

// statusWriter records the status a handler answered with. It unwraps, so
// that the WebSocket upgrade can hijack the connection.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// outer counts requests in and out (for Shutdown), answers 404 and 405 in
// JSON, and logs and measures every request by its route pattern, never by
// its path (which may hold a username).
func (s *Server) outer(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if !s.begin() {
			w.Header().Set("Connection", "close")
			s.writeError(sw, errUnavailable)
		} else {
			defer s.end()
			if h, pattern := mux.Handler(r); pattern == "" {
				// No route: let the mux pick 404 or 405 (and its Allow
				// header), and answer that status in JSON.
				var rec discardWriter
				h.ServeHTTP(&rec, r)
				if allow := rec.Header().Get("Allow"); allow != "" {
					w.Header().Set("Allow", allow)
				}
				e := errorf(http.StatusNotFound, api.CodeNotFound, "no such endpoint")
				if rec.code == http.StatusMethodNotAllowed {
					e = errorf(http.StatusMethodNotAllowed, api.CodeBadRequest, "method not allowed")
				}
				s.writeError(sw, e)
			} else {
				mux.ServeHTTP(sw, r)
			}
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.met.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		s.met.duration.WithLabelValues(route).Observe(d.Seconds())
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", status), slog.Duration("duration", d)}
		if s.cfg.LogIPs {
			attrs = append(attrs, slog.String("ip", remoteIP(r)))
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// discardWriter keeps a response's status and headers, and drops its body.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}

func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// serve turns a handlerFunc into an http.Handler that writes its error.
func (s *Server) serve(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, err)
		}
	})
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			he = errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "body over %d bytes", mbe.Limit)
		} else {
			// Store and other internal errors carry no secrets, but they
			// are for the log, not the client.
			if errors.Is(err, context.Canceled) {
				s.log.Debug("request canceled", "err", err)
			} else {
				s.log.Error("internal error", "err", err)
			}
			he = errorf(http.StatusInternalServerError, api.CodeInternal, "internal error")
		}
	}
	if he.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="doorless", charset="UTF-8"`)
	}
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(he.retryAfter.Seconds()))))
	}
	body := he.body
	writeJSON(w, he.status, api.ErrorBody{Error: &body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own API types reach here; they always marshal.
		panic(fmt.Sprintf("server: marshal %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decode reads a JSON body of at most limit bytes into v: the Content-Type
// must be application/json, unknown fields and trailing data are refused.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedMedia, "content type must be application/json")
	}
	if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "body over %d bytes", limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, limit)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return badRequest("trailing data after the JSON body")
		}
		return jsonError(err, limit)
	}
	return nil
}

func jsonError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "body over %d bytes", limit)
	case errors.As(err, &ute):
		// Do not echo the value, only where it was.
		return badRequest("malformed JSON: wrong type for field %q", ute.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of body")
	default:
		return badRequest("malformed JSON: %v", err)
	}
}

// clientIP is the rate-limit key of the address the request came from: an
// IPv4 address, or the /64 an IPv6 address is in, since one host is
// commonly given a whole /64 and could otherwise take a fresh bucket per
// address. doorlessd trusts no forwarding header: behind a proxy, every
// client shares the proxy's limit.
func clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	addr := ap.Addr().Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	return netip.PrefixFrom(addr, ipv6LimitBits).Masked().String()
}

// remoteIP is the address the request came from, without its port, for a
// log line when Config.LogIPs asks for it.
func remoteIP(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// ipv6LimitBits is the IPv6 prefix charged as one client: a /64, the
// smallest block RFC 6177 has a site assigned.
const ipv6LimitBits = 64

// limitIP charges the request to its IP address's bucket.
func (s *Server) limitIP(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if ok, retry := s.ipLimit.allow(clientIP(r), s.now()); !ok {
			s.met.rateLimited.WithLabelValues("ip").Inc()
			return rateLimited(retry)
		}
		return h(w, r)
	}
}

func rateLimited(retry time.Duration) *httpError {
	e := errorf(http.StatusTooManyRequests, api.CodeRateLimited, "too many requests")
	e.retryAfter = retry
	return e
}

// authed authenticates the device (401 otherwise), records the day it was
// seen, and charges the request to its account's bucket.
func (s *Server) authed(h authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		dev, err := s.authenticate(r)
		if err != nil {
			return err
		}
		s.seen(r.Context(), dev)
		if ok, retry := s.accountLimit.allow(dev.AccountID, s.now()); !ok {
			s.met.rateLimited.WithLabelValues("account").Inc()
			return rateLimited(retry)
		}
		return h(w, r, dev)
	}
}

// seen records that the device was seen today (UTC), the only precision
// the server keeps: it writes at most once per device per day, since the
// day authenticate read with the credentials already tells whether today
// is recorded (and the store moves the day only forward). A failure to
// record it is logged and does not fail the request.
func (s *Server) seen(ctx context.Context, dev *store.Device) {
	day := store.Day(s.now())
	if dev.LastSeenDay >= day {
		return
	}
	err := s.st.SetLastSeenDay(ctx, dev.AccountID, dev.ID, day)
	switch {
	case err == nil:
		dev.LastSeenDay = day
	case errors.Is(err, store.ErrNotFound), ctx.Err() != nil:
		// Removed meanwhile, or the client went away.
	default:
		s.log.Error("recording the day a device was seen failed", "err", err)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) metricsHandler() http.Handler {
	if s.gather == nil {
		return s.serve(func(http.ResponseWriter, *http.Request) error {
			return errorf(http.StatusNotFound, api.CodeNotFound, "metrics are served elsewhere")
		})
	}
	return promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{})
}
