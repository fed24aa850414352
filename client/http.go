package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/doorless/doorless/internal/api"
)

// maxResponse bounds a JSON answer from the server. A bundle response for
// every device of a user (127 devices with a Kyber key each) is about 600 KiB.
const maxResponse = 4 << 20

// doJSON makes one request with an optional JSON body and decodes a JSON
// answer into out (when not nil). A 4xx or 5xx answer with an error body is
// returned as *api.Error.
func doJSON(ctx context.Context, hc *http.Client, method, url, login, password string, in, out any) error {
	return doRequest(ctx, hc, method, url, func(req *http.Request) {
		if login != "" {
			req.SetBasicAuth(login, password)
		}
	}, in, out)
}

// rawBody is a request body sent as it is; auth sets its Content-Type.
type rawBody []byte

// doRequest is doJSON with the request's credentials (and any other
// header) set by auth.
func doRequest(ctx context.Context, hc *http.Client, method, url string, auth func(*http.Request), in, out any) error {
	var body io.Reader
	raw, isRaw := in.(rawBody)
	switch {
	case isRaw:
		body = bytes.NewReader(raw)
	case in != nil:
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encoding request: %v", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return fmt.Errorf("client: %v", err)
	}
	if in != nil && !isRaw {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	auth(req)
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("client: %s %s: %w", method, redactURL(url), ctx.Err())
		}
		return &transportError{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return &transportError{err: err}
	}
	if len(b) > maxResponse {
		return errors.New("client: the server's answer is too large")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb api.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
			return eb.Error
		}
		return fmt.Errorf("client: %s %s: server answered %s", method, redactURL(url), resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client: %s %s: malformed answer: %v", method, redactURL(url), err)
	}
	return nil
}

// redactURL keeps the path of a URL for an error message.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			return u[i+3+j:]
		}
	}
	return u
}

// transportError is a request whose answer was lost: it may or may not have
// reached the server.
type transportError struct{ err error }

func (e *transportError) Error() string { return "client: request failed: " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// do makes an authenticated request as this device.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return doJSON(ctx, c.hc, method, c.serverURL+path, api.Login(c.accountID, c.deviceID), c.password, in, out)
}

func pathFor(pattern string, params ...string) string {
	r := strings.NewReplacer(params...)
	return r.Replace(pattern)
}

func bundlePath(username string, device uint32) string {
	d := "*"
	if device != 0 {
		d = strconv.FormatUint(uint64(device), 10)
	}
	return pathFor(api.PathBundle, "{username}", username, "{device}", d)
}

func isCode(err error, code string) (*api.Error, bool) {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == code {
		return ae, true
	}
	return nil, false
}
