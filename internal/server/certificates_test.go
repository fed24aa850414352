package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/doorless/doorless/internal/api"
	"github.com/doorless/doorless/internal/certs"
	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

func TestSenderCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.Init(dir); err != nil {
		t.Fatal(err)
	}
	issuer, err := certs.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Certificates = issuer })
	alice := e.register("alice", 0, 0)
	alice2 := e.addDevice(alice)

	var root api.TrustRootResponse
	e.ok(e.do(nil, "GET", api.PathTrustRoot, nil), &root)
	rootKey, err := keys.ParsePublicKey(root.PublicKey)
	if err != nil || !rootKey.Equal(issuer.TrustRoot()) {
		t.Fatalf("trust root %x: %v", root.PublicKey, err)
	}
	for _, u := range []*user{alice, alice2} {
		var resp api.SenderCertificateResponse
		e.ok(e.do(u, "GET", api.PathSenderCertificate, nil), &resp)
		c, err := sealedsender.ParseSenderCertificate(resp.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate([]keys.PublicKey{rootKey}, time.Now()); err != nil {
			t.Fatalf("certificate does not validate: %v", err)
		}
		s := c.Sender()
		if s.UUID != u.id || s.DeviceID != u.device || s.Name != "alice" || !s.IdentityKey.Equal(alice.identity.PublicKey()) {
			t.Fatalf("certificate for %s.%d names %+v", u.id, u.device, s)
		}
		if left := time.Until(c.Expires()); left < certs.Lifetime-time.Minute || left > certs.Lifetime {
			t.Fatalf("certificate valid for %v", left)
		}
	}
	e.fails(e.do(nil, "GET", api.PathSenderCertificate, nil), http.StatusUnauthorized, api.CodeUnauthorized)

	// Without an issuer there are no certificate endpoints.
	bare := newEnv(t, nil)
	bob := bare.register("bob", 0, 0)
	bare.fails(bare.do(bob, "GET", api.PathSenderCertificate, nil), http.StatusNotFound, api.CodeNotFound)
	bare.fails(bare.do(nil, "GET", api.PathTrustRoot, nil), http.StatusNotFound, api.CodeNotFound)
}
