// Command doorlessd is the Doorless server: the HTTP and WebSocket API of
// internal/server over a SQLite store in a data directory, or over a
// PostgreSQL database that many nodes share (--store postgres://...; every
// subcommand that opens the store takes --store too).
//
//	doorlessd [--listen ADDR] [--data DIR] [--store URL] [--broker nats://... [--broker-prefix PREFIX]] [--registration open|invite|closed] ...
//	doorlessd invite [--data DIR] [--count N] [--expires 168h]
//	doorlessd certs show|rotate [--data DIR] [--root-key FILE]
//	doorlessd transparency show [--data DIR]
//	doorlessd reports list [--data DIR]
//	doorlessd reports show ID [--data DIR]
//	doorlessd legal process|report|authorities|keygen|sign ...
//
// Once listening it prints "doorlessd listening on http://ADDR" (https with
// TLS) on standard output. SIGINT or SIGTERM drain it gracefully.
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/blob"
	"github.com/doorless/doorless/internal/broker"
	"github.com/doorless/doorless/internal/certs"
	"github.com/doorless/doorless/internal/frankingkey"
	"github.com/doorless/doorless/internal/frontdoor"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// shutdownTimeout bounds the graceful drain after a signal.
const shutdownTimeout = 20 * time.Second

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "invite" {
		os.Exit(invite(args[1:]))
	}
	if len(args) > 0 && args[0] == "certs" {
		os.Exit(certsCommand(args[1:]))
	}
	if len(args) > 0 && args[0] == "transparency" {
		os.Exit(transparencyCommand(args[1:]))
	}
	if len(args) > 0 && args[0] == "reports" {
		os.Exit(reportsCommand(args[1:]))
	}
	if len(args) > 0 && args[0] == "legal" {
		os.Exit(legalCommand(args[1:]))
	}
	os.Exit(serve(args))
}

