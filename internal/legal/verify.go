package legal

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/internal/api"
)

// Refusal reasons: the tokens the request log records as
// "refused:<reason>" (docs/legal-requests.md, "Processing").
const (
	ReasonMalformed             = "malformed"
	ReasonBadSignature          = "bad_signature"
	ReasonUnknownAuthority      = "unknown_authority"
	ReasonUntrustedJurisdiction = "untrusted_jurisdiction"
	ReasonNotYetValid           = "not_yet_valid"
	ReasonExpired               = "expired"
	ReasonReplayedNonce         = "replayed_nonce"
	ReasonMultipleTargets       = "multiple_targets"
	ReasonWildcardTarget        = "wildcard_target"
	ReasonUndisclosableCategory = "undisclosable_category"
	ReasonUnknownCategory       = "unknown_category"
)

// Sentinel errors, one per refusal reason: a *RefusalError is each of them
// (errors.Is) for its reason.
var (
	ErrMalformed             = errors.New("legal: refused: malformed request")
	ErrBadSignature          = errors.New("legal: refused: the authority's signature does not verify")
	ErrUnknownAuthority      = errors.New("legal: refused: no trusted authority signed the request")
	ErrUntrustedJurisdiction = errors.New("legal: refused: the authority is not trusted for the jurisdiction")
	ErrNotYetValid           = errors.New("legal: refused: the request is not valid yet")
	ErrExpired               = errors.New("legal: refused: the request has expired")
	ErrReplayedNonce         = errors.New("legal: refused: the request's nonce was seen before")
	ErrMultipleTargets       = errors.New("legal: refused: more than one target")
	ErrWildcardTarget        = errors.New("legal: refused: the target is a pattern or a list")
	ErrUndisclosableCategory = errors.New("legal: refused: a requested category is not held by the server")
	ErrUnknownCategory       = errors.New("legal: refused: unknown data category")
)

var reasonErrs = map[string]error{
	ReasonMalformed:             ErrMalformed,
	ReasonBadSignature:          ErrBadSignature,
	ReasonUnknownAuthority:      ErrUnknownAuthority,
	ReasonUntrustedJurisdiction: ErrUntrustedJurisdiction,
	ReasonNotYetValid:           ErrNotYetValid,
	ReasonExpired:               ErrExpired,
	ReasonReplayedNonce:         ErrReplayedNonce,
	ReasonMultipleTargets:       ErrMultipleTargets,
	ReasonWildcardTarget:        ErrWildcardTarget,
	ReasonUndisclosableCategory: ErrUndisclosableCategory,
	ReasonUnknownCategory:       ErrUnknownCategory,
}

// Reasons lists every refusal reason, sorted.
func Reasons() []string {
	out := make([]string, 0, len(reasonErrs))
	for r := range reasonErrs {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// ClockSkew is how far ahead of the server's clock a request's issued time
// may be and still be valid: an authority's clock a little fast does not
// make a fresh request "not yet valid".
const ClockSkew = 5 * time.Minute

// RefusalError is a refused request: its reason, and the request when its
// signature verified (nil otherwise).
type RefusalError struct {
	Reason string
	// Request is the parsed request when a trusted authority's signature
	// verified over it, whatever the reason; nil when the signature did
	// not verify or the text did not parse.
	Request *Request
}

func (e *RefusalError) Error() string { return reasonErrs[e.Reason].Error() }

// Unwrap returns the reason's sentinel.
func (e *RefusalError) Unwrap() error { return reasonErrs[e.Reason] }

// Outcome is the request log's outcome of the refusal, "refused:<reason>".
func (e *RefusalError) Outcome() string { return "refused:" + e.Reason }

// OutcomeAccepted is the request log's outcome of an accepted request.
const OutcomeAccepted = "accepted"

func refuse(reason string, r *Request) error { return &RefusalError{Reason: reason, Request: r} }

// NonceSeen reports whether authority used nonce in a request processed
// before. Its error (a storage failure) ends Verify with that error.
type NonceSeen func(authority string, nonce []byte) (bool, error)

// Verify verifies a signed request (a note) at now against trust, and
// returns the request when it is accepted. A refused request gets a
// *RefusalError; any other error (from nonceSeen) is not a verdict. The
// checks run in this order, and the first that fails is the reason:
//
//  1. the note parses (malformed), a key trust holds signed it
//     (unknown_authority) and its signature verifies (bad_signature);
//  2. its text keeps the format (malformed) and names as authority the
//     key that signed it (bad_signature);
//  3. the key is trusted for the request's jurisdiction
//     (untrusted_jurisdiction);
//  4. now is within [issued - ClockSkew, valid-until) (not_yet_valid,
//     expired);
//  5. the authority has not used the nonce before (replayed_nonce);
//  6. it has one target line (multiple_targets), which is one username,
//     not a pattern or a list (wildcard_target; malformed when it is
//     neither a username nor a pattern);
//  7. every category is known (unknown_category) and held by the server
//     (undisclosable_category).
func Verify(signed []byte, trust *Trust, now time.Time, nonceSeen NonceSeen) (*Request, error) {
	if len(signed) > MaxRequest+4096 {
		return nil, refuse(ReasonMalformed, nil)
	}
	n, err := note.Open(signed, trust)
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return nil, refuse(ReasonUnknownAuthority, nil)
	case errors.As(err, &invalid):
		return nil, refuse(ReasonBadSignature, nil)
	case err != nil:
		return nil, refuse(ReasonMalformed, nil)
	}
	r, err := ParseRequest([]byte(n.Text))
	if err != nil {
		return nil, refuse(ReasonMalformed, nil)
	}
	var sig *note.Signature
	for i := range n.Sigs {
		if n.Sigs[i].Name == r.Authority {
			sig = &n.Sigs[i]
			break
		}
	}
	if sig == nil {
		return nil, refuse(ReasonBadSignature, nil)
	}
	if !trust.trusts(sig.Name, sig.Hash, r.Jurisdiction) {
		return nil, refuse(ReasonUntrustedJurisdiction, r)
	}
	if now.Add(ClockSkew).Before(r.Issued) {
		return nil, refuse(ReasonNotYetValid, r)
	}
	if !now.Before(r.ValidUntil) {
		return nil, refuse(ReasonExpired, r)
	}
	seen, err := nonceSeen(r.Authority, r.Nonce)
	if err != nil {
		return nil, fmt.Errorf("legal: checking the nonce: %w", err)
	}
	if seen {
		return nil, refuse(ReasonReplayedNonce, r)
	}
	if len(r.Targets) != 1 {
		return nil, refuse(ReasonMultipleTargets, r)
	}
	if t := r.Targets[0]; !api.ValidUsername(t) {
		if IsPattern(t) {
			return nil, refuse(ReasonWildcardTarget, r)
		}
		return nil, refuse(ReasonMalformed, r)
	}
	for _, c := range r.Categories {
		if !slices.Contains(Disclosable, c) && !slices.Contains(NotHeld, c) {
			return nil, refuse(ReasonUnknownCategory, r)
		}
	}
	for _, c := range r.Categories {
		if !slices.Contains(Disclosable, c) {
			return nil, refuse(ReasonUndisclosableCategory, r)
		}
	}
	return r, nil
}

// patternChars are the characters that make a target a pattern (glob, SQL
// LIKE, regular expression) or a list, rather than one username.
const patternChars = "*%?[]{}|^$+,; \t"

// IsPattern reports whether target asks for more than one account: a
// wildcard, a glob or regular expression, or a list.
func IsPattern(target string) bool {
	return strings.ContainsAny(target, patternChars) || strings.Contains(target, "..")
}
