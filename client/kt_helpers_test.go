package client

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/internal/server"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
)

// ktLog is a key transparency log the test drives, in front of the real
// server: it serves the log's keys and lookups, adds its proofs to the
// server's prekey bundles, and publishes what registration and device
// changes commit. A test makes it lie: publish what it likes (publish),
// change the proofs it hands out (tamper), leave them out, or keep one
// account on an old view of the log (freezeFor). It makes no epoch of its
// own: its newest epoch is as old as the last publish, by its clock
// (setClock).
type ktLog struct {
	t      *testing.T
	origin string
	vkey   string
	keys   api.TransparencyKeysResponse
	cfg    kt.LogConfig

	mu        sync.Mutex
	clock     time.Time // when epochs are made (zero: time.Now)
	log       *kt.Log
	epochs    []kt.Epoch // every epoch published, in order
	entries   map[kt.Index]*kt.Entry
	values    map[string][]byte     // by label: what the log holds
	names     map[string]ktAccount  // by account id, from registrations
	published map[string][]kt.Entry // by label: every entry published, in order

	auditor   *kt.Auditor
	cosigner  note.Signer
	auditVKey string // the auditor's verifier key, when it cosigns

	// suppress is how many device-list changes to leave out of the log.
	suppress int
	// tamper, when set, changes every proof handed out (nil: none).
	tamper func(label string, proof []byte) []byte
	// frozen: the accounts shown an old view of the log, by account id.
	frozen map[string]*frozenView
	// refuse: the usernames whose own lookups (of their own entry, by
	// their devices) the server answers with an error: the HTTP status
	// (404, 500, ...), or badProof for a proof that does not verify.
	refuse map[string]int
}

// frozenView is the log as it was, with its entries then.
type frozenView struct {
	log     *kt.Log
	entries map[kt.Index]*kt.Entry
}

const testOrigin = "doorless.test/kt"

