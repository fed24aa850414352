package sealedsender

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// SentMessage is a parsed multi-recipient message as a client uploads it (libsignal's
// SealedSenderV2SentMessage): what the server needs to fan it out, read without any key.
// It is safe for concurrent use as long as nobody modifies its exported fields.
type SentMessage struct {
	// Version is the message's version byte: 0x23 (recipients named by service id, what
	// EncryptMulti writes) or 0x22 (by ACI UUID alone, libsignal's older form).
	Version byte
	// Recipients are the recipients with devices, in the order of their first
	// appearance. libsignal lets a recipient appear more than once, to add devices; the
	// devices are then gathered under its first appearance, and its key material is
	// that of its first appearance (a different one would not decrypt anyway).
	Recipients []SentRecipient
	// Excluded are the recipients listed as deliberately left out, in order.
	Excluded []ServiceID

	msg    []byte // the whole message (a copy of the caller's)
	shared int    // offset of E ‖ ciphertext, the part every recipient gets
}

// SentRecipient is one recipient of a SentMessage.
type SentRecipient struct {
	ServiceID ServiceID
	// Devices are the devices to deliver to, with their registration ids (14 bits).
	// The server checks them against the account's devices; they are not deduplicated.
	Devices []Device

	keyOffset int // offset of C_i ‖ AT_i in the message
}

// minRecipientSize is the smallest encoding of a recipient: a 16-byte UUID and the
// excluded marker.
const minRecipientSize = 16 + 1

// ParseSent decodes a multi-recipient message with libsignal's rules
// (SealedSenderV2SentMessage::parse and the Node bridge's split of excluded
// recipients): version 0x22 or 0x23; a varint count of recipients; each a service id
// (or an ACI UUID in version 0x22) followed by its devices, each a device id of 1 to
// MaxDeviceID and a big-endian 16-bit field whose top bit says another device follows
// and whose low 14 bits are the registration id, then its 48 bytes of key material, or
// by a 0 byte if it is excluded; then the shared 32-byte ephemeral key and ciphertext.
// A recipient that is listed both with devices and as excluded, or excluded twice, is
// refused, as libsignal refuses it. The ciphertext is not checked: only recipients can.
//
// The caller bounds the size of b (and so the number of recipients).
func ParseSent(b []byte) (*SentMessage, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	if b[0] != v2SentVersion && b[0] != v2SentVersionUUID {
		return nil, fmt.Errorf("%w: version byte %#x", ErrUnknownVersion, b[0])
	}
	msg := bytes.Clone(b)
	s := &SentMessage{Version: msg[0], msg: msg}
	pos := 1
	count, n := protowire.ConsumeVarint(msg[pos:])
	// A non-minimal count would be read differently by libsignal, which
	// skips only the minimal length: refused.
	if n < 0 || n != protowire.SizeVarint(count) || count > 0xffffffff {
		return nil, fmt.Errorf("%w: recipient count", ErrMalformed)
	}
	pos += n
	// Preallocate no more than the bytes left could hold.
	s.Recipients = make([]SentRecipient, 0, min(count, uint64(len(msg)-pos)/minRecipientSize))
	index := make(map[ServiceID]int) // recipient -> index in Recipients, or -1 if excluded
	for range count {
		var id ServiceID
		if s.Version == v2SentVersionUUID {
			if len(msg)-pos < 16 {
				return nil, fmt.Errorf("%w: truncated recipient", ErrMalformed)
			}
			id = serviceIDOf(kindACI, [16]byte(msg[pos:pos+16]))
			pos += 16
		} else {
			if len(msg)-pos < serviceIDSize {
				return nil, fmt.Errorf("%w: truncated recipient", ErrMalformed)
			}
			var ok bool
			if id, ok = parseServiceIDBinary(msg[pos : pos+serviceIDSize]); !ok {
				return nil, fmt.Errorf("%w: service id of unknown kind %d", ErrMalformed, msg[pos])
			}
			pos += serviceIDSize
		}
		var devices []Device
		for {
			if pos >= len(msg) {
				return nil, fmt.Errorf("%w: truncated device list", ErrMalformed)
			}
			d := msg[pos]
			pos++
			if d == excludedMarker {
				if len(devices) > 0 {
					return nil, fmt.Errorf("%w: device id 0", ErrMalformed)
				}
				break
			}
			if d > MaxDeviceID {
				return nil, fmt.Errorf("%w: device id %d", ErrMalformed, d)
			}
			if len(msg)-pos < 2 {
				return nil, fmt.Errorf("%w: truncated device list", ErrMalformed)
			}
			reg := uint16(msg[pos])<<8 | uint16(msg[pos+1])
			pos += 2
			devices = append(devices, Device{ID: uint32(d), RegistrationID: uint32(reg & registrationIDMask)})
			if reg&hasMoreDevices == 0 {
				break
			}
		}
		keyOffset := 0
		if len(devices) > 0 {
			if len(msg)-pos < recipientKeySize {
				return nil, fmt.Errorf("%w: truncated key material", ErrMalformed)
			}
			keyOffset = pos
			pos += recipientKeySize
		}
		i, seen := index[id]
		switch {
		case !seen && len(devices) == 0:
			index[id] = -1
			s.Excluded = append(s.Excluded, id)
		case !seen:
			index[id] = len(s.Recipients)
			s.Recipients = append(s.Recipients, SentRecipient{ServiceID: id, Devices: devices, keyOffset: keyOffset})
		case i < 0 || len(devices) == 0:
			return nil, fmt.Errorf("%w: recipient %v both excluded and listed again", ErrMalformed, id)
		default:
			s.Recipients[i].Devices = append(s.Recipients[i].Devices, devices...)
		}
	}
	if len(msg)-pos < rawKeySize {
		return nil, fmt.Errorf("%w: truncated ephemeral key", ErrMalformed)
	}
	s.shared = pos
	return s, nil
}

// ForRecipient returns the ReceivedMessage for Recipients[i], which every one of that
// recipient's devices gets and decrypts with Decrypt. It panics if i is out of range.
func (s *SentMessage) ForRecipient(i int) []byte {
	r := &s.Recipients[i]
	out := make([]byte, 0, 1+recipientKeySize+len(s.msg)-s.shared)
	out = append(out, v2ReceivedVersion)
	out = append(out, s.msg[r.keyOffset:r.keyOffset+recipientKeySize]...)
	return append(out, s.msg[s.shared:]...)
}
