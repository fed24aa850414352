package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WorkerJob is what a worker is asked to do: hold one authenticated
// delivery WebSocket for each account, made from Sources in turn.
type WorkerJob struct {
	Server      string       `json:"server"`
	Sources     []netip.Addr `json:"sources"`
	Accounts    []*Account   `json:"accounts"`
	Concurrency int          `json:"concurrency"`
}

// WorkerReport is a worker's answer once its connections are up (every
// one has had its queue_empty) or have failed.
type WorkerReport struct {
	Connected int     `json:"connected"`
	Error     string  `json:"error,omitempty"`
	Seconds   float64 `json:"seconds"`
}

// Worker holds connections for Idle: in this process or in another one.
type Worker interface {
	// Start has the worker connect job's accounts and returns when they
	// are connected (or failed).
	Start(ctx context.Context, job *WorkerJob) (*WorkerReport, error)
	// Stop closes the worker's connections.
	Stop() error
}

// holdConnections connects every account of job and returns the devices.
func holdConnections(ctx context.Context, job *WorkerJob) ([]*device, *WorkerReport) {
	o := &Options{Server: job.Server, Sources: job.Sources}
	start := time.Now()
	devs, _, _, err := connectAll(ctx, o, o.httpClient(job.Concurrency), job.Accounts, new(recorder), job.Concurrency)
	rep := &WorkerReport{Connected: len(devs), Seconds: time.Since(start).Seconds()}
	if err != nil {
		rep.Error = err.Error()
	}
	return devs, rep
}

// InProcess is a Worker holding its connections in this process.
type InProcess struct{ devs []*device }

func (w *InProcess) Start(ctx context.Context, job *WorkerJob) (*WorkerReport, error) {
	devs, rep := holdConnections(ctx, job)
	w.devs = devs
	return rep, nil
}

func (w *InProcess) Stop() error {
	closeAll(w.devs)
	w.devs = nil
	return nil
}

// Process is a Worker in a child process: Cmd runs RunWorker (for
// doorless-bench, "doorless-bench worker"). One process may open at most
// so many files; several Process workers spread the connections.
type Process struct {
	Cmd   *exec.Cmd
	stdin io.WriteCloser
}

func (w *Process) Start(ctx context.Context, job *WorkerJob) (*WorkerReport, error) {
	stdin, err := w.Cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := w.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if w.Cmd.Stderr == nil {
		w.Cmd.Stderr = os.Stderr
	}
	if err := w.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: starting a worker: %v", err)
	}
	w.stdin = stdin
	if err := json.NewEncoder(stdin).Encode(job); err != nil {
		w.Stop()
		return nil, fmt.Errorf("loadtest: worker: %v", err)
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("loadtest: worker ended without a report: %v", err)
	}
	var rep WorkerReport
	if err := json.Unmarshal(line, &rep); err != nil {
		w.Stop()
		return nil, fmt.Errorf("loadtest: worker report: %v", err)
	}
	return &rep, nil
}

// Stop closes the worker's standard input, which has it close its
// connections and exit, and waits for it.
func (w *Process) Stop() error {
	if w.stdin != nil {
		w.stdin.Close()
	}
	return w.Cmd.Wait()
}

// RunWorker is a worker process's main: it reads a WorkerJob from r,
// connects, writes its WorkerReport as one line to w, holds the
// connections until r ends, and closes them.
func RunWorker(ctx context.Context, r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	var job WorkerJob
	if err := dec.Decode(&job); err != nil {
		return fmt.Errorf("loadtest: worker job: %v", err)
	}
	devs, rep := holdConnections(ctx, &job)
	b, _ := json.Marshal(rep)
	if _, err := w.Write(append(b, '\n')); err != nil {
		closeAll(devs)
		return err
	}
	io.Copy(io.Discard, io.MultiReader(dec.Buffered(), r))
	closeAll(devs)
	return nil
}

// IdleConfig configures Idle.
type IdleConfig struct {
	// Accounts are connected, one WebSocket each, spread over Workers.
	Accounts []*Account
	// Workers make the workers; Idle splits the accounts evenly among
	// them, and gives each its share of Options.Sources.
	Workers []Worker
	// Concurrency is how many connections each worker opens at once.
	Concurrency int
	// Settle is how long to wait with every connection up before
	// measuring, so that the connections' first frames are done with.
	Settle time.Duration
}

