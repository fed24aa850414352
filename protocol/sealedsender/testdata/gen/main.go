// Command gen writes ../libsignal-sealed.json: sealed sender messages made by the real
// libsignal (through the interop harness) to recipients whose private keys the file
// holds, so that the unit tests and fuzz targets of package sealedsender check against
// libsignal's bytes without Node.
//
// Run from the repository root, after npm ci in interop/libsignal:
//
//	go run ./protocol/sealedsender/testdata/gen
//
// The keys come from a fixed seed; libsignal draws its own randomness (ephemeral keys,
// signatures), so a rerun writes different bytes with the same meaning.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/doorless/doorless/interop/libsignal"
	"github.com/doorless/doorless/protocol/keys"
)

// Vectors is the file's content.
type Vectors struct {
	Comment string `json:"comment"`
	// TrustRoot signed the server certificate; ValidAt is a time (ms since 1970) at
	// which the sender certificates are valid.
	TrustRoot string `json:"trustRoot"`
	ValidAt   int64  `json:"validAt"`
	// Recipients are the identity private keys of the recipients, by service id.
	Recipients []Recipient `json:"recipients"`
	V1         []V1        `json:"v1"`
	V2         []V2        `json:"v2"`
}

// Recipient is one recipient account.
type Recipient struct {
	ServiceID       string `json:"serviceId"`
	IdentityPrivate string `json:"identityPrivate"`
}

// V1 is a version 1 message to Recipients[0] and the content libsignal sealed.
type V1 struct {
	Sealed string `json:"sealed"`
	USMC   string `json:"usmc"`
	Type   int    `json:"type"`
	// SenderUUID, SenderDevice and SenderE164 are what the certificate says.
	SenderUUID   string `json:"senderUuid"`
	SenderDevice uint32 `json:"senderDevice"`
	SenderE164   string `json:"senderE164,omitempty"`
}

// V2 is a SentMessage, libsignal's reading of it, and the content it seals.
type V2 struct {
	Sent       string        `json:"sent"`
	USMC       string        `json:"usmc"`
	Recipients []V2Recipient `json:"recipients"`
	Excluded   []string      `json:"excluded"`
}

// V2Recipient is one recipient as libsignal's parser reads it.
type V2Recipient struct {
	ServiceID       string   `json:"serviceId"`
	DeviceIDs       []uint32 `json:"deviceIds"`
	RegistrationIDs []uint32 `json:"registrationIds"`
	Received        string   `json:"received"`
}

func main() {
	log.SetFlags(0)
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(filepath.Dir(file), "..", "libsignal-sealed.json")
	v, err := generate()
	if err != nil {
		log.Fatal(err)
	}
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", out)
}

type source struct{ r *rand.Rand }

func (s source) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s.r.Uint32())
	}
	return len(p), nil
}

