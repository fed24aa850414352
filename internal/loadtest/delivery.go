package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

// DeliveryConfig configures OneToOne and FanOut.
type DeliveryConfig struct {
	// Devices are the accounts whose devices are online: in OneToOne each
	// sends to the others; in FanOut they are the group, and Devices[0]
	// sends to the rest.
	Devices []*Account
	// Concurrency is how many sends are in flight at once.
	Concurrency int
	// Duration is how long sends are made; then the scenario waits for
	// every message to arrive (up to DrainTimeout).
	Duration     time.Duration
	DrainTimeout time.Duration
	// Sends, when positive, ends the sending after that many sends
	// instead of after Duration.
	Sends int
	// MinSize and MaxSize bound the ciphertext of a one-to-one message
	// (uniformly between them); FanOut uses MinSize as the size of the
	// sender-key message it seals.
	MinSize, MaxSize int
	// ConnectConcurrency is how many WebSockets are opened at once.
	ConnectConcurrency int
}

func (c *DeliveryConfig) defaults() error {
	if len(c.Devices) < 2 {
		return errors.New("loadtest: a delivery scenario needs at least 2 devices")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = time.Minute
	}
	if c.MinSize < stampSize+1 {
		c.MinSize = 200
	}
	if c.MaxSize < c.MinSize {
		c.MaxSize = max(c.MinSize, 1000)
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 32
	}
	return nil
}

// DeliveryResult is what OneToOne and FanOut measured.
type DeliveryResult struct {
	Scenario    string `json:"scenario"`
	Devices     int    `json:"devices"`
	Recipients  int    `json:"recipients_per_send"`
	Concurrency int    `json:"concurrency"`
	// Sends were accepted (200) and FailedSends not; Deliveries are the
	// envelopes the devices received and acknowledged, Expected what the
	// accepted sends addressed; Missing never arrived, Duplicates arrived
	// more than once, Unexpected arrived where no send addressed them.
	Sends       int    `json:"sends"`
	FailedSends int    `json:"failed_sends"`
	FirstError  string `json:"first_error,omitempty"`
	Expected    int    `json:"expected"`
	Deliveries  int    `json:"deliveries"`
	Missing     int    `json:"missing"`
	Duplicates  int    `json:"duplicates"`
	Unexpected  int    `json:"unexpected"`
	// Seconds runs from the first send to the last receipt.
	Seconds       float64 `json:"seconds"`
	SendsPerSec   float64 `json:"sends_per_second"`
	DeliveriesSec float64 `json:"deliveries_per_second"`
	// Latency of delivery (send started → envelope read by the device)
	// and of the send request itself, in milliseconds.
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	SendP50 float64 `json:"send_p50_ms"`
	SendP99 float64 `json:"send_p99_ms"`
	// ToolCPU is the CPU time (user and system) the load tool itself
	// spent from the first send until the last delivery or the drain's
	// end: taken from the server when both share a machine.
	ToolCPU float64 `json:"tool_cpu_seconds"`
	// ContentBytes is the range of envelope content sizes.
	ContentBytes [2]int `json:"content_bytes"`
}

// sendFunc makes send number seq on c and returns the index (in Devices)
// of the device it addressed, or -1 for every device but Devices[0].
type sendFunc func(c *sendClient, seq uint64) (int, error)

type sent struct {
	seq    uint64
	target int
}

// OneToOne connects every device, then has Concurrency senders send
// one-to-one sealed-sender messages (PUT /v1/messages/{username} with the
// recipient's Unidentified-Access-Key, as the client sends to a contact)
// to random devices for Duration, and measures their delivery.
func OneToOne(ctx context.Context, o *Options, cfg DeliveryConfig) (*DeliveryResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	devs := cfg.Devices
	pool := make([]byte, cfg.MaxSize)
	rand.Read(pool)
	paths, headers := sendHeads(devs)
	send := func(c *sendClient, seq uint64) (int, error) {
		t := mrand.IntN(len(devs))
		size := cfg.MinSize + mrand.IntN(cfg.MaxSize-cfg.MinSize+1)
		return t, sendOne(c, o.sendServer(), paths[t], headers[t], devs[t], pool[:size], seq)
	}
	res, err := runDeliveries(ctx, o, &cfg, send, 1)
	if res != nil {
		res.Scenario = "one-to-one"
		res.ContentBytes = [2]int{cfg.MinSize, cfg.MaxSize}
	}
	return res, err
}

