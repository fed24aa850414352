package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/protocol/keys"
)

// Account is one registered load-test account with its primary device:
// what the tool needs to connect as it and to send to it. Identity is the
// account's identity private key (a throwaway key of a load-test account;
// it signs nothing after registration but the fan-out sender's seal).
type Account struct {
	Username       string `json:"username"`
	ID             string `json:"id"`
	Password       string `json:"password"`
	RegistrationID uint32 `json:"registration_id"`
	IdentityKey    []byte `json:"identity_key"`
	Identity       []byte `json:"identity"`
	AccessKey      []byte `json:"access_key"`
}

// String keeps the credentials out of anything that prints an Account.
func (a *Account) String() string { return "account " + a.Username }

func (a *Account) basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(api.Login(a.ID, api.PrimaryDeviceID)+":"+a.Password))
}

func (a *Account) accessKey() [api.UnidentifiedAccessKeySize]byte {
	return [api.UnidentifiedAccessKeySize]byte(a.AccessKey)
}

// registration is what registering one account sends.
func newRegistration(username string, now time.Time) (*api.RegisterRequest, *Account, error) {
	id, err := keys.GenerateKeyPair(nil)
	if err != nil {
		return nil, nil, err
	}
	regID, err := keys.GenerateRegistrationID(nil)
	if err != nil {
		return nil, nil, err
	}
	spk, err := keys.GenerateSignedPreKey(id.Private, 1, now, nil)
	if err != nil {
		return nil, nil, err
	}
	lr, err := keys.GenerateKyberPreKey(id.Private, 1, keys.KEMKyber1024, true, now, nil)
	if err != nil {
		return nil, nil, err
	}
	list, err := devicelist.Sign(id.Private, &devicelist.List{Version: devicelist.FirstVersion, Timestamp: now.UnixMilli(),
		Devices: []uint32{api.PrimaryDeviceID}}, nil)
	if err != nil {
		return nil, nil, err
	}
	ak := make([]byte, api.UnidentifiedAccessKeySize)
	rand.Read(ak)
	req := &api.RegisterRequest{
		Username:       username,
		IdentityKey:    id.Public.Bytes(),
		RegistrationID: regID,
		Keys: api.KeyUpload{
			SignedPreKey:          &api.SignedPreKey{ID: spk.ID, PublicKey: spk.KeyPair.Public.Bytes(), Signature: spk.Signature},
			LastResortKyberPreKey: &api.KyberPreKey{ID: lr.ID, PublicKey: lr.KeyPair.Public.Bytes(), Signature: lr.Signature},
		},
		DeviceList:            list,
		UnidentifiedAccessKey: ak,
	}
	acct := &Account{Username: username, RegistrationID: regID, IdentityKey: id.Public.Bytes(),
		Identity: id.Private.Bytes(), AccessKey: ak}
	return req, acct, nil
}

// runTag is a random lower-case tag that keeps usernames of different runs
// against one server apart.
func runTag() string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	var b [6]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b[:])
}

// Register registers n accounts on the server, concurrency at a time, each
// as the real client does (an identity key, a signed prekey, a last-resort
// Kyber-1024 prekey, a signed first device list and an unidentified access
// key; the server verifies every signature and publishes each account in
// its transparency log before answering). It uploads no one-time prekeys:
// nobody starts a session with these accounts.
func Register(ctx context.Context, o *Options, n, concurrency int) ([]*Account, error) {
	if n <= 0 {
		return nil, nil
	}
	concurrency = max(1, min(concurrency, n))
	hc := o.httpClient(concurrency)
	tag := runTag()
	out := make([]*Account, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				a, err := registerOne(ctx, hc, o.serverFor(i), fmt.Sprintf("lt%s_%d", tag, i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
				out[i] = a
				if done := i + 1; done%5000 == 0 {
					o.logf("registered %d accounts (%.0f/s)", done, float64(done)/time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func registerOne(ctx context.Context, hc *http.Client, server, username string) (*Account, error) {
	req, acct, err := newRegistration(username, time.Now())
	if err != nil {
		return nil, fmt.Errorf("loadtest: keys: %v", err)
	}
	var resp api.RegisterResponse
	if err := doJSON(ctx, hc, http.MethodPost, server+api.PathAccounts, nil, req, &resp); err != nil {
		return nil, fmt.Errorf("loadtest: register: %w", err)
	}
	if !api.ValidUUID(resp.AccountID) || resp.DeviceID != api.PrimaryDeviceID || resp.Password == "" {
		return nil, errors.New("loadtest: register: malformed answer")
	}
	acct.ID, acct.Password = resp.AccountID, resp.Password
	return acct, nil
}

// ErrStatus is wrapped by the error of a request the server refused.
var ErrStatus = errors.New("loadtest: server refused a request")

// doJSON makes one request with a JSON body (when in is not nil) and
// decodes a JSON answer into out (when not nil).
func doJSON(ctx context.Context, hc *http.Client, method, url string, hdr http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readAnswer(resp, out)
}

// readAnswer reads an answer: out from a 2xx, ErrStatus with the error
// code otherwise.
func readAnswer(resp *http.Response, out any) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	return decodeAnswer(resp.StatusCode, b, out)
}

// decodeAnswer decodes an answer's body b: out from a 2xx, ErrStatus with
// the error code otherwise.
func decodeAnswer(status int, b []byte, out any) error {
	if status/100 != 2 {
		var eb api.ErrorBody
		code := ""
		if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
			code = eb.Error.Code
		}
		return fmt.Errorf("%w: %d %s %s", ErrStatus, status, http.StatusText(status), code)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// SaveAccounts writes accounts to file (mode 0600: it holds their
// credentials) for a later run against the same server.
func SaveAccounts(file string, accts []*Account) error {
	b, err := json.Marshal(accts)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o600)
}

// LoadAccounts reads what SaveAccounts wrote.
func LoadAccounts(file string) ([]*Account, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var accts []*Account
	if err := json.Unmarshal(b, &accts); err != nil {
		return nil, fmt.Errorf("loadtest: %s: %v", file, err)
	}
	for _, a := range accts {
		if a == nil || !api.ValidUUID(a.ID) || len(a.AccessKey) != api.UnidentifiedAccessKeySize || len(a.Identity) != keys.PrivateKeySize {
			return nil, fmt.Errorf("loadtest: %s: a malformed account", file)
		}
	}
	return accts, nil
}
