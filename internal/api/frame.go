package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The delivery WebSocket (GET /v1/websocket) carries one JSON Frame per text
// message, in both directions.
//
// Server to client:
//
//	{"type":"envelope","envelope":{...}}      a message; the client acks it by id
//	{"type":"queue_empty"}                    everything queued at connect time has been sent
//	{"type":"refill","keys":{"pre_keys":3,"kyber_pre_keys":9}}  upload more one-time prekeys
//
// Client to server:
//
//	{"type":"ack","id":"<envelope id>"}       the envelope is safely stored; delete it
//
// The server deletes an envelope only when it is acknowledged; an envelope
// sent but not acknowledged before the connection ends is sent again on the
// next connection, so clients must recognise envelope ids they have already
// handled. Frames of unknown type, with unknown fields, or missing what their
// type requires are refused, and the connection is closed with status 1003
// (unsupported data) or 1009 (too big).
const (
	FrameEnvelope   = "envelope"
	FrameQueueEmpty = "queue_empty"
	FrameRefill     = "refill"
	FrameAck        = "ack"
)

// Close codes the server ends the delivery WebSocket with, beside the
// standard 1001 (going away: the server is shutting down, reconnect later),
// 1003 (a bad frame from the client) and 1009 (a frame too big).
const (
	// CloseDisplaced: a newer connection of the same device replaced this
	// one. The client must not reconnect by itself, or two copies of a
	// device would displace each other forever.
	CloseDisplaced = 4000
	// CloseRevoked: the device was removed; its credentials no longer work.
	CloseRevoked = 4001
)

// MaxFrameOverhead is what a frame may add to its envelope's content, after
// base64: the JSON around it. MaxFrameSize(n) bounds a frame for envelopes of
// at most n content bytes.
const MaxFrameOverhead = 4096

// MaxFrameSize is the largest frame a peer must accept when envelope contents
// are at most maxContent bytes.
func MaxFrameSize(maxContent int) int { return (maxContent+2)/3*4 + MaxFrameOverhead }

// MaxClientFrameSize bounds the frames a client sends (acks).
const MaxClientFrameSize = 512

// Frame is one WebSocket message.
type Frame struct {
	Type     string     `json:"type"`
	ID       string     `json:"id,omitempty"`
	Envelope *Envelope  `json:"envelope,omitempty"`
	Keys     *KeyStatus `json:"keys,omitempty"`
}

// ErrBadFrame is wrapped by every error ParseFrame returns.
var ErrBadFrame = errors.New("api: bad frame")

// ParseFrame decodes and checks one frame. It refuses unknown types, unknown
// fields, trailing data, and frames missing what their type requires or
// carrying what it does not use.
func ParseFrame(b []byte) (*Frame, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f Frame
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrBadFrame)
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Check reports whether the frame is well formed for its type.
func (f *Frame) Check() error {
	bad := func(why string) error { return fmt.Errorf("%w: %s frame %s", ErrBadFrame, f.Type, why) }
	switch f.Type {
	case FrameEnvelope:
		if f.ID != "" || f.Keys != nil {
			return bad("has fields it does not use")
		}
		if f.Envelope == nil {
			return bad("without an envelope")
		}
		return f.Envelope.Check()
	case FrameAck:
		if f.Envelope != nil || f.Keys != nil {
			return bad("has fields it does not use")
		}
		if !ValidUUID(f.ID) {
			return bad("without a valid id")
		}
	case FrameRefill:
		if f.ID != "" || f.Envelope != nil {
			return bad("has fields it does not use")
		}
		if f.Keys == nil || f.Keys.PreKeys < 0 || f.Keys.KyberPreKeys < 0 {
			return bad("without key counts")
		}
	case FrameQueueEmpty:
		if f.ID != "" || f.Envelope != nil || f.Keys != nil {
			return bad("has fields it does not use")
		}
	default:
		return fmt.Errorf("%w: unknown type %q", ErrBadFrame, f.Type)
	}
	return nil
}

// Check reports whether an envelope is well formed: a sealed-sender
// envelope without a source, any other with one.
func (e *Envelope) Check() error {
	switch {
	case !ValidUUID(e.ID):
		return fmt.Errorf("%w: envelope id is not a uuid", ErrBadFrame)
	case !ValidEnvelopeType(e.Type):
		return fmt.Errorf("%w: envelope type %d unknown", ErrBadFrame, e.Type)
	case len(e.Content) == 0:
		return fmt.Errorf("%w: envelope without content", ErrBadFrame)
	case e.Type == EnvelopeUnidentifiedSender:
		if e.SourceAccount != "" || e.SourceUsername != "" || e.SourceDevice != 0 {
			return fmt.Errorf("%w: sealed-sender envelope with a source", ErrBadFrame)
		}
		return nil
	case !ValidUUID(e.SourceAccount):
		return fmt.Errorf("%w: envelope source is not a uuid", ErrBadFrame)
	case !ValidUsername(e.SourceUsername):
		return fmt.Errorf("%w: envelope source username invalid", ErrBadFrame)
	case e.SourceDevice < 1 || e.SourceDevice > MaxDevicesPerAccount:
		return fmt.Errorf("%w: envelope source device out of range", ErrBadFrame)
	}
	return nil
}
