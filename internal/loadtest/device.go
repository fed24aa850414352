package loadtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/doorless/doorless/internal/api"
)

// stampSize is the tail of every envelope content the tool sends: the send
// time in Unix nanoseconds and a sequence number, big-endian.
const stampSize = 16

// stamp writes seq and the send time t into the last stampSize bytes of b.
func stamp(b []byte, seq uint64, t time.Time) {
	binary.BigEndian.PutUint64(b[len(b)-16:], uint64(t.UnixNano()))
	binary.BigEndian.PutUint64(b[len(b)-8:], seq)
}

// readStamp reads what stamp wrote; false when b is too short.
func readStamp(b []byte) (seq uint64, sent int64, ok bool) {
	if len(b) < stampSize {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[len(b)-8:]), int64(binary.BigEndian.Uint64(b[len(b)-16:])), true
}

// recorder gathers what the devices of one scenario receive.
type recorder struct {
	delivered atomic.Int64 // envelopes with a stamp, duplicates included
}

// device is one connected delivery WebSocket. Its read loop owns got, lat,
// last and unstamped until done is closed.
type device struct {
	acct  *Account
	ws    *websocket.Conn
	ready chan struct{} // closed at the first queue_empty
	done  chan struct{} // closed when the read loop has ended
	err   error         // why the read loop ended; read after done

	rec       *recorder
	got       []uint64 // sequence numbers received, in order of receipt, duplicates included
	lat       []int64  // send→receipt, nanoseconds
	last      int64    // Unix nanoseconds of the latest stamped receipt
	unstamped int
	readyOnce sync.Once
}

// frameLite is the part of a frame the tool reads.
type frameLite struct {
	Type     string `json:"type"`
	Envelope *struct {
		ID      string `json:"id"`
		Content []byte `json:"content"`
	} `json:"envelope"`
}

// ErrClosed is why a device's read loop ends when the server closes the
// connection with a status.
var ErrClosed = errors.New("loadtest: the server closed the connection")

// connect opens acct's delivery WebSocket (authenticated by its
// credentials) and starts its read loop, which acknowledges every envelope.
func connect(ctx context.Context, hc *http.Client, server string, acct *Account, rec *recorder) (*device, error) {
	ws, resp, err := websocket.Dial(ctx, wsURL(server), &websocket.DialOptions{
		HTTPClient:      hc,
		HTTPHeader:      http.Header{"Authorization": {acct.basicAuth()}},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w: websocket: %s", ErrStatus, resp.Status)
		}
		return nil, fmt.Errorf("loadtest: websocket: %v", err)
	}
	ws.SetReadLimit(int64(api.MaxFrameSize(256 << 10)))
	d := &device{acct: acct, ws: ws, ready: make(chan struct{}), done: make(chan struct{}), rec: rec}
	go d.readLoop()
	return d, nil
}

func wsURL(server string) string {
	switch {
	case strings.HasPrefix(server, "https://"):
		return "wss://" + strings.TrimPrefix(server, "https://") + api.PathWebSocket
	default:
		return "ws://" + strings.TrimPrefix(server, "http://") + api.PathWebSocket
	}
}

// The acknowledgement of an envelope, around its id.
const (
	ackPrefix = `{"type":"` + api.FrameAck + `","id":"`
	ackSuffix = `"}`
)

// readLoop reads every frame into one reused buffer and acknowledges each
// envelope from another; the tool shares the machine with the server, so
// a delivery costs it no allocation but the bookkeeping's.
func (d *device) readLoop() {
	defer close(d.done)
	ctx := context.Background()
	var frame bytes.Buffer
	var content, ack []byte
	for {
		typ, r, err := d.ws.Reader(ctx)
		if err == nil {
			frame.Reset()
			_, err = frame.ReadFrom(r)
		}
		if err != nil {
			if websocket.CloseStatus(err) != -1 {
				err = fmt.Errorf("%w: %v", ErrClosed, err)
			}
			d.err = err
			return
		}
		now := time.Now().UnixNano()
		if typ != websocket.MessageText {
			d.fail(errors.New("loadtest: a malformed frame"))
			return
		}
		kind, id, c, err := parseFrame(frame.Bytes(), content[:0])
		if err != nil {
			d.fail(err)
			return
		}
		content = c
		switch kind {
		case api.FrameQueueEmpty:
			d.readyOnce.Do(func() { close(d.ready) })
		case api.FrameEnvelope:
			if seq, sent, ok := readStamp(content); ok {
				d.got = append(d.got, seq)
				d.lat = append(d.lat, now-sent)
				d.last = max(d.last, now)
				d.rec.delivered.Add(1)
			} else {
				d.unstamped++
			}
			ack = append(append(append(ack[:0], ackPrefix...), id...), ackSuffix...)
			if err := d.ws.Write(ctx, websocket.MessageText, ack); err != nil {
				d.err = err
				return
			}
		}
	}
}

// fail ends the read loop's connection for err.
func (d *device) fail(err error) {
	d.err = err
	d.ws.CloseNow()
}