func generate() (*Vectors, error) {
	ctx := context.Background()
	rnd := source{rand.New(rand.NewPCG(2026, 11))}
	key := func() *keys.PrivateKey {
		k, err := keys.GeneratePrivateKey(rnd)
		if err != nil {
			log.Fatal(err)
		}
		return k
	}
	root, serverKey := key(), key()
	const senderUUID = "3f1c0b6e-8d2a-4b7c-9e5f-a1b2c3d4e5f6"
	accounts := []string{"9b3d2e1f-0a4c-4d6b-8e7f-123456789abc", "c0ffee00-1234-4abc-8def-0123456789ab"}
	const excluded = "e5e5e5e5-0000-4000-8000-000000000005"
	validAt := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	expires := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

	start := func(name string, device uint32, priv *keys.PrivateKey) (*libsignal.Peer, libsignal.Identity, error) {
		p, err := libsignal.Start(ctx, "")
		if err != nil {
			return nil, libsignal.Identity{}, err
		}
		id, err := p.Init(libsignal.InitParams{Name: name, DeviceID: device, IdentityPrivate: priv.Bytes()})
		return p, id, err
	}
	sender, senderID, err := start(senderUUID, 3, key())
	if err != nil {
		return nil, err
	}
	defer sender.Close()
	v := &Vectors{
		Comment:   "made by libsignal " + libsignal.PinnedVersion + " through interop/libsignal; see testdata/gen",
		TrustRoot: hex.EncodeToString(root.PublicKey().Bytes()),
		ValidAt:   validAt.UnixMilli(),
	}
	var addrs []libsignal.Address
	for i, name := range accounts {
		priv := key()
		v.Recipients = append(v.Recipients, Recipient{ServiceID: name, IdentityPrivate: hex.EncodeToString(priv.Bytes())})
		for _, device := range []uint32{1, uint32(2 + 40*i)} {
			p, _, err := start(name, device, priv)
			if err != nil {
				return nil, err
			}
			b, err := p.NewBundle(libsignal.BundleParams{WithOneTimePreKey: true})
			p.Close()
			if err != nil {
				return nil, err
			}
			addr := libsignal.Address{Name: name, DeviceID: device}
			if err := sender.ProcessBundle(addr, b); err != nil {
				return nil, err
			}
			addrs = append(addrs, addr)
		}
	}

	server, err := sender.NewServerCertificate(0x5eed, serverKey.PublicKey().Bytes(), root.Bytes())
	if err != nil {
		return nil, err
	}
	e164 := "+14155550123"
	var certs []libsignal.SenderCertificateInfo
	for _, e := range []*string{nil, &e164} {
		c, err := sender.NewSenderCertificate(libsignal.SenderCertificateParams{
			SenderUUID: senderUUID, SenderE164: e, DeviceID: senderID.DeviceID, SenderKey: senderID.IdentityKey,
			Expiration: expires.UnixMilli(), ServerCertificate: server.Serialized, ServerPrivate: serverKey.Bytes(),
		})
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	const distribution = "7d1e6f2a-3b4c-4d5e-8f60-718293a4b5c6"
	if _, err := sender.SenderKeyCreate(distribution); err != nil {
		return nil, err
	}

	// Version 1: a session message (a prekey message, no reply yet) and a group message.
	first := addrs[0]
	for i, c := range certs {
		params := libsignal.USMCParams{SenderCertificate: c.Serialized, Plaintext: []byte(fmt.Sprintf("sealed v1 message %d", i)), ContentHint: uint32(i)}
		if i == 0 {
			params.Peer = &first
		} else {
			params.DistributionID, params.GroupID = distribution, []byte("a group id")
		}
		u, err := sender.CreateUSMC(params)
		if err != nil {
			return nil, err
		}
		sealed, err := sender.SealedSenderEncrypt(first, u.Serialized)
		if err != nil {
			return nil, err
		}
		e := ""
		if c.SenderE164 != nil {
			e = *c.SenderE164
		}
		v.V1 = append(v.V1, V1{
			Sealed: hex.EncodeToString(sealed), USMC: hex.EncodeToString(u.Serialized), Type: u.Type,
			SenderUUID: c.SenderUUID, SenderDevice: c.DeviceID, SenderE164: e,
		})
	}

	// Version 2: group messages to both accounts (two devices each), one with an
	// excluded recipient.
	for i, ex := range [][]string{nil, {excluded}} {
		u, err := sender.CreateUSMC(libsignal.USMCParams{SenderCertificate: certs[0].Serialized,
			Plaintext: []byte(fmt.Sprintf("sealed v2 message %d", i)), DistributionID: distribution, ContentHint: 1, GroupID: []byte("a group id")})
		if err != nil {
			return nil, err
		}
		sent, err := sender.SealedSenderMultiRecipientEncrypt(addrs, ex, u.Serialized)
		if err != nil {
			return nil, err
		}
		info, err := sender.ParseMultiRecipient(sent)
		if err != nil {
			return nil, err
		}
		w := V2{Sent: hex.EncodeToString(sent), USMC: hex.EncodeToString(u.Serialized), Excluded: info.Excluded}
		for _, r := range info.Recipients {
			w.Recipients = append(w.Recipients, V2Recipient{ServiceID: r.ServiceID, DeviceIDs: r.DeviceIDs,
				RegistrationIDs: r.RegistrationIDs, Received: hex.EncodeToString(r.Message)})
		}
		v.V2 = append(v.V2, w)
	}
	return v, nil
}
