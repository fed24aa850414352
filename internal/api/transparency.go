package api

// Key transparency (kt/, docs/key-transparency.md).
const (
	// PathTransparencyKeys: GET the log's public keys and origin, which a
	// client pins at registration.
	PathTransparencyKeys = "/v1/transparency/keys"
	// PathTransparencyLookup: GET a lookup proof for a username's entry
	// (authenticated). Query: QueryKnownSize.
	PathTransparencyLookup = "/v1/transparency/lookup/{username}"
	// PathTransparencyAudit: GET the epochs' changes for auditors, from
	// epoch QueryFrom on (at most MaxAuditEpochs). No authentication: the
	// changes reveal only hidden indexes, counters and commitments.
	PathTransparencyAudit = "/v1/transparency/audit"
	// PathTransparencyCosign: POST an auditor's cosigned checkpoint (the
	// note as text). The server keeps it if a configured auditor's
	// cosignature on one of its checkpoints verifies.
	PathTransparencyCosign = "/v1/transparency/cosignatures"
	// PathTransparencyCheckpoint: GET the newest signed checkpoint (a note,
	// text/plain), with the cosignatures the server holds for it.
	PathTransparencyCheckpoint = "/v1/transparency/checkpoint"

	// QueryKnownSize is the log size of the head the client kept (0 or
	// absent: none), for the consistency proof.
	QueryKnownSize = "known"
	// QueryFrom is the first epoch (log index) an audit request wants.
	QueryFrom = "from"
	// MaxAuditEpochs bounds the epochs in one audit answer.
	MaxAuditEpochs = 1000
)

// TransparencyKeysResponse is the body of GET /v1/transparency/keys.
type TransparencyKeysResponse struct {
	// Origin is the checkpoints' origin line.
	Origin string `json:"origin"`
	// LogKey is the checkpoint signer's note verifier key.
	LogKey string `json:"log_key"`
	// VRFKey is the VRF public key (kt/vrf, 32 bytes).
	VRFKey []byte `json:"vrf_key"`
	// Auditors are the note verifier keys of the auditors whose
	// cosignatures the server collects.
	Auditors []string `json:"auditors,omitempty"`
}

// TransparencyLookupResponse is the body of GET
// /v1/transparency/lookup/{username}: a kt.LookupProof (its binary
// encoding) for the label kt.UsernameLabel(username), whose value is a
// kt.AccountValue (empty: no account holds the username any more).
type TransparencyLookupResponse struct {
	Proof []byte `json:"proof"`
}

// TransparencyAuditResponse is the body of GET /v1/transparency/audit:
// consecutive epochs from the one asked, each a kt.EpochChanges in its
// binary encoding.
type TransparencyAuditResponse struct {
	From   uint64   `json:"from"`
	Epochs [][]byte `json:"epochs"`
}
