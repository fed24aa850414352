package client

import (
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/devicelist"
	"github.com/doorless/doorless/internal/ktkeys"
	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/protocol/keys"
)

// FuzzParseProvision: the provisioning message decoder never accepts a
// message whose identity key pair does not match, or whose device list does
// not verify under it.
func FuzzParseProvision(f *testing.F) {
	id, err := keys.GenerateKeyPair(nil)
	if err != nil {
		f.Fatal(err)
	}
	list, err := devicelist.Sign(id.Private, &devicelist.List{Version: 1, Timestamp: time.Now().UnixMilli(), Devices: []uint32{1}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(&provision{Version: provisionVersion, AccountID: api.NewUUID(), Username: "alice",
		IdentityPublic: id.Public.Bytes(), IdentityPrivate: id.Private.Bytes(), LinkToken: "tok", DeviceID: 2, DeviceList: list})
	f.Add(good)
	f.Add([]byte(`{}`))
	// With the key transparency log the approving device follows.
	logKeys, err := ktkeys.Generate(rand.Reader, "log.example/kt")
	if err != nil {
		f.Fatal(err)
	}
	_, avkey, err := kt.GenerateCosignerKey(rand.Reader, "auditor.example")
	if err != nil {
		f.Fatal(err)
	}
	withLog, _ := json.Marshal(&provision{Version: provisionVersion, AccountID: api.NewUUID(), Username: "alice",
		IdentityPublic: id.Public.Bytes(), IdentityPrivate: id.Private.Bytes(), LinkToken: "tok", DeviceID: 2, DeviceList: list,
		Transparency: &provisionLog{Origin: "log.example/kt", LogKey: logKeys.LogKey, VRFKey: logKeys.VRF.Public().Bytes(), HeadSize: 3,
			HeadRoot: make([]byte, kt.HashSize), Auditors: []string{avkey}, Cosignatures: 1, MaxAuditLag: 3600e3}})
	f.Add(withLog)
	// With the account's registration time.
	withRegistered, _ := json.Marshal(&provision{Version: provisionVersion, AccountID: api.NewUUID(), Username: "alice",
		IdentityPublic: id.Public.Bytes(), IdentityPrivate: id.Private.Bytes(), LinkToken: "tok", DeviceID: 2, DeviceList: list,
		Registered: time.Now().UnixMilli()})
	f.Add(withRegistered)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, kp, l, err := parseProvision(b)
		if err != nil {
			return
		}
		if p.Registered < 0 {
			t.Fatal("accepted a negative registration time")
		}
		if p.Transparency != nil && checkLog(p.Transparency.log()) != nil {
			t.Fatal("accepted a transparency log that does not check")
		}
		if !kp.Private.PublicKey().Equal(kp.Public) {
			t.Fatal("accepted a mismatched identity key pair")
		}
		if _, err := devicelist.Verify(kp.Public, p.DeviceList); err != nil || l.Contains(p.DeviceID) {
			t.Fatal("accepted a device list that does not verify, or already holds the new device")
		}
	})
}

// FuzzParseLinkCode: what parses re-encodes to the same code.
func FuzzParseLinkCode(f *testing.F) {
	f.Add(linkCodePrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("doorless-link:")
	f.Fuzz(func(t *testing.T, code string) {
		addr, pub, err := parseLinkCode(code)
		if err != nil {
			return
		}
		again, err := linkCode(addr, pub.Bytes())
		if err != nil {
			t.Fatalf("re-encoding a parsed code: %v", err)
		}
		if _, _, err := parseLinkCode(again); err != nil {
			t.Fatalf("re-encoded code does not parse: %v", err)
		}
	})
}
