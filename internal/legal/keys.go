package legal

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/note"
)

// GenerateAuthorityKey makes an authority's key pair from rand (use
// crypto/rand.Reader): a note signer key, which the authority keeps
// secret, and its verifier key, which an operator lists in its trust
// configuration. The key's name is the authority's, a token.
func GenerateAuthorityKey(rand io.Reader, authority string) (signerKey, verifierKey string, err error) {
	if !ValidToken(authority) {
		return "", "", errors.New("legal: an authority's name is a token of [a-z0-9_.:-], 1 to 64 long")
	}
	skey, vkey, err := note.GenerateKey(rand, authority)
	if err != nil {
		return "", "", fmt.Errorf("legal: %v", err)
	}
	return skey, vkey, nil
}

// SignRequest signs r with the authority's signer, whose name must be
// r.Authority, and returns the signed request.
func SignRequest(r *Request, signer note.Signer) ([]byte, error) {
	text, err := r.Encode()
	if err != nil {
		return nil, err
	}
	return SignText(text, signer)
}

// SignText signs a request's text as it is, after checking that it parses
// (ParseRequest) and names the signer as its authority.
func SignText(text []byte, signer note.Signer) ([]byte, error) {
	r, err := ParseRequest(text)
	if err != nil {
		return nil, err
	}
	if signer.Name() != r.Authority {
		return nil, fmt.Errorf("legal: the key is %q's, the request names %q as its authority", signer.Name(), r.Authority)
	}
	b, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return nil, fmt.Errorf("legal: %v", err)
	}
	return b, nil
}
