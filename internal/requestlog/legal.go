package requestlog

import "github.com/doorless/doorless/internal/legal"

// LegalRequest is the RequestParser of Doorless's legal request format
// (legal.ParseRequest, docs/legal-requests.md): the one to give Check.
func LegalRequest(text []byte) (RequestFields, error) {
	r, err := legal.ParseRequest(text)
	if err != nil {
		return RequestFields{}, err
	}
	return RequestFields{Authority: r.Authority, Jurisdiction: r.Jurisdiction, Type: r.Type, NondisclosureUntil: r.NondisclosureUntil}, nil
}