func serve(args []string) int {
	fs := flag.NewFlagSet("doorlessd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to listen on")
	data := fs.String("data", "./doorless-data", "data `directory` (created 0700)")
	storeURL := storeFlag(fs)
	certFile := fs.String("tls-cert", "", "TLS certificate `file` (PEM); with --tls-key, serve HTTPS")
	keyFile := fs.String("tls-key", "", "TLS private key `file` (PEM)")
	registration := fs.String("registration", api.RegistrationOpen, "registration `policy`: open, invite or closed")
	maxEnvelope := fs.Int("max-envelope", server.DefaultMaxEnvelope, "largest envelope content per device, in `bytes`")
	maxQueue := fs.Int("max-queue", server.DefaultMaxQueue, "most envelopes queued per device")
	messageTTL := fs.Duration("message-ttl", server.DefaultMessageTTL, "how long undelivered envelopes are kept")
	maxAttachment := fs.Int64("max-attachment", api.MaxAttachmentSize, "largest attachment plaintext, in `bytes` (the blob is up to ~5% larger)")
	attachmentTTL := fs.Duration("attachment-ttl", server.DefaultAttachmentTTL, "how long finished attachments are kept")
	logFormat := fs.String("log-format", "text", "log `format` on standard error: text or json")
	logIPs := fs.Bool("log-ips", false, "log each request's client IP address (off: no log line carries an IP address)")
	ipRate := fs.Float64("ip-rate", server.DefaultIPRate.Rate,
		"requests one IP address (IPv6: one /64) may make per `second`, sustained (negative: no limit, for load tests)")
	ipBurst := fs.Int("ip-burst", server.DefaultIPRate.Burst, "requests one IP address may make at once")
	accountRate := fs.Float64("account-rate", server.DefaultAccountRate.Rate,
		"authenticated requests one account may make per `second`, sustained (negative: no limit, for load tests)")
	accountBurst := fs.Int("account-burst", server.DefaultAccountRate.Burst, "authenticated requests one account may make at once")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback `address` (e.g. 127.0.0.1:6060); off when empty")
	unidentifiedRate := fs.Float64("unidentified-rate", server.DefaultUnidentifiedRate.Rate,
		"sealed-sender sends one account may receive per `second`, sustained (negative: no limit)")
	unidentifiedBurst := fs.Int("unidentified-burst", server.DefaultUnidentifiedRate.Burst,
		"sealed-sender sends one account may receive at once")
	ktOrigin := fs.String("kt-origin", "", "the key-transparency log's `origin` (its name in checkpoints), fixed at first start; "+
		"default: the stored one, or at first start "+ktkeys.DefaultOriginPrefix+"<random>")
	ktEpochInterval := fs.Duration("kt-epoch-interval", server.DefaultEpochInterval,
		"the longest the key-transparency log goes without an epoch (an empty one when nothing changed), from 1s to under 1h: "+
			"clients refuse a log whose newest epoch is an hour old")
	legalOrigin := fs.String("legal-origin", "", "the legal request log's `origin` (the legal key's name), fixed at first start; "+
		"default: the stored one, or at first start "+frontdoor.DefaultOriginPrefix+"<random>")
	brokerURL := fs.String("broker", "", "where delivery signals go between nodes: empty for this process only (one node), "+
		"or a NATS `url` (nats://host:4222, tls://...; several separated by commas) shared by every node of a cluster")
	brokerPrefix := fs.String("broker-prefix", broker.DefaultNATSPrefix, "with --broker: the `prefix` of the signals' NATS subjects "+
		"(tokens separated by dots, no wildcards), the same on every node of a cluster; "+
		"clusters sharing one NATS need one each (a copy of a database has its accounts, and would signal and displace their devices)")
	legalPublish := fs.Duration("legal-publish-interval", server.DefaultPublishInterval,
		"how often legal requests past their non-disclosure date are published")
	var ktAuditors []string
	fs.Func("kt-auditor", "an auditor's note verifier `key` (cosignature/v1) whose cosignatures the server accepts and hands out; repeatable",
		func(v string) error {
			if _, err := kt.NewCosignatureVerifier(v); err != nil {
				return fmt.Errorf("not a cosignature verifier key: %v", err)
			}
			ktAuditors = append(ktAuditors, v)
			return nil
		})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "doorlessd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, nil)
	default:
		fmt.Fprintf(os.Stderr, "doorlessd: --log-format must be text or json\n")
		return 2
	}
	log := slog.New(h)
	if *unidentifiedBurst < 1 || *ipBurst < 1 || *accountBurst < 1 {
		fmt.Fprintln(os.Stderr, "doorlessd: --unidentified-burst, --ip-burst and --account-burst must be at least 1")
		return 2
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			fmt.Fprintf(os.Stderr, "doorlessd: --pprof: %v\n", err)
			return 2
		}
	}
	if *ktEpochInterval < time.Second || *ktEpochInterval >= time.Hour {
		fmt.Fprintln(os.Stderr, "doorlessd: --kt-epoch-interval must be at least 1s and under 1h (clients refuse a log an hour old)")
		return 2
	}
	if err := checkBrokerFlags(fs, *brokerURL, *brokerPrefix); err != nil {
		fmt.Fprintf(os.Stderr, "doorlessd: %v\n", err)
		return 2
	}
	if (*certFile == "") != (*keyFile == "") {
		fmt.Fprintln(os.Stderr, "doorlessd: --tls-cert and --tls-key go together")
		return 2
	}
	fail := func(err error) int {
		log.Error("doorlessd: " + err.Error())
		return 1
	}

	st, err := openStore(*data, *storeURL)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("doorlessd: close store", "err", err)
		}
	}()

	blobs, err := blob.NewFS(filepath.Join(*data, "attachments"), nil)
	if err != nil {
		return fail(err)
	}
	// Sealed-sender keys: made on first start (the trust root's private
	// key then stays in the data directory until the operator moves it
	// offline; see doorlessd certs).
	certDir := filepath.Join(*data, "certs")
	if made, err := certs.Init(certDir); err != nil {
		return fail(err)
	} else if made {
		log.Info("doorlessd: made a sealed-sender trust root and server key", "dir", certDir)
	}
	issuer, err := certs.Load(certDir)
	if err != nil {
		return fail(err)
	}
	// Key-transparency keys: made on first start, fixed after.
	ktDir := filepath.Join(*data, "kt")
	ktKeys, made, err := ktkeys.Init(ktDir, *ktOrigin)
	if err != nil {
		return fail(err)
	}
	if made {
		log.Info("doorlessd: made the key-transparency log's keys", "dir", ktDir)
	}
	// The franking secret: made on first start, fixed after.
	frankingPath := filepath.Join(*data, frankingkey.File)
	frank, made, err := frankingkey.Init(frankingPath)
	if err != nil {
		return fail(err)
	}
	if made {
		log.Info("doorlessd: made the franking secret", "file", frankingPath)
	}

	// The front door: the legal key, admin token and trust file are made
	// on first start; the request log is opened in DATA/legal/log.
	fd, made, err := openFrontDoor(context.Background(), *data, *legalOrigin, st)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := fd.log.Close(); err != nil {
			log.Error("doorlessd: close the request log", "err", err)
		}
	}()
	if made {
		log.Info("doorlessd: made the legal key", "dir", fd.dir)
	}
	adminToken, made, err := frontdoor.InitAdminToken(fd.dir)
	if err != nil {
		return fail(err)
	}
	if made {
		log.Info("doorlessd: made the legal admin token", "file", filepath.Join(fd.dir, frontdoor.AdminTokenFile))
	}

	br, closeBroker, err := openBroker(*brokerURL, *brokerPrefix, log)
	if err != nil {
		return fail(err)
	}
	defer closeBroker()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(server.Config{
		Store:         st,
		Broker:        br,
		Registration:  *registration,
		MaxEnvelope:   *maxEnvelope,
		MaxQueue:      *maxQueue,
		MessageTTL:    *messageTTL,
		Blobs:         blobs,
		MaxAttachment: *maxAttachment,
		AttachmentTTL: *attachmentTTL,
		Certificates:  issuer,
		Franking:      frank,
		Transparency: &server.TransparencyConfig{Log: ktKeys.LogConfig(), LogKey: ktKeys.LogKey, Auditors: ktAuditors,
			EpochInterval: *ktEpochInterval},
		Legal: &server.LegalConfig{Desk: fd.desk, Log: fd.log.Handler(), Key: fd.key.VerifierKey, AdminToken: adminToken,
			PublishInterval: *legalPublish},
		Logger:     log,
		LogIPs:     *logIPs,
		Registerer: reg,

		IPRate:           server.RateLimit{Rate: *ipRate, Burst: *ipBurst},
		AccountRate:      server.RateLimit{Rate: *accountRate, Burst: *accountBurst},
		UnidentifiedRate: server.RateLimit{Rate: *unidentifiedRate, Burst: *unidentifiedBurst},
	})
	if err != nil {
		return fail(err)
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail(err)
	}
	scheme := "http"
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			ln.Close()
			return fail(err)
		}
		// HTTP/1.1 only: the delivery WebSocket upgrades an HTTP/1.1
		// connection.
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		})
		scheme = "https"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		srv.Run(runCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	fmt.Printf("doorlessd listening on %s://%s\n", scheme, ln.Addr())
	log.Info("doorlessd started", "addr", ln.Addr().String(), "registration", *registration)

	code := 0
	select {
	case err := <-serveErr:
		log.Error("doorlessd: serve", "err", err)
		code = 1
	case <-ctx.Done():
		log.Info("doorlessd draining")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("doorlessd: shutdown", "err", err)
	}
	stopRun()
	<-runDone
	log.Info("doorlessd stopped")
	return code
}

