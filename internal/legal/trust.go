package legal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ErrMalformedTrust is returned by ParseTrust, wrapped with the line at
// fault, for a trust configuration that does not keep its format.
var ErrMalformedTrust = errors.New("legal: malformed trust configuration")

// MaxTrust bounds a trust configuration's size, in bytes.
const MaxTrust = 1 << 20

// Trust is the operator's trust configuration: which authority keys are
// trusted for which jurisdictions. Its file (doorlessd: DATA/legal/
// authorities) holds one line per pair,
//
//	<jurisdiction> <note verifier key of the authority>
//
// and blank lines and lines starting with "#". The key's name is the
// authority's name, a token (ValidToken). A key trusted for several
// jurisdictions takes a line each. The zero Trust trusts no one.
type Trust struct {
	keys map[keyID]*trustedKey
}

type keyID struct {
	name string
	hash uint32
}

type trustedKey struct {
	v             note.Verifier
	vkey          string
	jurisdictions []string // sorted
}

// Authority is one trusted authority key and its jurisdictions.
type Authority struct {
	Name          string
	Key           string   // its note verifier key
	Jurisdictions []string // sorted
}

// ParseTrust parses a trust configuration.
func ParseTrust(b []byte) (*Trust, error) {
	if len(b) > MaxTrust {
		return nil, fmt.Errorf("%w: over %d bytes", ErrMalformedTrust, MaxTrust)
	}
	t := &Trust{keys: map[keyID]*trustedKey{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxTrust)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		bad := func(format string, a ...any) (*Trust, error) {
			return nil, fmt.Errorf("%w: line %d: %s", ErrMalformedTrust, line, fmt.Sprintf(format, a...))
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			return bad("not \"jurisdiction key\"")
		}
		j, vkey := f[0], f[1]
		if !ValidToken(j) {
			return bad("the jurisdiction is not a token of [a-z0-9_.:-]")
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return bad("not a note verifier key")
		}
		if !ValidToken(v.Name()) {
			return bad("the key's name is not a token of [a-z0-9_.:-]")
		}
		id := keyID{v.Name(), v.KeyHash()}
		k := t.keys[id]
		switch {
		case k == nil:
			k = &trustedKey{v: v, vkey: vkey}
			t.keys[id] = k
		case k.vkey != vkey:
			return bad("another key with the same name and hash")
		}
		if slices.Contains(k.jurisdictions, j) {
			return bad("the key is listed twice for %s", j)
		}
		k.jurisdictions = append(k.jurisdictions, j)
		slices.Sort(k.jurisdictions)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedTrust, err)
	}
	return t, nil
}

// Verifier implements note.Verifiers: it returns the trusted key with that
// name and hash, and a *note.UnknownVerifierError for any other.
func (t *Trust) Verifier(name string, hash uint32) (note.Verifier, error) {
	if t != nil {
		if k, ok := t.keys[keyID{name, hash}]; ok {
			return k.v, nil
		}
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// trusts reports whether the key trusted as name and hash is trusted for
// jurisdiction.
func (t *Trust) trusts(name string, hash uint32, jurisdiction string) bool {
	k, ok := t.keys[keyID{name, hash}]
	return ok && slices.Contains(k.jurisdictions, jurisdiction)
}

// Authorities lists the trusted keys, by name and then key.
func (t *Trust) Authorities() []Authority {
	var out []Authority
	if t == nil {
		return nil
	}
	for id, k := range t.keys {
		out = append(out, Authority{Name: id.name, Key: k.vkey, Jurisdictions: slices.Clone(k.jurisdictions)})
	}
	slices.SortFunc(out, func(a, b Authority) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}
