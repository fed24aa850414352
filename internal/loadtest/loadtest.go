// Package loadtest drives a running doorlessd the way many real clients
// do, and measures it: registered accounts with real keys, one
// authenticated delivery WebSocket per device, sealed-sender sends over
// HTTP, acknowledgements of every envelope. Only the message ciphertexts
// are pre-computed (random bytes of realistic sizes, or one real
// multi-recipient seal reused), since the server never decrypts them: the
// numbers are the server's, not client cryptography's.
//
// Every envelope the tool sends carries, in its last 16 bytes, the time it
// was sent (Unix nanoseconds) and a sequence number, so that a receiving
// device measures send→receipt latency and the scenario checks that every
// message reached every device it was for exactly once.
//
// The scenarios (Idle, OneToOne, FanOut, Reconnect) are functions over
// Options; cmd/doorless-bench wires them to flags. Options are read-only
// once a scenario runs; scenarios are not meant to run concurrently
// against one server.
package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"
)

// Options say where the server is and how to reach it.
type Options struct {
	// Server is the server's base URL, e.g. http://127.0.0.1:8080.
	Server string
	// Servers, when not empty, are the base URLs of several nodes of one
	// cluster: devices, registrations and sends are spread over them
	// round-robin. Server is then the node the idle scenario's PID and
	// metrics are read from.
	Servers []string
	// PID is the server's process id, to read its memory from /proc
	// (Idle); 0 when unknown.
	PID int
	// Sources are the local addresses connections are made from, in
	// turn (127.0.0.2, 127.0.0.3, ... on loopback, so that ephemeral
	// ports do not run out); empty: the system chooses.
	Sources []netip.Addr
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)

	next     atomic.Uint64
	nextSend atomic.Uint64
}

// serverFor is the base URL for the i-th device or registration: Server,
// or the (i mod n)-th of Servers.
func (o *Options) serverFor(i int) string {
	if len(o.Servers) == 0 {
		return o.Server
	}
	return o.Servers[i%len(o.Servers)]
}

// sendServer is the base URL for the next send request, round-robin.
func (o *Options) sendServer() string {
	return o.serverFor(int(o.nextSend.Add(1) % uint64(max(1, len(o.Servers)))))
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// dialContext dials from the next source address.
func (o *Options) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}
	if len(o.Sources) > 0 {
		src := o.Sources[int(o.next.Add(1)%uint64(len(o.Sources)))]
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	return d.DialContext(ctx, network, addr)
}

// httpClient is a client keeping up to conns connections to the server.
func (o *Options) httpClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         o.dialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   false,
	}}
}

// SourceRange is the loopback addresses 127.0.0.first .. 127.0.0.last.
func SourceRange(first, last int) ([]netip.Addr, error) {
	if first < 1 || last > 254 || first > last {
		return nil, fmt.Errorf("loadtest: source range 127.0.0.%d-%d out of 1..254", first, last)
	}
	var out []netip.Addr
	for i := first; i <= last; i++ {
		out = append(out, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	return out, nil
}