// checkBrokerFlags refuses a --broker-prefix that is not a NATS subject
// prefix, or that was given without --broker: a prefix set for a node that
// signals only itself would be a cluster misconfigured without a word.
func checkBrokerFlags(fs *flag.FlagSet, url, prefix string) error {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "broker-prefix" })
	switch {
	case !set:
		return nil
	case url == "":
		return errors.New("--broker-prefix needs --broker (without it a node signals only itself)")
	case !broker.ValidPrefix(prefix):
		return fmt.Errorf("--broker-prefix %q is not a NATS subject prefix: tokens of printable characters separated by single dots, "+
			"without the wildcards * and >", prefix)
	}
	return nil
}

// openBroker returns the broker --broker names: nil (the server's
// in-process one) when empty, else a NATS broker on subjects under prefix,
// whose connection changes are logged (never its URL, which may carry
// credentials).
func openBroker(url, prefix string, log *slog.Logger) (broker.Broker, func(), error) {
	if url == "" {
		return nil, func() {}, nil
	}
	b, err := broker.DialNATS(broker.NATSConfig{URL: url, Prefix: prefix, OnConnection: func(up bool, err error) {
		if up {
			log.Info("doorlessd: reconnected to nats")
		} else {
			log.Warn("doorlessd: lost nats; delivery signals wait for it", "err", err)
		}
	}})
	if err != nil {
		return nil, nil, err
	}
	return b, func() { b.Close() }, nil
}

func invite(args []string) int {
	fs := flag.NewFlagSet("doorlessd invite", flag.ContinueOnError)
	data := fs.String("data", "./doorless-data", "data `directory`")
	storeURL := storeFlag(fs)
	count := fs.Int("count", 1, "how many invite codes to create")
	expires := fs.Duration("expires", 7*24*time.Hour, "how long the codes stay valid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *count < 1 || *expires <= 0 {
		fmt.Fprintln(os.Stderr, "doorlessd invite: --count and --expires must be positive; no arguments")
		return 2
	}
	st, err := openStore(*data, *storeURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "doorlessd invite: %v\n", err)
		return 1
	}
	codes, err := server.CreateInvites(context.Background(), st, *count, *expires, time.Now())
	if cerr := st.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "doorlessd invite: %v\n", err)
		return 1
	}
	for _, c := range codes {
		fmt.Println(c)
	}
	return 0
}

