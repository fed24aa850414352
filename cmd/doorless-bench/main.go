// Command doorless-bench measures a running doorlessd (internal/loadtest):
// it registers accounts with real keys, opens authenticated delivery
// WebSockets, sends sealed-sender messages over HTTP and acknowledges every
// envelope, and prints what it measured against the server's targets.
//
//	doorless-bench [flags] SCENARIO...
//
// Scenarios: register (only make the accounts), idle, one-to-one, fan-out,
// reconnect, all (the four). Run the server with its rate limits lifted:
//
//	doorlessd --ip-rate -1 --account-rate -1 --unidentified-rate -1
//
// "doorless-bench worker" is a worker process of the idle scenario; the
// tool starts those itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/doorless/doorless/internal/loadtest"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("doorless-bench: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := loadtest.RunWorker(ctx, os.Stdin, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	fl := flag.NewFlagSet("doorless-bench", flag.ContinueOnError)
	server := fl.String("server", "http://127.0.0.1:8080", "the server's base `URL`; several nodes of one cluster: URLs separated by commas, devices and sends spread over them round-robin (idle: the first only)")
	pid := fl.Int("pid", 0, "the server's process `id`, for its memory (idle)")
	accountsFile := fl.String("accounts", "", "keep the registered accounts in this `file` and reuse them on later runs against the same server")
	regConc := fl.Int("register-concurrency", 32, "registrations in flight")
	sources := fl.String("sources", "", "source addresses 127.0.0.`A-B` to connect from in turn, e.g. 2-41 (default: the system's choice)")
	conns := fl.Int("conns", 19_000, "idle: connections")
	workers := fl.Int("workers", 4, "idle: worker processes holding the connections")
	settle := fl.Duration("settle", 5*time.Second, "idle: wait with every connection up before measuring")
	devices := fl.Int("devices", 1000, "one-to-one and fan-out: online devices (fan-out: the group's members)")
	conc := fl.Int("concurrency", 64, "one-to-one: sends in flight")
	fanConc := fl.Int("fanout-concurrency", 4, "fan-out: group sends in flight")
	duration := fl.Duration("duration", 10*time.Second, "one-to-one and fan-out: how long to send")
	minSize := fl.Int("min-size", 200, "one-to-one: smallest ciphertext in bytes (fan-out: the sender-key message's size)")
	maxSize := fl.Int("max-size", 1000, "one-to-one: largest ciphertext in bytes")
	recDevices := fl.Int("reconnect-devices", 5000, "reconnect: devices connecting at once")
	recConc := fl.Int("reconnect-concurrency", 64, "reconnect: connections being opened at once")
	queued := fl.Int("queued", 10, "reconnect: messages queued per offline device before the drain")
	jsonOut := fl.Bool("json", false, "print the results as JSON instead of a table")
	quiet := fl.Bool("quiet", false, "no progress lines on standard error")
	cpuProfile := fl.String("cpuprofile", "", "write the tool's own CPU profile (the scenarios, not registration) to this `file`")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	want := map[string]bool{}
	for _, s := range fl.Args() {
		switch s {
		case "all":
			for _, t := range []string{"idle", "one-to-one", "fan-out", "reconnect"} {
				want[t] = true
			}
		case "register", "idle", "one-to-one", "fan-out", "reconnect":
			want[s] = true
		default:
			log.Printf("unknown scenario %q (register, idle, one-to-one, fan-out, reconnect, all)", s)
			return 2
		}
	}
	if len(want) == 0 {
		fl.Usage()
		return 2
	}
	o := &loadtest.Options{PID: *pid}
	for u := range strings.SplitSeq(*server, ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			o.Servers = append(o.Servers, u)
		}
	}
	if len(o.Servers) == 0 {
		log.Print("--server: no URL")
		return 2
	}
	o.Server = o.Servers[0]
	if len(o.Servers) == 1 {
		o.Servers = nil
	}
	if !*quiet {
		o.Log = func(format string, args ...any) { log.Printf(format, args...) }
	}
	if *sources != "" {
		a, b, ok := strings.Cut(*sources, "-")
		first, err1 := strconv.Atoi(a)
		last, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil {
			log.Printf("--sources: want A-B, e.g. 2-41")
			return 2
		}
		var err error
		if o.Sources, err = loadtest.SourceRange(first, last); err != nil {
			log.Print(err)
			return 2
		}
	}
	if want["idle"] && *pid == 0 {
		log.Print("idle needs --pid, the server's process id")
		return 2
	}

	need := 0
	if want["register"] || want["idle"] {
		need = max(need, *conns)
	}
	if want["one-to-one"] || want["fan-out"] {
		need = max(need, *devices)
	}
	if want["reconnect"] {
		need = max(need, *recDevices)
	}
	accts, err := accounts(ctx, o, *accountsFile, need, *regConc)
	if err != nil {
		log.Print(err)
		return 1
	}

	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			log.Print(err)
			return 1
		}
		defer stopProfile()
	}
	res := &loadtest.Results{Date: time.Now().UTC().Format(time.RFC3339), Server: strings.TrimSuffix(*server, "/")}
	if want["idle"] {
		var ws []loadtest.Worker
		exe, err := os.Executable()
		if err != nil {
			log.Print(err)
			return 1
		}
		for range *workers {
			ws = append(ws, &loadtest.Process{Cmd: exec.Command(exe, "worker")})
		}
		if res.Idle, err = loadtest.Idle(ctx, o, loadtest.IdleConfig{Accounts: accts[:*conns], Workers: ws, Settle: *settle}); err != nil {
			log.Printf("idle: %v", err)
			return 1
		}
	}
	if want["one-to-one"] {
		cfg := loadtest.DeliveryConfig{Devices: accts[:*devices], Concurrency: *conc, Duration: *duration, MinSize: *minSize, MaxSize: *maxSize}
		if res.OneToOne, err = loadtest.OneToOne(ctx, o, cfg); err != nil {
			log.Printf("one-to-one: %v", err)
			return 1
		}
	}
	if want["fan-out"] {
		cfg := loadtest.DeliveryConfig{Devices: accts[:*devices], Concurrency: *fanConc, Duration: *duration, MinSize: *minSize}
		if res.FanOut, err = loadtest.FanOut(ctx, o, cfg); err != nil {
			log.Printf("fan-out: %v", err)
			return 1
		}
	}
	if want["reconnect"] {
		cfg := loadtest.ReconnectConfig{Devices: accts[:*recDevices], Concurrency: *recConc, Queued: *queued, Size: (*minSize + *maxSize) / 2}
		if res.Reconnect, err = loadtest.Reconnect(ctx, o, cfg); err != nil {
			log.Printf("reconnect: %v", err)
			return 1
		}
	}
	if want["register"] && len(want) == 1 {
		fmt.Printf("%d accounts ready\n", len(accts))
		return 0
	}
	if *jsonOut {
		b, err := res.JSON()
		if err != nil {
			log.Print(err)
			return 1
		}
		fmt.Println(string(b))
		return 0
	}
	if err := res.WriteTable(os.Stdout); err != nil {
		log.Print(err)
		return 1
	}
	return 0
}

// accounts returns need accounts: those in file (when given), and new
// ones registered for the rest, saved back to file.
func accounts(ctx context.Context, o *loadtest.Options, file string, need, concurrency int) ([]*loadtest.Account, error) {
	var have []*loadtest.Account
	if file != "" {
		var err error
		have, err = loadtest.LoadAccounts(file)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if len(have) >= need {
		return have, nil
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	logf("registering %d accounts", need-len(have))
	more, err := loadtest.Register(ctx, o, need-len(have), concurrency)
	if err != nil {
		return nil, err
	}
	logf("registered %d accounts in %.1fs", len(more), time.Since(start).Seconds())
	have = append(have, more...)
	if file != "" {
		if err := loadtest.SaveAccounts(file, have); err != nil {
			return nil, err
		}
	}
	return have, nil
}

// startCPUProfile profiles the tool's CPU into file until the returned
// function is called: where the tool spends the cycles it takes from the
// server it shares the machine with.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Printf("--cpuprofile: %v", err)
		}
	}, nil
}
