// Package server is doorlessd's API: JSON over HTTP under /v1/ for accounts,
// devices, prekeys and sending, and one authenticated WebSocket per device
// for delivery. docs/api.md describes it for clients; internal/api holds the
// bodies and frames both sides share.
//
// The server is an untrusted relay: it stores what the store package lists
// (public keys, credential hashes, ciphertext queues, and the abuse reports
// recipients choose to make) and nothing else, and
// logs and counts without credentials, keys, message targets or bodies.
//
// A Server is safe for concurrent use. Use New, serve Handler (or call Serve),
// run Run in the background for expiry and housekeeping, and end with
// Shutdown.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/blob"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/certs"
	"github.com/doorless/doorless/internal/franking"
	"github.com/doorless/doorless/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	// DefaultMaxEnvelope is the default, and the largest allowed, content
	// size of one envelope: clients size their WebSocket read limit with
	// api.MaxFrameSize(DefaultMaxEnvelope).
	DefaultMaxEnvelope = 256 << 10
	DefaultMaxBody     = 4 << 20
	DefaultMaxQueue    = 10_000
	DefaultMessageTTL  = 30 * 24 * time.Hour
	// DefaultSweepInterval is how often Run deletes expired envelopes.
	DefaultSweepInterval = 10 * time.Minute
	// DefaultRateLimitEntries bounds each rate limiter's table.
	DefaultRateLimitEntries = 100_000
)

// Default rate limits: generous for people, tight enough to stop a script
// from draining prekeys or filling queues at line rate.
var (
	DefaultIPRate      = RateLimit{Rate: 20, Burst: 200}
	DefaultAccountRate = RateLimit{Rate: 10, Burst: 100}
	// DefaultUnidentifiedRate limits the unidentified (sealed-sender)
	// sends one account receives, from everyone together: 300 a minute
	// sustained is more than people write to one person, and it takes a
	// flood over half an hour to fill a queue of DefaultMaxQueue.
	DefaultUnidentifiedRate = RateLimit{Rate: 5, Burst: 100}
)

// maxKeysBody bounds the bodies that carry prekeys (registration and PUT
// /v1/keys): 2×100 keys of at most ~2.3 KB of JSON each fit with room.
const maxKeysBody = 1 << 20

// RateLimit is a token bucket: Burst requests at once, refilled at Rate per
// second. The zero value means the default; a negative Rate means no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// Config configures a Server. Only Store is required.
type Config struct {
	Store store.Store
	// Broker carries delivery signals; nil means an in-process broker,
	// right for a single node.
	Broker broker.Broker
	// Registration is api.RegistrationOpen (the default when empty),
	// api.RegistrationInvite or api.RegistrationClosed.
	Registration string
	// MaxEnvelope bounds the content of one envelope (one recipient
	// device), in bytes; at most DefaultMaxEnvelope, which is the default.
	MaxEnvelope int
	// MaxBody bounds a request body, in bytes (default DefaultMaxBody).
	// Bodies carrying keys are further bounded to 1 MiB.
	MaxBody int64
	// MaxQueue bounds the envelopes queued for one device (default
	// DefaultMaxQueue).
	MaxQueue int
	// MessageTTL is how long an undelivered envelope is kept (default
	// DefaultMessageTTL).
	MessageTTL time.Duration
	// SweepInterval is how often Run expires envelopes (default
	// DefaultSweepInterval).
	SweepInterval time.Duration
	// IPRate limits requests per client IP address, AccountRate
	// authenticated requests per account (all its devices together), and
	// UnidentifiedRate the unidentified sends per recipient account (the
	// server does not know their sender; they are also charged to their
	// IP address).
	IPRate, AccountRate, UnidentifiedRate RateLimit
	// RateLimitEntries bounds how many IPs (and accounts) the limiters
	// track at once (default DefaultRateLimitEntries).
	RateLimitEntries int
	// Logger receives one line per request and connection; nil discards.
	Logger *slog.Logger
	// LogIPs adds the client's IP address to each request's log line, and
	// keeps the addresses in net/http's own error lines. Off by default:
	// then no log line carries an IP address.
	LogIPs bool
	// Registerer receives the server's metrics; nil means a private
	// registry. /metrics serves Registerer when it is also a
	// prometheus.Gatherer (as *prometheus.Registry is), and 404 otherwise.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Blobs stores attachments (doorlessd: blob.NewFS in the data
	// directory's "attachments"); nil disables the attachment endpoints,
	// which then answer 404.
	Blobs blob.Store
	// MaxAttachment bounds an attachment's plaintext, in bytes (default
	// api.MaxAttachmentSize); an upload may declare at most
	// api.AttachmentBlobSize(MaxAttachment) bytes of blob.
	MaxAttachment int64
	// MaxAttachmentChunk bounds one upload chunk, in bytes (default
	// DefaultMaxAttachmentChunk).
	MaxAttachmentChunk int64
	// AttachmentTTL is how long a finished attachment is kept (default
	// DefaultAttachmentTTL); unfinished uploads go after
	// AttachmentIdleTimeout without progress.
	AttachmentTTL time.Duration

	// Certificates issues sealed-sender certificates (doorlessd: from the
	// data directory's "certs"); nil disables the certificate endpoints,
	// which then answer 404.
	Certificates *certs.Issuer

	// Transparency configures key transparency (doorlessd: from the data
	// directory's "kt"): New restores the log from the store, Run
	// publishes account changes in it, and the requests that change an
	// account answer once their change is published. Nil disables it:
	// the transparency endpoints answer 404, bundles carry no proof, and
	// changes wait in the store for a server that publishes them.
	Transparency *TransparencyConfig

	// Franking holds the server's franking keys (doorlessd: from the data
	// directory's "franking.key"): it binds every envelope it hands out to
	// its delivery, gives each account its franking key, and verifies
	// abuse reports (franking.go). Nil means a random secret for the life
	// of the Server: messages delivered before a restart then cannot be
	// reported.
	Franking *franking.Server
	// Legal configures the front door (legal.go); nil disables it: its
	// endpoints answer 404.
	Legal *LegalConfig
}

