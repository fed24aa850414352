package api

// Sealed sender certificates.
const (
	// PathSenderCertificate: GET (authenticated) a sender certificate for
	// the calling device, to put inside sealed messages.
	PathSenderCertificate = "/v1/certificate/delivery"
	// PathTrustRoot: GET the trust root's public key, which every sender
	// certificate chains to. Clients pin it the first time.
	PathTrustRoot = "/v1/certificate/trust-root"
)

// SenderCertificateResponse is the body of GET /v1/certificate/delivery: a
// certificate in libsignal's encoding, naming the caller's account (and its
// username, where libsignal carries a phone number), device and identity key,
// valid for a day.
type SenderCertificateResponse struct {
	Certificate []byte `json:"certificate"`
}

// TrustRootResponse is the body of GET /v1/certificate/trust-root: the
// 33-byte public key (0x05 and the key).
type TrustRootResponse struct {
	PublicKey []byte `json:"public_key"`
}