// sendHeads are the path and header lines of a one-to-one send to each
// of devs: what does not change from send to send.
func sendHeads(devs []*Account) (paths, headers []string) {
	paths = make([]string, len(devs))
	headers = make([]string, len(devs))
	for i, a := range devs {
		paths[i] = "/v1/messages/" + a.Username
		headers[i] = api.HeaderUnidentifiedAccessKey + ": " + api.FormatUnidentifiedAccessKey(a.accessKey()) +
			"\r\nContent-Type: application/json\r\n"
	}
	return paths, headers
}

// sendOne sends content (a copy, stamped with seq and the time) sealed to
// to's primary device, as PUT path with the header lines from sendHeads,
// and checks that the server queued it for that device.
func sendOne(c *sendClient, server, path, header string, to *Account, content []byte, seq uint64) error {
	c.content = append(c.content[:0], content...)
	stamp(c.content, seq, time.Now())
	var franking [api.FrankingSize]byte
	rand.Read(franking[:])
	c.body = appendSendRequest(c.body[:0], api.NewUUID(), time.Now().UnixMilli(), franking[:], to.RegistrationID, c.content)
	status, answer, err := c.do(http.MethodPut, server, path, header, c.body)
	if err != nil {
		return err
	}
	var resp api.SendResponse
	if err := decodeAnswer(status, answer, &resp); err != nil {
		return err
	}
	if resp.Delivered != 1 {
		return fmt.Errorf("loadtest: a send was queued for %d devices, not 1", resp.Delivered)
	}
	return nil
}

// appendSendRequest appends the JSON of an api.SendRequest of one sealed
// message for a recipient's primary device: what json.Marshal makes of
// it, without reflection or copies of content.
func appendSendRequest(b []byte, id string, timestamp int64, franking []byte, regID uint32, content []byte) []byte {
	b = append(append(append(b, `{"id":"`...), id...), `","timestamp":`...)
	b = strconv.AppendInt(b, timestamp, 10)
	b = base64.StdEncoding.AppendEncode(append(b, `,"franking":"`...), franking)
	b = strconv.AppendUint(append(b, `","messages":[{"device_id":`...), api.PrimaryDeviceID, 10)
	b = strconv.AppendUint(append(b, `,"registration_id":`...), uint64(regID), 10)
	b = strconv.AppendInt(append(b, `,"type":`...), api.EnvelopeUnidentifiedSender, 10)
	b = base64.StdEncoding.AppendEncode(append(b, `,"content":"`...), content)
	return append(b, `"}]}`...)
}

