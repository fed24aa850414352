// Package auditortest serves a kt.Log's transparency endpoints (keys,
// audit, checkpoint, cosignatures) from memory, as internal/api describes
// them, for the auditor's tests. It can misbehave on request: rewrite the
// epochs it serves, serve another checkpoint, withhold epochs, fail.
//
// A Server is safe for concurrent use.
package auditortest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/kt/vrf"
)

// Keys are a log's keys, so that two Servers can present one log identity
// with different contents (a fork).
type Keys struct {
	Origin string
	Signer note.Signer
	VKey   string // the signer's verifier key
	VRF    *vrf.PrivateKey
}

// NewKeys makes keys for a log named origin.
func NewKeys(origin string) (*Keys, error) {
	k, err := ktkeys.Generate(rand.Reader, origin)
	if err != nil {
		return nil, err
	}
	return &Keys{Origin: k.Origin, Signer: k.Signer, VKey: k.LogKey, VRF: k.VRF}, nil
}

// Server is a log behind an http.Handler.
type Server struct {
	Keys *Keys

	mu       sync.Mutex
	log      *kt.Log
	batches  []*kt.Batch
	entries  map[kt.Index]*kt.Entry
	auditors []string
	pageSize int
	posted   [][]byte

	// Misbehaviour, set with the methods below.
	rewrite    func(index int, c *kt.EpochChanges)
	corrupt    func(index int, b []byte) []byte
	checkpoint func() []byte
	withhold   int // serve at most this many epochs (<0: all)
	status     int // answer every request with this status (0: none)
}

// New returns a server of an empty log with keys k.
func New(k *Keys) (*Server, error) {
	l, err := kt.NewLog(kt.LogConfig{Origin: k.Origin, Signer: k.Signer, VRF: k.VRF})
	if err != nil {
		return nil, err
	}
	return &Server{Keys: k, log: l, entries: map[kt.Index]*kt.Entry{}, pageSize: api.MaxAuditEpochs, withhold: -1}, nil
}

// Log returns the log.
func (s *Server) Log() *kt.Log { return s.log }

// Append makes one epoch of the updates at time now.
func (s *Server) Append(updates []kt.Update, now time.Time) (*kt.Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.log.Append(updates, now, rand.Reader)
	if err != nil {
		return nil, err
	}
	s.batches = append(s.batches, b)
	for k := range b.Entries {
		e := b.Entries[k]
		s.entries[e.Leaf.Index] = &e
	}
	return b, nil
}

// AppendLabels makes one epoch setting each label to a value naming it
// and the epoch.
func (s *Server) AppendLabels(now time.Time, labels ...string) error {
	s.mu.Lock()
	n := len(s.batches)
	s.mu.Unlock()
	u := make([]kt.Update, len(labels))
	for k, l := range labels {
		u[k] = kt.Update{Label: []byte(l), Value: []byte(fmt.Sprintf("%s@%d", l, n))}
	}
	_, err := s.Append(u, now)
	return err
}

// Entry returns a label's stored entry, for Log.Prove.
func (s *Server) Entry(i kt.Index) (*kt.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[i], nil
}

// AddAuditor makes the server collect cosignatures by vkey's key.
func (s *Server) AddAuditor(vkey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auditors = append(s.auditors, vkey)
}

// SetPageSize sets how many epochs one audit answer holds at most.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// Rewrite makes the server pass each epoch it serves through f first (nil:
// serve them as they are).
func (s *Server) Rewrite(f func(index int, c *kt.EpochChanges)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rewrite = f
}

// Corrupt makes the server pass each encoded epoch it serves through f
// (nil: serve them as they are).
func (s *Server) Corrupt(f func(index int, b []byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt = f
}

// ServeCheckpoint makes the server answer checkpoint requests with f's
// bytes (nil: the log's).
func (s *Server) ServeCheckpoint(f func() []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoint = f
}

// Withhold makes the server serve only the first n epochs (<0: all).
func (s *Server) Withhold(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withhold = n
}

// FailWith makes the server answer every request with status (0: answer).
func (s *Server) FailWith(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// Posted returns the cosigned checkpoints the server accepted.
func (s *Server) Posted() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.posted...)
}

// ServeHTTP serves the four endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	status := s.status
	s.mu.Unlock()
	if status != 0 {
		writeError(w, status, "test", "failing on purpose")
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == api.PathTransparencyKeys:
		s.keys(w)
	case r.Method == http.MethodGet && r.URL.Path == api.PathTransparencyAudit:
		s.audit(w, r)
	case r.Method == http.MethodGet && r.URL.Path == api.PathTransparencyCheckpoint:
		s.serveCheckpoint(w)
	case r.Method == http.MethodPost && r.URL.Path == api.PathTransparencyCosign:
		s.cosign(w, r)
	default:
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint")
	}
}

func (s *Server) keys(w http.ResponseWriter) {
	s.mu.Lock()
	resp := api.TransparencyKeysResponse{
		Origin:   s.Keys.Origin,
		LogKey:   s.Keys.VKey,
		VRFKey:   s.Keys.VRF.Public().Bytes(),
		Auditors: append([]string(nil), s.auditors...),
	}
	s.mu.Unlock()
	writeJSON(w, resp)
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	from, err := strconv.ParseUint(r.URL.Query().Get(api.QueryFrom), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "from")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := uint64(len(s.batches))
	if s.withhold >= 0 {
		n = min(n, uint64(s.withhold))
	}
	resp := api.TransparencyAuditResponse{From: from, Epochs: [][]byte{}}
	for i := from; i < n && len(resp.Epochs) < s.pageSize; i++ {
		c := s.batches[i].Changes
		c.Leaves = append([]kt.Leaf(nil), c.Leaves...)
		if s.rewrite != nil {
			s.rewrite(int(i), &c)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
			return
		}
		if s.corrupt != nil {
			b = s.corrupt(int(i), b)
		}
		resp.Epochs = append(resp.Epochs, b)
	}
	writeJSON(w, resp)
}

func (s *Server) serveCheckpoint(w http.ResponseWriter) {
	s.mu.Lock()
	f := s.checkpoint
	s.mu.Unlock()
	var cp []byte
	if f != nil {
		cp = f()
	} else {
		cp = s.log.Checkpoint()
	}
	if cp == nil {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no checkpoint yet")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(cp)
}

func (s *Server) cosign(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, kt.MaxCheckpointSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	auditors := append([]string(nil), s.auditors...)
	s.mu.Unlock()
	for _, vkey := range auditors {
		v, err := kt.NewCosignatureVerifier(vkey)
		if err != nil {
			writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
			return
		}
		if err := s.log.AddCosignature(body, v); err == nil {
			s.mu.Lock()
			s.posted = append(s.posted, body)
			s.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeError(w, http.StatusForbidden, api.CodeForbidden, "no configured auditor's cosignature verifies")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: code, Message: msg}})
}
