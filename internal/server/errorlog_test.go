package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRedactAddrs(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"http: TLS handshake error from 192.0.2.1:5678: EOF", "http: TLS handshake error from [address]: EOF"},
		{"http: TLS handshake error from [2001:db8::1]:5678: EOF", "http: TLS handshake error from [address]: EOF"},
		{"http: panic serving [fe80::1%eth0]:80: boom", "http: panic serving [address]: boom"},
		{"http2: error reading preface from client 2001:db8::1:443: EOF", "http2: error reading preface from client [address]: EOF"},
		{"from ::ffff:192.0.2.1: x", "from [address]: x"},
		{"from 2001:db8:0:0:1:2:3:4: x", "from [address]: x"},
		{"at 12:30:45, read 1.5 MiB, tls: version 1.3", "at 12:30:45, read 1.5 MiB, tls: version 1.3"},
	} {
		if got := redactAddrs(tt.in); got != tt.want {
			t.Errorf("redactAddrs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestErrorLogNoIP: net/http's own error lines, such as a failed TLS
// handshake, reach the log without the client's address.
func TestErrorLogNoIP(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	// httptest's certificate serves for a TLS listener.
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	cfg := &tls.Config{Certificates: hs.TLS.Certificates}
	hs.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(tls.NewListener(ln, cfg))
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := c.LocalAddr().(*net.TCPAddr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // not a TLS handshake
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			break
		}
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "TLS handshake error") {
		if time.Now().After(deadline) {
			t.Fatalf("no TLS handshake error logged; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	l := logs.String()
	for _, leak := range []string{client.IP.String(), client.String()} {
		if strings.Contains(l, leak) {
			t.Errorf("log carries the client's address %s:\n%s", leak, l)
		}
	}
}