// FanOut connects every device, seals one sender-key message of MinSize
// bytes from Devices[0] to all the others in a sealed sender v2
// multi-recipient message (sealedsender.EncryptMulti, as the client sends
// to a group whose members' access keys it holds), and has Concurrency
// senders PUT it to /v1/messages/multi-recipient for Duration, each send
// with a new id and its own stamp in the shared ciphertext's tail.
func FanOut(ctx context.Context, o *Options, cfg DeliveryConfig) (*DeliveryResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if len(cfg.Devices)-1 > api.MaxMultiRecipients {
		return nil, fmt.Errorf("loadtest: a multi-recipient send reaches at most %d recipients", api.MaxMultiRecipients)
	}
	body, key, err := sealGroupMessage(ctx, o, cfg.Devices, cfg.MinSize)
	if err != nil {
		return nil, err
	}
	header := api.HeaderUnidentifiedAccessKey + ": " + api.FormatUnidentifiedAccessKey(key) +
		"\r\nContent-Type: " + api.ContentTypeMultiRecipient + "\r\n"
	parsed, err := sealedsender.ParseSent(body)
	if err != nil {
		return nil, fmt.Errorf("loadtest: the sealed group message does not parse: %v", err)
	}
	envSize := len(parsed.ForRecipient(0))
	want := len(cfg.Devices) - 1
	send := func(c *sendClient, seq uint64) (int, error) {
		c.body = append(c.body[:0], body...)
		stamp(c.body, seq, time.Now())
		var franking [api.FrankingSize]byte
		rand.Read(franking[:])
		q := url.Values{"id": {api.NewUUID()}, "timestamp": {strconv.FormatInt(time.Now().UnixMilli(), 10)},
			api.QueryFranking: {base64.RawURLEncoding.EncodeToString(franking[:])}}
		status, answer, err := c.do(http.MethodPut, o.sendServer(), api.PathMultiRecipient+"?"+q.Encode(), header, c.body)
		if err != nil {
			return -1, err
		}
		var sr api.SendResponse
		if err := decodeAnswer(status, answer, &sr); err != nil {
			return -1, err
		}
		if sr.Delivered != want {
			return -1, fmt.Errorf("loadtest: a group send was queued for %d devices, not %d", sr.Delivered, want)
		}
		return -1, nil
	}
	res, err := runDeliveries(ctx, o, &cfg, send, want)
	if res != nil {
		res.Scenario = "fan-out"
		res.ContentBytes = [2]int{envSize, envSize}
	}
	return res, err
}

// sealGroupMessage seals a random sender-key message of size bytes from
// group[0] to the others, with a sender certificate the server issues to
// group[0], and returns it with the recipients' combined access key.
func sealGroupMessage(ctx context.Context, o *Options, group []*Account, size int) ([]byte, [api.UnidentifiedAccessKeySize]byte, error) {
	var key [api.UnidentifiedAccessKeySize]byte
	from := group[0]
	var cr api.SenderCertificateResponse
	if err := doJSON(ctx, o.httpClient(1), http.MethodGet, o.Server+api.PathSenderCertificate,
		http.Header{"Authorization": {from.basicAuth()}}, nil, &cr); err != nil {
		return nil, key, fmt.Errorf("loadtest: sender certificate: %w", err)
	}
	cert, err := sealedsender.ParseSenderCertificate(cr.Certificate)
	if err != nil {
		return nil, key, fmt.Errorf("loadtest: sender certificate: %v", err)
	}
	priv, err := keys.NewPrivateKey(from.Identity)
	if err != nil {
		return nil, key, err
	}
	var recips []sealedsender.Recipient
	var aks [][api.UnidentifiedAccessKeySize]byte
	for _, a := range group[1:] {
		sid, err := sealedsender.NewACI(a.ID)
		if err != nil {
			return nil, key, err
		}
		ik, err := keys.ParsePublicKey(a.IdentityKey)
		if err != nil {
			return nil, key, err
		}
		recips = append(recips, sealedsender.Recipient{ServiceID: sid, IdentityKey: ik,
			Devices: []sealedsender.Device{{ID: api.PrimaryDeviceID, RegistrationID: a.RegistrationID}}})
		aks = append(aks, a.accessKey())
	}
	skm := make([]byte, size)
	rand.Read(skm)
	groupID := make([]byte, 32)
	rand.Read(groupID)
	body, err := sealedsender.EncryptMulti(nil, recips, priv, &sealedsender.Content{Type: sealedsender.TypeSenderKey,
		Sender: cert, Contents: skm, Hint: sealedsender.HintResendable, GroupID: groupID})
	if err != nil {
		return nil, key, fmt.Errorf("loadtest: sealing: %v", err)
	}
	return body, api.CombineAccessKeys(aks...), nil
}