// newKTServer starts the real server behind a log the test drives.
func newKTServer(t *testing.T, mod func(*server.Config)) (*testServer, *ktLog) {
	t.Helper()
	keys, err := ktkeys.Generate(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	l, err := kt.NewLog(keys.LogConfig())
	if err != nil {
		t.Fatal(err)
	}
	vkey, vk := keys.LogKey, keys.VRF
	k := &ktLog{t: t, origin: testOrigin, vkey: vkey, cfg: keys.LogConfig(), log: l, entries: map[kt.Index]*kt.Entry{}, values: map[string][]byte{},
		names: map[string]ktAccount{}, published: map[string][]kt.Entry{}, frozen: map[string]*frozenView{}, refuse: map[string]int{},
		keys: api.TransparencyKeysResponse{Origin: testOrigin, LogKey: vkey, VRFKey: vk.Public().Bytes()}}
	return newWrappedServer(t, mod, k.wrap), k
}

// withAuditor makes an auditor follow the log and cosign every epoch from
// now on; it returns the auditor's verifier key.
func (k *ktLog) withAuditor() string {
	k.t.Helper()
	skey, vkey, err := kt.GenerateCosignerKey(rand.Reader, "auditor.test")
	if err != nil {
		k.t.Fatal(err)
	}
	cs, err := kt.NewCosigner(skey, time.Now)
	if err != nil {
		k.t.Fatal(err)
	}
	lv, err := note.NewVerifier(k.vkey)
	if err != nil {
		k.t.Fatal(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.log.Checkpoint() != nil {
		k.t.Fatal("withAuditor: the log has epochs already")
	}
	k.auditor, k.cosigner, k.auditVKey = kt.NewAuditor(k.origin, lv), cs, vkey
	return vkey
}

// publish makes one epoch of the updates.
func (k *ktLog) publish(ups ...kt.Update) {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.publishLocked(ups...)
}

func (k *ktLog) publishLocked(ups ...kt.Update) {
	k.t.Helper()
	now := k.clock
	if now.IsZero() {
		now = time.Now()
	}
	b, err := k.log.Append(ups, now, rand.Reader)
	if err != nil {
		k.t.Errorf("kt append: %v", err)
		return
	}
	k.epochs = append(k.epochs, b.Changes.Epoch)
	for i := range b.Entries {
		e := b.Entries[i]
		k.entries[e.Leaf.Index] = &e
		k.values[string(e.Label)] = e.Value
		k.published[string(e.Label)] = append(k.published[string(e.Label)], e)
	}
	if k.auditor != nil {
		if err := k.auditor.Apply(&b.Changes); err != nil {
			k.t.Errorf("auditor: %v", err)
			return
		}
		cosigned, err := k.auditor.Cosign(b.Checkpoint, k.cosigner, now)
		if err != nil {
			k.t.Errorf("cosign: %v", err)
			return
		}
		av, err := kt.NewCosignatureVerifier(k.auditVKey)
		if err != nil {
			k.t.Fatal(err)
		}
		if err := k.log.AddCosignature(cosigned, av); err != nil {
			k.t.Errorf("add cosignature: %v", err)
		}
	}
}

// setClock sets when the log makes its epochs from now on (zero: the real
// time), as a server whose clock differs from the clients'.
func (k *ktLog) setClock(at time.Time) {
	k.mu.Lock()
	k.clock = at
	k.mu.Unlock()
}

// freezeFor keeps the account's devices on the log as it is now: their
// lookups are answered from it, however the log goes on for the others.
// (Bundles still carry proofs from the log everyone sees.)
func (k *ktLog) freezeFor(accountID string) {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := kt.NewLog(k.cfg)
	if err != nil {
		k.t.Fatal(err)
	}
	entries := make(map[kt.Index]*kt.Entry, len(k.entries))
	leaves := func(yield func(kt.Leaf) bool) {
		for i, e := range k.entries {
			c := *e
			entries[i] = &c
			if !yield(e.Leaf) {
				return
			}
		}
	}
	if err := l.Restore(leaves, slices.Clone(k.epochs)); err != nil {
		k.t.Fatal(err)
	}
	k.frozen[accountID] = &frozenView{log: l, entries: entries}
}

// unfreeze shows the account's devices the log everyone sees again.
func (k *ktLog) unfreeze(accountID string) {
	k.mu.Lock()
	delete(k.frozen, accountID)
	k.mu.Unlock()
}

// publishAccount publishes a value for username's entry: the account it
// holds now, with the identity key and device list given.
func (k *ktLog) publishAccount(username string, ik, deviceList []byte) {
	k.t.Helper()
	v := k.account(username)
	v.IdentityKey, v.DeviceList = ik, deviceList
	k.publish(kt.Update{Label: kt.UsernameLabel(username), Value: v.Encode()})
}

// publishGhost publishes another identity key for username's entry, with
// the device list it holds now, as an operator handing out a key of its
// own would; it returns the value the entry held and the ghost key.
func (k *ktLog) publishGhost(username string) (real *kt.AccountValue, ghost keys.KeyPair) {
	k.t.Helper()
	real = k.account(username)
	ghost, err := keys.GenerateKeyPair(nil)
	if err != nil {
		k.t.Fatal(err)
	}
	k.publishAccount(username, ghost.Public.Bytes(), real.DeviceList)
	return real, ghost
}

// account returns the value the log holds for username's entry.
func (k *ktLog) account(username string) *kt.AccountValue {
	k.t.Helper()
	v, err := kt.DecodeAccountValue(k.value(kt.UsernameLabel(username)))
	if err != nil {
		k.t.Fatalf("%s's entry: %v", username, err)
	}
	return v
}

// value returns what the log holds for a label.
func (k *ktLog) value(label []byte) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.values[string(label)]
}

// history returns every entry published for username, in order.
func (k *ktLog) history(username string) []kt.Entry {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.published[string(kt.UsernameLabel(username))])
}

// counter returns the counter of username's entry.
func (k *ktLog) counter(username string) uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.entries[k.log.Index(kt.UsernameLabel(username))]
	if e == nil {
		k.t.Fatalf("%s has no entry", username)
	}
	return e.Leaf.Counter
}

// prove makes the proof for labels, for a client that knows size known.
func (k *ktLog) prove(labels [][]byte, known uint64) []byte {
	return k.proveFor("", labels, known)
}

// proveFor makes the proof for labels, for a device of the account that
// knows size known: from the log it is frozen on, if any.
func (k *ktLog) proveFor(accountID string, labels [][]byte, known uint64) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	log, entries := k.log, k.entries
	if f := k.frozen[accountID]; f != nil {
		log, entries = f.log, f.entries
	}
	p, err := log.Prove(labels, known, func(i kt.Index) (*kt.Entry, error) { return entries[i], nil })
	if err != nil {
		k.t.Errorf("kt prove: %v", err)
		return nil
	}
	b, err := p.MarshalBinary()
	if err != nil {
		k.t.Errorf("kt proof: %v", err)
		return nil
	}
	if k.tamper != nil {
		b = k.tamper(string(labels[0][1:]), b)
	}
	return b
}

// setTamper sets the tamper hook.
func (k *ktLog) setTamper(f func(username string, proof []byte) []byte) {
	k.mu.Lock()
	k.tamper = f
	k.mu.Unlock()
}

func knownOf(r *http.Request) uint64 {
	n, _ := strconv.ParseUint(r.URL.Query().Get(api.QueryKnownSize), 10, 64)
	return n
}