// Server serves the Doorless API.
type Server struct {
	cfg Config
	st  store.Store
	br  broker.Broker
	// localOnly: br reaches only this process (no other node could hold
	// a device's connection), so envelopes are pushed to connections here.
	localOnly bool
	log       *slog.Logger
	now       func() time.Time
	met       *metrics
	gather    prometheus.Gatherer
	handler   http.Handler

	// Delivery WebSocket timing (the constants of ws.go; tests shorten
	// them), and a hook called with the reason each connection ends.
	pingInterval, pongTimeout, writeTimeout time.Duration
	onWSClose                               func(reason string)
	// provisioningWait bounds a provisioning long-poll (provisioning.go;
	// 0 means the default); drain is closed when Shutdown begins, to end
	// the long-polls.
	provisioningWait time.Duration
	drain            chan struct{}
	// onLegalPublished is called after each publication pass (tests).
	onLegalPublished func()

	ipLimit, accountLimit, recipientLimit *limiter
	att                                   *attachments
	kt                                    *ktState // nil: no key transparency
	names                                 nameCache
	dummyHash                             [sha256.Size]byte
	dummyAccessKey                        [api.UnidentifiedAccessKeySize]byte

	mu       sync.Mutex
	draining bool
	active   int           // requests in flight, WebSockets included
	idle     chan struct{} // closed when draining and active is 0
	conns    map[*wsConn]struct{}
	latest   map[deviceKey]*wsConn // each device's newest connection here
	httpSrv  *http.Server

	acks  acker     // applies every connection's acks (with its own lock)
	calls *callPool // runs the WebSockets' store calls
}