// envelopeHead is how the server's encoder begins every envelope frame, up
// to the envelope's id.
const envelopeHead = `{"type":"` + api.FrameEnvelope + `","envelope":{"id":"`

// parseFrame reads a frame's type and, for an envelope, its id and its
// content, decoded into buf's space. It reads envelopes laid out as the
// server encodes them with readEnvelope, anything else with encoding/json.
func parseFrame(b, buf []byte) (kind string, id, content []byte, err error) {
	if id, content, ok := readEnvelope(b, buf); ok {
		return api.FrameEnvelope, id, content, nil
	}
	var f frameLite
	if json.Unmarshal(b, &f) != nil {
		return "", nil, buf, errors.New("loadtest: a malformed frame")
	}
	if f.Type == api.FrameEnvelope {
		if f.Envelope == nil || !api.ValidUUID(f.Envelope.ID) {
			return "", nil, buf, errors.New("loadtest: an envelope without an id")
		}
		return f.Type, []byte(f.Envelope.ID), f.Envelope.Content, nil
	}
	return f.Type, nil, buf, nil
}

// readEnvelope reads the id and content of an envelope frame laid out as
// the server's encoder makes it (api.Frame and api.Envelope, fields in
// their declared order), without a JSON decoder: the id is at a fixed
// place, "content" is the envelope's one key of that name, and its base64
// has neither quotes nor escapes. False for any other frame.
func readEnvelope(b, buf []byte) (id, content []byte, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(envelopeHead))
	if !ok || len(rest) < 37 || rest[36] != '"' || !bytes.HasSuffix(rest, []byte("}}")) || !validID(rest[:36]) {
		return nil, nil, false
	}
	_, enc, ok := bytes.Cut(rest[37:], []byte(`,"content":"`))
	if !ok {
		return nil, nil, false
	}
	if enc, _, ok = bytes.Cut(enc, []byte{'"'}); !ok {
		return nil, nil, false
	}
	content, err := base64.StdEncoding.AppendDecode(buf, enc)
	if err != nil {
		return nil, nil, false
	}
	return rest[:36], content, true
}

// close ends the connection with a close handshake (so that every ack
// written before reaches the server first) and waits for the read loop.
func (d *device) close() {
	d.ws.Close(websocket.StatusNormalClosure, "")
	<-d.done
}

// connectAll connects every account, concurrency at a time, and waits
// until each has had its queue_empty. It returns the devices in the order
// of accts, and the time the last WebSocket was accepted and the last
// queue_empty arrived, from start. On failure it closes what it opened.
func connectAll(ctx context.Context, o *Options, hc *http.Client, accts []*Account, rec *recorder, concurrency int) (devs []*device, accepted, ready time.Duration, err error) {
	devs = make([]*device, len(accts))
	start := time.Now()
	var next atomic.Int64
	var lastAccept atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range max(1, min(concurrency, len(accts))) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(accts) {
					return
				}
				d, err := connect(ctx, hc, o.serverFor(i), accts[i], rec)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					next.Store(int64(len(accts)))
					return
				}
				devs[i] = d
				t := int64(time.Since(start))
				for {
					l := lastAccept.Load()
					if t <= l || lastAccept.CompareAndSwap(l, t) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		for _, d := range devs {
			select {
			case <-d.ready:
			case <-d.done:
				firstErr = fmt.Errorf("loadtest: a connection ended before its queue was sent: %v", d.err)
			case <-ctx.Done():
				firstErr = ctx.Err()
			}
			if firstErr != nil {
				break
			}
		}
	}
	ready = time.Since(start)
	if firstErr != nil {
		closeAll(devs)
		return nil, 0, 0, firstErr
	}
	return devs, time.Duration(lastAccept.Load()), ready, nil
}

// closeAll closes every device (nil ones skipped), 64 at a time.
func closeAll(devs []*device) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, d := range devs {
		if d == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.close()
		})
	}
	wg.Wait()
}

// validID is api.ValidUUID for bytes, without a regular expression: the
// tool checks the id of every envelope it acknowledges.
func validID(b []byte) bool {
	if len(b) != 36 || b[14] != '4' || !strings.ContainsRune("89ab", rune(b[19])) {
		return false
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// tally compares the sequence numbers a device got (in any order,
// duplicates included; sorted in place) with those sent to it (sorted,
// each once): how many sent never arrived, how many arrivals repeated one
// that did, and how many arrived that were never sent to it.
func tally(got, want []uint64) (missing, duplicates, unexpected int) {
	slices.Sort(got)
	i := 0
	for j := 0; j < len(got); {
		s, n := got[j], 1
		for j+n < len(got) && got[j+n] == s {
			n++
		}
		j += n
		for i < len(want) && want[i] < s {
			missing++
			i++
		}
		if i < len(want) && want[i] == s {
			duplicates += n - 1
			i++
		} else {
			unexpected += n
		}
	}
	return missing + len(want) - i, duplicates, unexpected
}