func writeJSONTest(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// forward runs the real server on a request with body, and returns its
// answer.
func forward(h http.Handler, r *http.Request, body []byte) *httptest.ResponseRecorder {
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func copyAnswer(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// wrap puts the log in front of the server's handler h.
func (k *ktLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == api.PathTransparencyKeys:
			k.mu.Lock()
			keys := k.keys
			if k.auditVKey != "" {
				keys.Auditors = []string{k.auditVKey}
			}
			k.mu.Unlock()
			writeJSONTest(w, keys)

		case r.Method == http.MethodGet && len(parts) == 4 && parts[1] == "transparency" && parts[2] == "lookup":
			login, _, _ := r.BasicAuth()
			acct, _, _ := strings.Cut(login, ".")
			k.mu.Lock()
			var status int
			if a, ok := k.names[acct]; ok && a.username == parts[3] {
				status = k.refuse[parts[3]]
			}
			k.mu.Unlock()
			if status == badProof {
				p := k.proveFor(acct, [][]byte{kt.UsernameLabel(parts[3])}, knownOf(r))
				p[len(p)-1] ^= 1
				writeJSONTest(w, api.TransparencyLookupResponse{Proof: p})
				return
			}
			if status != 0 {
				code := api.CodeInternal
				if status == http.StatusNotFound {
					code = api.CodeNotFound
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				json.NewEncoder(w).Encode(&api.ErrorBody{Error: &api.Error{Code: code, Message: "refused"}})
				return
			}
			writeJSONTest(w, api.TransparencyLookupResponse{Proof: k.proveFor(acct, [][]byte{kt.UsernameLabel(parts[3])}, knownOf(r))})

		case r.Method == http.MethodPost && r.URL.Path == api.PathAccounts:
			body, _ := io.ReadAll(r.Body)
			rec := forward(h, r, body)
			var req api.RegisterRequest
			var resp api.RegisterResponse
			if rec.Code == http.StatusOK && json.Unmarshal(body, &req) == nil && json.Unmarshal(rec.Body.Bytes(), &resp) == nil {
				v := &kt.AccountValue{AccountID: resp.AccountID, IdentityKey: req.IdentityKey, DeviceList: req.DeviceList}
				k.mu.Lock()
				k.names[resp.AccountID] = ktAccount{req.Username, req.IdentityKey}
				k.publishLocked(kt.Update{Label: kt.UsernameLabel(req.Username), Value: v.Encode()})
				k.mu.Unlock()
			}
			copyAnswer(w, rec)

		case r.Method == http.MethodPost && r.URL.Path == api.PathDevices:
			body, _ := io.ReadAll(r.Body)
			rec := forward(h, r, body)
			var req api.LinkDeviceRequest
			if rec.Code == http.StatusOK && json.Unmarshal(body, &req) == nil {
				k.republishList(req.AccountID, req.DeviceList)
			}
			copyAnswer(w, rec)

		case r.Method == http.MethodDelete && len(parts) == 3 && parts[1] == "devices":
			body, _ := io.ReadAll(r.Body)
			rec := forward(h, r, body)
			var req api.RemoveDeviceRequest
			login, _, _ := r.BasicAuth()
			acct, _, _ := strings.Cut(login, ".")
			if rec.Code/100 == 2 && json.Unmarshal(body, &req) == nil {
				k.republishList(acct, req.DeviceList)
			}
			copyAnswer(w, rec)

		case r.Method == http.MethodGet && len(parts) == 4 && parts[1] == "keys":
			known := knownOf(r)
			r.URL.RawQuery = "" // the size of this log, not the server's
			rec := forward(h, r, nil)
			var br api.BundleResponse
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &br) != nil {
				copyAnswer(w, rec)
				return
			}
			br.Transparency = k.prove([][]byte{kt.UsernameLabel(parts[2])}, known)
			writeJSONTest(w, &br)

		default:
			h.ServeHTTP(w, r)
		}
	})
}

// ktAccount is what the log knows of an account from its registration.
type ktAccount struct {
	username    string
	identityKey []byte
}

// republishList publishes an account's new device list under the identity
// key it registered with, unless the test suppresses it (suppress).
func (k *ktLog) republishList(accountID string, list []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.suppress > 0 {
		k.suppress--
		return
	}
	a, ok := k.names[accountID]
	if !ok {
		k.t.Errorf("republish: unknown account %s", accountID)
		return
	}
	v := &kt.AccountValue{AccountID: accountID, IdentityKey: a.identityKey, DeviceList: list}
	k.publishLocked(kt.Update{Label: kt.UsernameLabel(a.username), Value: v.Encode()})
}

// suppressNext has the log leave the next n device-list changes out, as an
// operator hiding a ghost's counter step would.
func (k *ktLog) suppressNext(n int) {
	k.mu.Lock()
	k.suppress = n
	k.mu.Unlock()
}

// badProof, given to refuseLookups, refuses with a proof that does not
// verify.
const badProof = -1

// refuseLookups has the server answer the lookups username's devices make
// of its own entry with the HTTP status, or badProof (0: answer again).
func (k *ktLog) refuseLookups(username string, status int) {
	k.mu.Lock()
	if status == 0 {
		delete(k.refuse, username)
	} else {
		k.refuse[username] = status
	}
	k.mu.Unlock()
}
