package auditor

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt"
)

// errMalformedNote: the bytes are not a signed note at all (a proxy's
// error page, a truncated answer): a transport problem, not evidence.
var errMalformedNote = errors.New("auditor: the checkpoint is not a signed note")

// errBadCheckpoint: a well-formed note that the pinned log key did not
// sign, or that it signed over something that is not a checkpoint of the
// pinned origin: evidence against the log.
var errBadCheckpoint = errors.New("auditor: bad checkpoint")

// openCheckpoint verifies a signed checkpoint (C2SP tlog-checkpoint) with
// the log's key and parses it. It tells a note that is not one at all
// (errMalformedNote) from a note the log's key did not sign or that is not
// a checkpoint of the pinned origin (errBadCheckpoint).
func openCheckpoint(msg []byte, logKey note.Verifier, origin string) (kt.Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(logKey))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return kt.Checkpoint{}, fmt.Errorf("%w: not signed by the pinned log key %s", errBadCheckpoint, logKey.Name())
		case errors.As(err, &invalid):
			return kt.Checkpoint{}, fmt.Errorf("%w: the log key's signature does not verify", errBadCheckpoint)
		}
		return kt.Checkpoint{}, fmt.Errorf("%w: %v", errMalformedNote, err)
	}
	c, err := kt.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return kt.Checkpoint{}, fmt.Errorf("%w: %v", errBadCheckpoint, err)
	}
	if c.Origin != origin {
		return kt.Checkpoint{}, fmt.Errorf("%w: origin %q, pinned %q", errBadCheckpoint, c.Origin, origin)
	}
	return *c, nil
}
