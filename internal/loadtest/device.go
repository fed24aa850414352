package loadtest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	last      atomic.Int64 // Unix nanoseconds of the latest receipt
}

// device is one connected delivery WebSocket. Its read loop owns got, lat
// and unstamped until done is closed.
type device struct {
	acct  *Account
	ws    *websocket.Conn
	ready chan struct{} // closed at the first queue_empty
	done  chan struct{} // closed when the read loop has ended
	err   error         // why the read loop ended; read after done

	rec       *recorder
	got       map[uint64]uint8 // deliveries per sequence number
	lat       []int64          // send→receipt, nanoseconds
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
	d := &device{acct: acct, ws: ws, ready: make(chan struct{}), done: make(chan struct{}), rec: rec, got: make(map[uint64]uint8)}
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

func (d *device) readLoop() {
	defer close(d.done)
	ctx := context.Background()
	for {
		typ, b, err := d.ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != -1 {
				err = fmt.Errorf("%w: %v", ErrClosed, err)
			}
			d.err = err
			return
		}
		now := time.Now()
		var f frameLite
		if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil {
			d.err = errors.New("loadtest: a malformed frame")
			d.ws.CloseNow()
			return
		}
		switch f.Type {
		case api.FrameQueueEmpty:
			d.readyOnce.Do(func() { close(d.ready) })
		case api.FrameEnvelope:
			if f.Envelope == nil || !api.ValidUUID(f.Envelope.ID) {
				d.err = errors.New("loadtest: an envelope without an id")
				d.ws.CloseNow()
				return
			}
			if seq, sent, ok := readStamp(f.Envelope.Content); ok {
				d.got[seq]++
				d.lat = append(d.lat, now.UnixNano()-sent)
				d.rec.delivered.Add(1)
				for {
					last := d.rec.last.Load()
					if now.UnixNano() <= last || d.rec.last.CompareAndSwap(last, now.UnixNano()) {
						break
					}
				}
			} else {
				d.unstamped++
			}
			ack := `{"type":"ack","id":"` + f.Envelope.ID + `"}`
			if err := d.ws.Write(ctx, websocket.MessageText, []byte(ack)); err != nil {
				d.err = err
				return
			}
		}
	}
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