// certsCommand shows or rotates the sealed-sender keys of a data directory.
func certsCommand(args []string) int {
	usage := "usage: doorlessd certs show|rotate [--data DIR] [--root-key FILE]"
	if len(args) == 0 || args[0] != "show" && args[0] != "rotate" {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("doorlessd certs "+verb, flag.ContinueOnError)
	data := fs.String("data", "./doorless-data", "data `directory`")
	rootKey := fs.String("root-key", "", "with rotate: the trust root's private key `file` (32 bytes), when it is kept out of the data directory")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	dir := filepath.Join(*data, "certs")
	failf := func(err error) int {
		fmt.Fprintf(os.Stderr, "doorlessd certs %s: %v\n", verb, err)
		return 1
	}
	if verb == "rotate" {
		var root *keys.PrivateKey
		if *rootKey != "" {
			b, err := os.ReadFile(*rootKey)
			if err != nil {
				return failf(err)
			}
			if root, err = keys.NewPrivateKey(b); err != nil {
				return failf(errors.New("the root key file is not a 32-byte private key"))
			}
		}
		id, err := certs.Rotate(dir, root)
		if err != nil {
			return failf(err)
		}
		fmt.Printf("new server key %d; restart doorlessd to issue with it\n", id)
	}
	is, err := certs.Load(dir)
	if err != nil {
		return failf(err)
	}
	fmt.Printf("trust root: %s\nserver key id: %d\n", base64.StdEncoding.EncodeToString(is.TrustRoot().Bytes()), is.ServerCertificate().KeyID())
	return 0
}

// transparencyCommand shows the key-transparency log of a data directory:
// what clients pin (origin, log key, VRF key), its size, and the auditors
// whose cosignatures the server holds.
func transparencyCommand(args []string) int {
	usage := "usage: doorlessd transparency show [--data DIR]"
	if len(args) == 0 || args[0] != "show" {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("doorlessd transparency show", flag.ContinueOnError)
	data := fs.String("data", "./doorless-data", "data `directory`")
	storeURL := storeFlag(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	failf := func(err error) int {
		fmt.Fprintf(os.Stderr, "doorlessd transparency show: %v\n", err)
		return 1
	}
	k, err := ktkeys.Load(filepath.Join(*data, "kt"))
	if err != nil {
		return failf(err)
	}
	st, err := openExistingStore(*data, *storeURL)
	if err != nil {
		return failf(err)
	}
	defer st.Close()
	ctx := context.Background()
	size, err := st.EpochCount(ctx)
	if err != nil {
		return failf(err)
	}
	var entries int
	for _, err := range st.TransparencyLeaves(ctx) {
		if err != nil {
			return failf(err)
		}
		entries++
	}
	cos, err := st.Cosignatures(ctx)
	if err != nil {
		return failf(err)
	}
	fmt.Printf("origin: %s\nlog key: %s\nvrf key: %s\nsize: %d epochs, %d entries\n",
		k.Origin, k.LogKey, base64.StdEncoding.EncodeToString(k.VRF.Public().Bytes()), size, entries)
	if len(cos) == 0 {
		fmt.Println("auditors: none has cosigned")
	}
	for _, c := range cos {
		fmt.Printf("auditor: %s cosigned size %d\n", c.Auditor, c.Size)
	}
	return 0
}

// reportsCommand lists the abuse reports of a data directory, or shows one
// (server.ListReports, server.ShowReport).
func reportsCommand(args []string) int {
	usage := "usage: doorlessd reports list [--data DIR] | doorlessd reports show ID [--data DIR]"
	if len(args) == 0 || args[0] != "list" && args[0] != "show" {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	verb, rest := args[0], args[1:]
	var id string
	if verb == "show" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
		id, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("doorlessd reports "+verb, flag.ContinueOnError)
	data := fs.String("data", "./doorless-data", "data `directory`")
	storeURL := storeFlag(fs)
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	failf := func(err error) int {
		fmt.Fprintf(os.Stderr, "doorlessd reports %s: %v\n", verb, err)
		return 1
	}
	st, err := openExistingStore(*data, *storeURL)
	if err != nil {
		return failf(err)
	}
	defer st.Close()
	if verb == "list" {
		err = server.ListReports(context.Background(), st, os.Stdout)
	} else {
		err = server.ShowReport(context.Background(), st, id, os.Stdout)
	}
	if err != nil {
		return failf(err)
	}
	return 0
}
