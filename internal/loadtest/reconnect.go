package loadtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ReconnectConfig configures Reconnect.
type ReconnectConfig struct {
	// Devices are the accounts that connect at once; they start offline.
	Devices []*Account
	// Concurrency is how many connections are being opened at once.
	Concurrency int
	// Queued is how many one-to-one messages are queued for each device
	// while it is offline, before the drain.
	Queued int
	// SendConcurrency is how many of those sends are in flight at once.
	SendConcurrency int
	// Size is their ciphertext size.
	Size int
	// DrainTimeout bounds the wait for the drain.
	DrainTimeout time.Duration
}

// ReconnectResult is what Reconnect measured.
type ReconnectResult struct {
	Devices     int `json:"devices"`
	Concurrency int `json:"concurrency"`
	// The storm: every device connects with an empty queue.
	// AcceptSeconds is until the last WebSocket was accepted
	// (authenticated, 101), ReadySeconds until the last queue_empty.
	AcceptSeconds     float64 `json:"accept_seconds"`
	ConnectsPerSecond float64 `json:"connects_per_second"`
	ReadySeconds      float64 `json:"ready_seconds"`
	// The drain: Queued envelopes per device were queued while offline
	// (at QueuedPerSecond), then every device connected; DrainSeconds is
	// until the last envelope was received and the devices had every
	// queue_empty, and the close handshakes had carried every ack.
	Queued           int     `json:"queued"`
	QueueSeconds     float64 `json:"queue_seconds"`
	QueuedPerSecond  float64 `json:"queued_per_second"`
	DrainSeconds     float64 `json:"drain_seconds"`
	DrainedPerSecond float64 `json:"drained_per_second"`
	Deliveries       int     `json:"deliveries"`
	Missing          int     `json:"missing"`
	Duplicates       int     `json:"duplicates"`
	Unexpected       int     `json:"unexpected"`
	RedeliveredAfter int     `json:"redelivered_after_reconnect"`
}

// Reconnect measures a reconnect storm and an offline drain. Every device
// connects at once (Concurrency at a time) with an empty queue: connects
// per second. Then, all offline, Queued sealed one-to-one messages are
// queued for each; every device connects at once again and acknowledges
// everything: the time until every queue is empty. A last connection of
// every device checks that the queues are empty indeed (nothing comes
// again).
func Reconnect(ctx context.Context, o *Options, cfg ReconnectConfig) (*ReconnectResult, error) {
	if len(cfg.Devices) == 0 {
		return nil, errors.New("loadtest: reconnect needs devices")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.SendConcurrency <= 0 {
		cfg.SendConcurrency = 64
	}
	if cfg.Size < stampSize+1 {
		cfg.Size = 500
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Minute
	}
	res := &ReconnectResult{Devices: len(cfg.Devices), Concurrency: cfg.Concurrency}
	hc := o.httpClient(cfg.Concurrency)

	o.logf("reconnect storm: %d devices, %d at a time", len(cfg.Devices), cfg.Concurrency)
	devs, accepted, ready, err := connectAll(ctx, o, hc, cfg.Devices, new(recorder), cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	res.AcceptSeconds, res.ReadySeconds = accepted.Seconds(), ready.Seconds()
	res.ConnectsPerSecond = float64(len(cfg.Devices)) / accepted.Seconds()
	closeAll(devs)
	hc.CloseIdleConnections()

	// Queue for everyone while offline.
	o.logf("queueing %d messages for each offline device", cfg.Queued)
	total := cfg.Queued * len(cfg.Devices)
	start := time.Now()
	if err := queueOffline(ctx, o, cfg, total); err != nil {
		return nil, err
	}
	res.Queued = total
	res.QueueSeconds = time.Since(start).Seconds()
	if res.QueueSeconds > 0 {
		res.QueuedPerSecond = float64(total) / res.QueueSeconds
	}

	o.logf("draining %d envelopes", total)
	rec := new(recorder)
	start = time.Now()
	devs, _, _, err = connectAll(ctx, o, hc, cfg.Devices, rec, cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	for rec.delivered.Load() < int64(total) && time.Since(start) < cfg.DrainTimeout && ctx.Err() == nil {
		<-tick.C
	}
	tick.Stop()
	closeAll(devs)
	res.DrainSeconds = time.Since(start).Seconds()
	res.DrainedPerSecond = float64(total) / res.DrainSeconds
	res.Deliveries = int(rec.delivered.Load())
	sent := make([]uint64, cfg.Queued)
	for i := range sent {
		sent[i] = uint64(i)
	}
	for _, d := range devs {
		missing, dups, unexpected := tally(d.got, sent)
		res.Missing += missing
		res.Duplicates += dups
		res.Unexpected += unexpected
	}

	// Empty indeed: nothing comes on the next connection.
	rec = new(recorder)
	devs, _, _, err = connectAll(ctx, o, hc, cfg.Devices, rec, cfg.Concurrency)
	if err != nil {
		return nil, err
	}
	closeAll(devs)
	res.RedeliveredAfter = int(rec.delivered.Load())
	return res, nil
}

// queueOffline sends cfg.Queued sealed messages to each device, sequence
// numbers 0..Queued-1 per device, SendConcurrency at a time.
func queueOffline(ctx context.Context, o *Options, cfg ReconnectConfig, total int) error {
	pool := make([]byte, cfg.Size)
	rand.Read(pool)
	paths, headers := sendHeads(cfg.Devices)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range cfg.SendConcurrency {
		wg.Go(func() {
			c := newSendClient(ctx, o)
			defer c.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				t := i % len(cfg.Devices)
				if err := sendOne(c, o.sendServer(), paths[t], headers[t], cfg.Devices[t], pool, uint64(i/len(cfg.Devices))); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("loadtest: queueing: %w", err)
					}
					mu.Unlock()
					next.Store(int64(total))
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