// IdleResult is what Idle measured: the server's memory before and with
// the connections, from /proc/PID/status (VmRSS) and from the server's
// /metrics (Go heap in use, goroutines).
type IdleResult struct {
	Connections    int     `json:"connections"`
	Workers        int     `json:"workers"`
	ConnectSeconds float64 `json:"connect_seconds"`
	RSSBefore      int64   `json:"rss_before_bytes"`
	RSSAfter       int64   `json:"rss_after_bytes"`
	// RSSPerConn is (RSSAfter - RSSBefore) / Connections.
	RSSPerConn      float64 `json:"rss_per_connection_bytes"`
	HeapBefore      float64 `json:"heap_inuse_before_bytes"`
	HeapAfter       float64 `json:"heap_inuse_after_bytes"`
	HeapPerConn     float64 `json:"heap_per_connection_bytes"`
	GoroutinesAfter float64 `json:"goroutines_after"`
	StacksAfter     float64 `json:"stack_inuse_after_bytes"`
}

// Idle opens one authenticated WebSocket per account through the workers,
// waits until all are up and settled, and measures the server's memory.
func Idle(ctx context.Context, o *Options, cfg IdleConfig) (*IdleResult, error) {
	if len(cfg.Workers) == 0 || len(cfg.Accounts) == 0 {
		return nil, errors.New("loadtest: idle needs accounts and workers")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	res := &IdleResult{Workers: len(cfg.Workers)}
	var err error
	if res.RSSBefore, err = rss(o.PID); err != nil {
		return nil, err
	}
	before, err := serverMetrics(ctx, o)
	if err != nil {
		return nil, err
	}
	res.HeapBefore = before["go_memstats_heap_inuse_bytes"]

	n := len(cfg.Workers)
	var wg sync.WaitGroup
	reps := make([]*WorkerReport, n)
	errs := make([]error, n)
	start := time.Now()
	o.logf("connecting %d idle devices through %d workers", len(cfg.Accounts), n)
	for i, w := range cfg.Workers {
		lo, hi := i*len(cfg.Accounts)/n, (i+1)*len(cfg.Accounts)/n
		job := &WorkerJob{Server: o.Server, Accounts: cfg.Accounts[lo:hi], Concurrency: cfg.Concurrency}
		for j, src := range o.Sources {
			if j%n == i {
				job.Sources = append(job.Sources, src)
			}
		}
		wg.Go(func() { reps[i], errs[i] = w.Start(ctx, job) })
	}
	wg.Wait()
	res.ConnectSeconds = time.Since(start).Seconds()
	defer func() {
		for _, w := range cfg.Workers {
			w.Stop()
		}
	}()
	for i := range n {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if reps[i].Error != "" {
			return nil, fmt.Errorf("loadtest: worker %d: %s", i, reps[i].Error)
		}
		res.Connections += reps[i].Connected
	}
	o.logf("%d connections up in %.1fs; settling %v", res.Connections, res.ConnectSeconds, cfg.Settle)
	if cfg.Settle > 0 {
		t := time.NewTimer(cfg.Settle)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if res.RSSAfter, err = rss(o.PID); err != nil {
		return nil, err
	}
	after, err := serverMetrics(ctx, o)
	if err != nil {
		return nil, err
	}
	res.HeapAfter = after["go_memstats_heap_inuse_bytes"]
	res.GoroutinesAfter = after["go_goroutines"]
	res.StacksAfter = after["go_memstats_stack_inuse_bytes"]
	if res.Connections > 0 {
		res.RSSPerConn = float64(res.RSSAfter-res.RSSBefore) / float64(res.Connections)
		res.HeapPerConn = (res.HeapAfter - res.HeapBefore) / float64(res.Connections)
	}
	return res, nil
}

// rss reads a process's resident set size from /proc/PID/status.
func rss(pid int) (int64, error) {
	if pid <= 0 {
		pid = os.Getpid()
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("loadtest: the server's memory: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024, nil
				}
			}
		}
	}
	return 0, errors.New("loadtest: no VmRSS in /proc status")
}

// serverMetrics reads the server's /metrics: the value of every metric
// without labels.
func serverMetrics(ctx context.Context, o *Options) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.Server+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := o.httpClient(1).Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadtest: metrics: %v", err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	if resp.StatusCode != http.StatusOK {
		return out, nil // metrics served elsewhere: RSS only
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}
