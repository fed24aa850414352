package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/certs"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/internal/store/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// workerEnv makes the test binary a worker process (Process).
const workerEnv = "DOORLESS_LOADTEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := RunWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startServer runs a real server over SQLite, with sealed-sender
// certificates and key transparency, its rate limits lifted, as
// doorlessd --ip-rate -1 --account-rate -1 --unidentified-rate -1 does.
func startServer(t *testing.T) string {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "doorless.db"))
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if _, err := certs.Init(certDir); err != nil {
		t.Fatal(err)
	}
	issuer, err := certs.Load(certDir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ktkeys.Generate(rand.Reader, "loadtest.example/kt")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv, err := server.New(server.Config{
		Registerer:       reg,
		Store:            st,
		IPRate:           server.RateLimit{Rate: -1},
		AccountRate:      server.RateLimit{Rate: -1},
		UnidentifiedRate: server.RateLimit{Rate: -1},
		Certificates:     issuer,
		Transparency:     &server.TransparencyConfig{Log: k.LogConfig(), LogKey: k.LogKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		srv.Run(runCtx)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		stopRun()
		<-runDone
		hs.Close()
		st.Close()
	})
	return hs.URL
}

// TestScenarios runs every scenario at a tiny scale against a real server
// and checks that every message reached every device it was for exactly
// once, and that the numbers hang together.
func TestScenarios(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := &Options{Server: startServer(t), Log: t.Logf}
	accts, err := Register(ctx, o, 20, 4)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, a := range accts {
		names[a.Username] = true
	}
	if len(names) != 20 {
		t.Fatalf("%d distinct usernames of 20", len(names))
	}
	res := &Results{Server: o.Server}

	// Idle: half the connections in this process, half in a worker
	// process (this test binary, as doorless-bench starts itself).
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	res.Idle, err = Idle(ctx, o, IdleConfig{Accounts: accts, Workers: []Worker{&InProcess{}, &Process{Cmd: cmd}}})
	if err != nil {
		t.Fatal(err)
	}
	if i := res.Idle; i.Connections != 20 || i.Workers != 2 || i.RSSBefore <= 0 || i.RSSAfter <= 0 || i.GoroutinesAfter <= 0 {
		t.Errorf("idle: %+v", i)
	}
	if cmd.ProcessState == nil || !cmd.ProcessState.Success() {
		t.Errorf("the worker process did not exit cleanly: %v", cmd.ProcessState)
	}

	res.OneToOne, err = OneToOne(ctx, o, DeliveryConfig{Devices: accts, Concurrency: 4, Sends: 200, MinSize: 100, MaxSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, res.OneToOne, 200, 1)

	res.FanOut, err = FanOut(ctx, o, DeliveryConfig{Devices: accts, Concurrency: 2, Sends: 30, MinSize: 150})
	if err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, res.FanOut, 30, 19)

	res.Reconnect, err = Reconnect(ctx, o, ReconnectConfig{Devices: accts, Concurrency: 4, Queued: 3, SendConcurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Reconnect; r.Devices != 20 || r.Queued != 60 || r.Deliveries != 60 || r.Missing != 0 || r.Duplicates != 0 ||
		r.Unexpected != 0 || r.RedeliveredAfter != 0 || r.ConnectsPerSecond <= 0 || r.AcceptSeconds > r.ReadySeconds {
		t.Errorf("reconnect: %+v", r)
	}

	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"idle: RSS per connection", "one-to-one: deliveries/s", "fan-out: latency", "reconnect: connects/s", "offline drain"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("the table has no %q:\n%s", s, table.String())
		}
	}
	b, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil || back.FanOut == nil || back.FanOut.Deliveries != 30*19 {
		t.Errorf("JSON round trip: %v %+v", err, back.FanOut)
	}
	t.Logf("\n%s", table.String())
}

func checkDelivery(t *testing.T, d *DeliveryResult, sends, per int) {
	t.Helper()
	if d.Sends != sends || d.FailedSends != 0 || d.Expected != sends*per || d.Deliveries != sends*per ||
		d.Missing != 0 || d.Duplicates != 0 || d.Unexpected != 0 || d.Recipients != per {
		t.Errorf("%s: %+v", d.Scenario, d)
	}
	if !(0 < d.P50 && d.P50 <= d.P99 && d.P99 <= d.Max) || d.DeliveriesSec <= 0 || d.SendP50 <= 0 {
		t.Errorf("%s: numbers out of order: %+v", d.Scenario, d)
	}
}

// TestAccountsFile: accounts survive a save and a load; a file that is
// not a list of accounts is refused.
func TestAccountsFile(t *testing.T) {
	_, a, err := newRegistration("alice_lt", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.ID, a.Password = "0b4c9f4e-2f7d-4f5e-9a43-6d2f1c1c8d10", "secret"
	file := filepath.Join(t.TempDir(), "accounts.json")
	if err := SaveAccounts(file, []*Account{a}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts file: %v %v", fi, err)
	}
	got, err := LoadAccounts(file)
	if err != nil || len(got) != 1 || got[0].Username != "alice_lt" || !bytes.Equal(got[0].Identity, a.Identity) {
		t.Fatalf("load: %v %v", got, err)
	}
	if strings.Contains(a.String(), "secret") {
		t.Error("String shows the password")
	}
	for _, bad := range []string{`{}`, `[null]`, `[{"id":"x"}]`} {
		os.WriteFile(file, []byte(bad), 0o600)
		if _, err := LoadAccounts(file); err == nil {
			t.Errorf("%s: loaded", bad)
		}
	}
	if _, err := LoadAccounts(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzStamp: readStamp reads any bytes without failing, and reads back
// what stamp wrote.
func FuzzStamp(f *testing.F) {
	f.Add([]byte{}, uint64(0))
	f.Add(make([]byte, 15), uint64(1))
	f.Add(make([]byte, 16), uint64(1<<63))
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint64(42))
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		readStamp(b)
		if len(b) < stampSize {
			if _, _, ok := readStamp(b); ok {
				t.Fatal("a short content has a stamp")
			}
			return
		}
		now := time.Unix(0, 1_700_000_000_000_000_000)
		stamp(b, seq, now)
		s, sent, ok := readStamp(b)
		if !ok || s != seq || sent != now.UnixNano() {
			t.Fatalf("read %d %d %v", s, sent, ok)
		}
	})
}

// TestSeveralServers points the tool at two addresses of one server (two
// counting proxies standing for two nodes of a cluster) and checks that
// registrations, connections and sends go to both, and that delivery is
// still exactly once.
func TestSeveralServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	target, err := url.Parse(startServer(t))
	if err != nil {
		t.Fatal(err)
	}
	var hits [2]atomic.Int64
	o := &Options{Log: t.Logf}
	for i := range hits {
		rp := httputil.NewSingleHostReverseProxy(target)
		ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(ps.Close)
		o.Servers = append(o.Servers, ps.URL)
	}
	o.Server = o.Servers[0]
	accts, err := Register(ctx, o, 6, 2)
	if err != nil {
		t.Fatal(err)
	}
	regs := [2]int64{hits[0].Load(), hits[1].Load()}
	if regs[0] == 0 || regs[1] == 0 {
		t.Fatalf("registrations per server: %v, want both used", regs)
	}
	res, err := OneToOne(ctx, o, DeliveryConfig{Devices: accts, Concurrency: 2, Sends: 40, MinSize: 100, MaxSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	checkDelivery(t, res, 40, 1)
	for i := range hits {
		if n := hits[i].Load() - regs[i]; n < 20 {
			t.Errorf("server %d: %d requests during one-to-one, want at least 20 (3 connections and half of 40 sends)", i, n)
		}
	}
}