// runDeliveries connects the devices, sends for cfg.Duration, waits for
// the deliveries, closes the devices and checks every message arrived
// exactly once where it was sent.
func runDeliveries(ctx context.Context, o *Options, cfg *DeliveryConfig, send sendFunc, perSend int) (*DeliveryResult, error) {
	rec := new(recorder)
	o.logf("connecting %d devices", len(cfg.Devices))
	devs, _, _, err := connectAll(ctx, o, o.httpClient(cfg.ConnectConcurrency), cfg.Devices, rec, cfg.ConnectConcurrency)
	if err != nil {
		return nil, err
	}
	defer func() {
		if devs != nil {
			closeAll(devs)
		}
	}()
	if cfg.Sends > 0 {
		o.logf("making %d sends, %d at a time", cfg.Sends, cfg.Concurrency)
	} else {
		o.logf("sending for %v, %d at a time", cfg.Duration, cfg.Concurrency)
	}
	var (
		seq      atomic.Uint64
		failed   atomic.Int64
		mu       sync.Mutex
		firstErr error
		sends    []sent
		sendLat  []int64
		wg       sync.WaitGroup
	)
	// Every sender's connections are up before the clock starts, as a
	// client's would be.
	clients := make([]*sendClient, cfg.Concurrency)
	for i := range clients {
		clients[i] = newSendClient(ctx, o)
		defer clients[i].close()
		if err := clients[i].dialAll(); err != nil {
			return nil, err
		}
	}
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for _, c := range clients {
		wg.Go(func() {
			var mine []sent
			var lat []int64
			for ctx.Err() == nil {
				if cfg.Sends <= 0 && !time.Now().Before(deadline) {
					break
				}
				s := seq.Add(1)
				if cfg.Sends > 0 && s > uint64(cfg.Sends) {
					break
				}
				t0 := time.Now()
				target, err := send(c, s)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, int64(time.Since(t0)))
				mine = append(mine, sent{seq: s, target: target})
			}
			mu.Lock()
			sends = append(sends, mine...)
			sendLat = append(sendLat, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	expected := len(sends) * perSend
	o.logf("%d sends accepted, %d failed; waiting for %d deliveries", len(sends), failed.Load(), expected)
	drainEnd := time.Now().Add(cfg.DrainTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	for rec.delivered.Load() < int64(expected) && time.Now().Before(drainEnd) && ctx.Err() == nil {
		<-tick.C
	}
	tick.Stop()
	toolCPU := processCPU() - cpu0
	closeAll(devs)
	all := devs
	devs = nil

	res := &DeliveryResult{Devices: len(all), Recipients: perSend, Concurrency: cfg.Concurrency,
		Sends: len(sends), FailedSends: int(failed.Load()), Expected: expected, Deliveries: int(rec.delivered.Load()),
		ToolCPU: toolCPU.Seconds()}
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	// Exactly once: what each device was sent, against what it got.
	want := make([][]uint64, len(all))
	var everyone []uint64 // the group sends, to all devices but the first
	for _, s := range sends {
		if s.target >= 0 {
			want[s.target] = append(want[s.target], s.seq)
		} else {
			everyone = append(everyone, s.seq)
		}
	}
	var lats []int64
	var last int64
	for i, d := range all {
		w := want[i]
		if i > 0 && len(everyone) > 0 {
			w = append(w, everyone...)
		}
		slices.Sort(w)
		missing, dups, unexpected := tally(d.got, w)
		res.Missing += missing
		res.Duplicates += dups
		res.Unexpected += unexpected
		lats = append(lats, d.lat...)
		last = max(last, d.last)
	}
	if last > 0 {
		res.Seconds = time.Unix(0, last).Sub(start).Seconds()
	}
	if res.Seconds > 0 {
		res.SendsPerSec = float64(res.Sends) / res.Seconds
		res.DeliveriesSec = float64(res.Deliveries-res.Duplicates-res.Unexpected) / res.Seconds
	}
	res.P50, res.P99, res.Max = percentiles(lats)
	res.SendP50, res.SendP99, _ = percentiles(sendLat)
	return res, nil
}

// percentiles gives the median, 99th percentile and maximum of ns, in
// milliseconds.
func percentiles(ns []int64) (p50, p99, maxv float64) {
	if len(ns) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ns)
	ms := func(v int64) float64 { return float64(v) / 1e6 }
	return ms(ns[(len(ns)-1)*50/100]), ms(ns[(len(ns)-1)*99/100]), ms(ns[len(ns)-1])
}

// encodeJSON is json.Marshal for the report.
func encodeJSON(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