// New checks cfg, fills in defaults, and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	switch cfg.Registration {
	case "":
		cfg.Registration = api.RegistrationOpen
	case api.RegistrationOpen, api.RegistrationInvite, api.RegistrationClosed:
	default:
		return nil, fmt.Errorf("server: unknown registration policy %q", cfg.Registration)
	}
	switch {
	case cfg.MaxEnvelope == 0:
		cfg.MaxEnvelope = DefaultMaxEnvelope
	case cfg.MaxEnvelope < 0 || cfg.MaxEnvelope > DefaultMaxEnvelope:
		return nil, fmt.Errorf("server: max envelope %d out of range 1..%d", cfg.MaxEnvelope, DefaultMaxEnvelope)
	}
	if err := orDefault(&cfg.MaxBody, DefaultMaxBody, "max body"); err != nil {
		return nil, err
	}
	if err := orDefault(&cfg.MaxQueue, DefaultMaxQueue, "max queue"); err != nil {
		return nil, err
	}
	if err := orDefault(&cfg.MessageTTL, DefaultMessageTTL, "message ttl"); err != nil {
		return nil, err
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.IPRate == (RateLimit{}) {
		cfg.IPRate = DefaultIPRate
	}
	if cfg.AccountRate == (RateLimit{}) {
		cfg.AccountRate = DefaultAccountRate
	}
	if cfg.UnidentifiedRate == (RateLimit{}) {
		cfg.UnidentifiedRate = DefaultUnidentifiedRate
	}
	if cfg.RateLimitEntries <= 0 {
		cfg.RateLimitEntries = DefaultRateLimitEntries
	}
	localOnly := cfg.Broker == nil
	if cfg.Broker == nil {
		cfg.Broker = broker.NewMemory()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	att, err := newAttachments(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Franking == nil {
		if cfg.Franking, err = newFranking(); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:            cfg,
		st:             measureStore(cfg.Store, met),
		br:             cfg.Broker,
		localOnly:      localOnly,
		log:            cfg.Logger,
		now:            cfg.Now,
		met:            met,
		ipLimit:        newLimiter(cfg.IPRate, cfg.RateLimitEntries),
		accountLimit:   newLimiter(cfg.AccountRate, cfg.RateLimitEntries),
		recipientLimit: newLimiter(cfg.UnidentifiedRate, cfg.RateLimitEntries),
		att:            att,
		pingInterval:   pingInterval,
		pongTimeout:    pongTimeout,
		writeTimeout:   writeTimeout,
		idle:           make(chan struct{}),
		drain:          make(chan struct{}),
		conns:          make(map[*wsConn]struct{}),
		latest:         make(map[deviceKey]*wsConn),
	}
	s.acks.s = s
	s.calls = newCallPool()
	if cfg.Transparency != nil {
		if s.kt, err = newKT(context.Background(), *cfg.Transparency, s.st); err != nil {
			return nil, err
		}
		met.ktEpochs.Set(float64(s.kt.log.Size()))
		met.ktEntries.Set(float64(s.kt.entries.Load()))
		if last := s.kt.lastEpoch.Load(); last > 0 {
			met.ktLastEpoch.Set(float64(last) / 1000)
		}
	}
	s.gather, _ = cfg.Registerer.(prometheus.Gatherer)
	s.dummyHash = sha256.Sum256([]byte("doorless: no such device"))
	rand.Read(s.dummyAccessKey[:]) // never fails (crypto/rand); a key no sender knows
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the whole API, /healthz and /metrics
// included.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on ln (wrap it with tls.NewListener for HTTPS)
// until Shutdown, and returns http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // WebSockets are hijacked: net/http clears this deadline
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog(s.log.Handler(), !s.cfg.LogIPs),
	}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.httpSrv = hs
	s.mu.Unlock()
	return hs.Serve(ln)
}

// Run expires undelivered envelopes older than MessageTTL, attachments
// older than AttachmentTTL, uploads idle for AttachmentIdleTimeout and
// abuse reports older than ReportRetention every SweepInterval, and prunes the rate limiters, until ctx is done. With key
// transparency it also runs the sequencer, which publishes account changes
// in the log; requests that change an account wait for it, so end Run only
// after Shutdown. With the front door it publishes legal requests past
// their non-disclosure date (legal.go).
func (s *Server) Run(ctx context.Context) error {
	seqDone := s.startSequencer(ctx)
	defer func() { <-seqDone }()
	legalDone := s.runLegal(ctx)
	defer func() { <-legalDone }()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) sweep(ctx context.Context) {
	now := s.now()
	n, err := s.st.Expire(ctx, now.Add(-s.cfg.MessageTTL))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("expiry failed", "err", err)
		}
	} else if n > 0 {
		s.met.expired.Add(float64(n))
		s.log.Info("expired envelopes", "count", n)
	}
	s.sweepProvisioning(ctx, now)
	s.sweepReports(ctx, now)
	s.sweepAttachments(ctx, now)
	s.ipLimit.prune(now)
	s.accountLimit.prune(now)
	s.recipientLimit.prune(now)
}

// Shutdown stops the server gracefully: it stops accepting connections (when
// Serve runs), answers new requests with 503, closes every WebSocket with
// status 1001 (going away; envelopes not acknowledged stay queued), and waits
// for requests in flight to finish or ctx to end. It does not close the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		close(s.drain)
		if s.active == 0 {
			close(s.idle)
		}
	}
	hs := s.httpSrv
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.cancel(errShutdown)
	}
	var err error
	if hs != nil {
		err = hs.Shutdown(ctx)
	}
	select {
	case <-s.idle:
		s.calls.close() // no WebSocket is left to call
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// begin counts a request in; false when draining.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.active++
	return true
}

func (s *Server) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
}

// endLocked counts a request out; s.mu is held.
func (s *Server) endLocked() {
	s.active--
	if s.active == 0 && s.draining {
		close(s.idle)
	}
}

// orDefault sets a zero setting to its default; a negative one is an error.
func orDefault[T ~int | ~int64](v *T, def T, what string) error {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		return fmt.Errorf("server: negative %s", what)
	}
	return nil
}
