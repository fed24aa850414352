package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// sendClient is one sender's keep-alive HTTP/1.1 connections, one per
// server, each used for one request at a time. Every send is a real
// request on a real connection, as net/http would make it, but written
// in one piece and answered on the sender's own goroutine: net/http's
// Transport spends two goroutines and several hand-offs on each request,
// CPU the tool would take from the server it shares the machine with.
//
// A sendClient is not safe for concurrent use; its zero value is not
// usable (newSendClient).
type sendClient struct {
	ctx     context.Context
	o       *Options
	conns   map[string]*httpConn // by server base URL
	req     []byte               // the request being written
	body    []byte               // scratch space for the request's body
	content []byte               // scratch space for a message's content
}

func newSendClient(ctx context.Context, o *Options) *sendClient {
	return &sendClient{ctx: ctx, o: o, conns: make(map[string]*httpConn)}
}

// maxAnswer bounds the body of an answer the tool reads.
const maxAnswer = 1 << 20

// userAgent names the tool in its requests, as a client names itself.
const userAgent = "doorless-bench"

// httpConn is one connection and what reads its answers.
type httpConn struct {
	host    string // the Host header: the server URL's host and port
	prefix  string // the server URL's path, put before every request's
	nc      net.Conn
	br      *bufio.Reader
	body    bytes.Buffer // the last answer's body
	unwatch func() bool  // stops closing nc when the client's context ends
}

// do makes one request: method target (a path with its query) to server,
// with header lines (each ending in "\r\n"; the client adds Host,
// User-Agent and Content-Length) and body. It returns the answer's status and body; the
// body is valid until the next request.
func (c *sendClient) do(method, server, target, header string, body []byte) (int, []byte, error) {
	hc, err := c.conn(server)
	if err != nil {
		return 0, nil, c.cause(err)
	}
	c.req = append(append(append(c.req[:0], method...), ' '), hc.prefix...)
	c.req = append(append(c.req, target...), " HTTP/1.1\r\nHost: "...)
	c.req = append(append(c.req, hc.host...), "\r\nUser-Agent: "+userAgent+"\r\n"...)
	c.req = append(c.req, header...)
	c.req = append(strconv.AppendInt(append(c.req, "Content-Length: "...), int64(len(body)), 10), "\r\n\r\n"...)
	c.req = append(c.req, body...)
	status, answer, keep, err := hc.roundTrip(c.req)
	if err != nil {
		c.drop(server)
		return 0, nil, c.cause(err)
	}
	if !keep {
		c.drop(server)
	}
	return status, answer, nil
}

// cause is the error of a failed request: the client's context's when
// that ended, which closes the connections.
func (c *sendClient) cause(err error) error {
	if ctxErr := c.ctx.Err(); ctxErr != nil {
		return fmt.Errorf("loadtest: send: %w", ctxErr)
	}
	return fmt.Errorf("loadtest: send: %v", err)
}

// roundTrip writes a request and reads its answer, and whether the
// connection may carry another request.
func (hc *httpConn) roundTrip(req []byte) (status int, body []byte, keep bool, err error) {
	if _, err := hc.nc.Write(req); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(hc.br, nil)
	if err != nil {
		return 0, nil, false, err
	}
	hc.body.Reset()
	_, err = hc.body.ReadFrom(io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, err
	}
	// An answer cut at the limit leaves the rest on the connection.
	keep = !resp.Close && hc.body.Len() < maxAnswer
	return resp.StatusCode, hc.body.Bytes(), keep, nil
}

// conn is the connection to server, dialled if there is none.
func (c *sendClient) conn(server string) (*httpConn, error) {
	if hc := c.conns[server]; hc != nil {
		return hc, nil
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http or https URL", server)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	nc, err := c.o.dialContext(c.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" {
		nc = tls.Client(nc, &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	}
	hc := &httpConn{host: u.Host, prefix: strings.TrimSuffix(u.EscapedPath(), "/"), nc: nc, br: bufio.NewReader(nc)}
	hc.unwatch = context.AfterFunc(c.ctx, func() { nc.Close() })
	c.conns[server] = hc
	return hc, nil
}

// dialAll connects to every server the options name.
func (c *sendClient) dialAll() error {
	for i := range max(1, len(c.o.Servers)) {
		if _, err := c.conn(c.o.serverFor(i)); err != nil {
			return c.cause(err)
		}
	}
	return nil
}

// drop closes the connection to server.
func (c *sendClient) drop(server string) {
	if hc := c.conns[server]; hc != nil {
		hc.unwatch()
		hc.nc.Close()
		delete(c.conns, server)
	}
}

// close closes every connection.
func (c *sendClient) close() {
	for s := range c.conns {
		c.drop(s)
	}
}
