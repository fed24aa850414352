package api

// The front door: legal requests, their public log, transparency reports
// (docs/legal-requests.md), and abuse reports under message franking
// (docs/protocol.md, "Message franking").
const (
	// PathLegalLogPrefix serves the public request log, a C2SP tlog-tiles
	// log written by Tessera: GET {prefix}checkpoint, {prefix}tile/...,
	// {prefix}tile/entries/.... Anyone may read it.
	PathLegalLogPrefix = "/v1/legal/log/"
	// PathLegalKey: GET the request log's verifier key (a note verifier
	// key, "name+hash+base64") as text/plain. Verifiers should pin it out
	// of band; this endpoint is for convenience.
	PathLegalKey = "/v1/legal/key"
	// PathLegalNotices: GET (authenticated) the published legal requests
	// that targeted the caller's account.
	PathLegalNotices = "/v1/legal/notices"
	// PathTransparencyReport: GET the signed transparency report for
	// ?period=YYYY-QN (the newest when absent) as text/plain, a signed
	// note, with its index in the request log in HeaderLogIndex; 404 when
	// none was made for the period.
	PathTransparencyReport = "/v1/transparency/report"
	// PathAdminLegalRequests: POST a signed legal request (the note's
	// text, text/plain) with "Authorization: Bearer <admin token>". 200
	// answers the signed disclosure package (text/plain); a refused request
	// gets 422 with code "refused". Either way the request is logged.
	PathAdminLegalRequests = "/v1/admin/legal/requests"

	// PathFrankingKey: GET (authenticated) the caller's account franking
	// key, with which its devices bind their messages' franking
	// commitments to the account.
	PathFrankingKey = "/v1/franking/key"
	// PathReports: POST (authenticated) an abuse report of a franked
	// message the caller received.
	PathReports = "/v1/reports"
)

// HeaderLogIndex carries, with a transparency report, the index of its
// entry in the request log (decimal), where a verifier can find that the
// report served is the one logged.
const HeaderLogIndex = "Doorless-Log-Index"

// CodeRefused answers a legal request that was verified and refused (422);
// Error.Message names the reason.
const CodeRefused = "refused"

// LegalNotice is one published legal request that targeted the caller.
type LegalNotice struct {
	// RequestIndex is the log index of the request's commitment entry,
	// PublicationIndex that of the entry that published it.
	RequestIndex     uint64 `json:"request_index"`
	PublicationIndex uint64 `json:"publication_index"`
	// Request is the signed request as the authority made it (a note).
	Request []byte `json:"request"`
	// Outcome is "accepted" or "refused:<reason>".
	Outcome   string `json:"outcome"`
	Processed int64  `json:"processed"` // Unix milliseconds
}

// LegalNoticesResponse is the body of GET PathLegalNotices.
type LegalNoticesResponse struct {
	Notices []LegalNotice `json:"notices"`
}

// FrankingKeyResponse is the body of GET PathFrankingKey.
type FrankingKeyResponse struct {
	// Key is the account's franking key (32 bytes): its devices bind each
	// message's commitment to the account with it. Secret to the account.
	Key []byte `json:"key"`
}

// ReportRequest is the body of POST PathReports: a franked message the
// caller's device received, revealed for review. The envelope fields are
// as delivered to the caller's device DeviceID.
type ReportRequest struct {
	// Content is the message's padded plaintext, exactly as decrypted.
	Content []byte `json:"content"`
	// Sender is the claimed sender's account id: the envelope's source,
	// or, under sealed sender, the account its sender certificate named.
	Sender string `json:"sender"`
	// The envelope as delivered.
	DeviceID        uint32 `json:"device_id"`
	Type            int    `json:"type"`
	SourceAccount   string `json:"source_account,omitempty"`
	SourceDevice    uint32 `json:"source_device,omitempty"`
	ServerTimestamp int64  `json:"server_timestamp"`
	Franking        []byte `json:"franking"`
	FrankingTag     []byte `json:"franking_tag"`
	// Reason is the reporter's words, at most MaxReportReason bytes.
	Reason string `json:"reason,omitempty"`
}

// MaxReportReason bounds a report's reason.
const MaxReportReason = 1000

// ReportResponse answers an accepted report.
type ReportResponse struct {
	ID string `json:"id"`
}

// CodeReportRejected answers a report that does not verify (422): altered,
// forged, or its sender not proven. A report of a message already reported
// by the same account gets 409 CodeDuplicate.
const CodeReportRejected = "report_rejected"
