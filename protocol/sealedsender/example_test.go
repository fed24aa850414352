package sealedsender_test

import (
	"fmt"
	"time"

	"github.com/doorless/doorless/protocol/keys"
	"github.com/doorless/doorless/protocol/sealedsender"
)

func Example() {
	// The server: a trust root (its public key ships with the clients) and a signing key.
	root, _ := keys.GeneratePrivateKey(nil)
	serverKey, _ := keys.GeneratePrivateKey(nil)
	server, _ := sealedsender.NewServerCertificate(1, serverKey.PublicKey(), root, nil)

	// Alice's device asks the server for a sender certificate.
	alice, _ := keys.GeneratePrivateKey(nil)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	cert, _ := sealedsender.NewSenderCertificate(sealedsender.Sender{
		UUID: "9d0652a3-dcc3-4d11-975f-74d61598733f", DeviceID: 1, IdentityKey: alice.PublicKey(),
	}, now.Add(24*time.Hour), server, serverKey, nil)

	// Alice seals a session message (here a stand-in) to Bob's identity key.
	bob, _ := keys.GeneratePrivateKey(nil)
	content := &sealedsender.Content{Type: sealedsender.TypeWhisper, Sender: cert, Contents: []byte("a SignalMessage")}
	sealed, _ := sealedsender.Encrypt(nil, bob.PublicKey(), alice, content)

	// Bob opens it, then checks the certificate before he believes who sent it.
	got, err := sealedsender.Decrypt(sealed, bob)
	if err != nil {
		panic(err)
	}
	if err := got.Sender.Validate([]keys.PublicKey{root.PublicKey()}, now); err != nil {
		panic(err)
	}
	fmt.Printf("%s from %s.%d: %s\n", got.Type, got.Sender.Sender().UUID, got.Sender.Sender().DeviceID, got.Contents)
	// Output: whisper from 9d0652a3-dcc3-4d11-975f-74d61598733f.1: a SignalMessage
}

func ExampleParseSent() {
	root, _ := keys.GeneratePrivateKey(nil)
	serverKey, _ := keys.GeneratePrivateKey(nil)
	server, _ := sealedsender.NewServerCertificate(1, serverKey.PublicKey(), root, nil)
	alice, _ := keys.GeneratePrivateKey(nil)
	cert, _ := sealedsender.NewSenderCertificate(sealedsender.Sender{
		UUID: "9d0652a3-dcc3-4d11-975f-74d61598733f", DeviceID: 1, IdentityKey: alice.PublicKey(),
	}, time.Now().Add(time.Hour), server, serverKey, nil)

	// A client seals one group message to two accounts.
	bob, _ := keys.GeneratePrivateKey(nil)
	carol, _ := keys.GeneratePrivateKey(nil)
	bobID, _ := sealedsender.NewACI("0c4b7a9e-1d2f-4e3a-8b5c-6d7e8f9a0b1c")
	carolID, _ := sealedsender.NewACI("6f0a1e3c-54b7-4c1e-9d8a-2b9f3c4d5e6f")
	sent, _ := sealedsender.EncryptMulti(nil, []sealedsender.Recipient{
		{ServiceID: bobID, IdentityKey: bob.PublicKey(), Devices: []sealedsender.Device{{ID: 1, RegistrationID: 4242}, {ID: 2, RegistrationID: 77}}},
		{ServiceID: carolID, IdentityKey: carol.PublicKey(), Devices: []sealedsender.Device{{ID: 1, RegistrationID: 1234}}},
	}, alice, &sealedsender.Content{Type: sealedsender.TypeSenderKey, Sender: cert, Contents: []byte("a SenderKeyMessage")})

	// The server splits it without any key: one ReceivedMessage per account, for each of
	// its devices.
	m, err := sealedsender.ParseSent(sent)
	if err != nil {
		panic(err)
	}
	for i, r := range m.Recipients {
		fmt.Println(r.ServiceID.UUID(), r.Devices, len(m.ForRecipient(i)) > 0)
	}

	// Carol's device opens hers.
	got, _ := sealedsender.Decrypt(m.ForRecipient(1), carol)
	fmt.Printf("%s\n", got.Contents)
	// Output:
	// 0c4b7a9e-1d2f-4e3a-8b5c-6d7e8f9a0b1c [{1 4242} {2 77}] true
	// 6f0a1e3c-54b7-4c1e-9d8a-2b9f3c4d5e6f [{1 1234}] true
	// a SenderKeyMessage
}
