package kt_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/doorless/doorless/kt"
	"github.com/doorless/doorless/kt/vrf"
)

// A server logs alice's identity key and device list; bob looks her up and
// verifies the answer; an auditor replays the epoch and cosigns it.
func Example() {
	// The server's keys.
	skey, vkey, _ := note.GenerateKey(rand.Reader, "kt.doorless.example")
	signer, _ := note.NewSigner(skey)
	logKey, _ := note.NewVerifier(vkey)
	vrfKey, _ := vrf.GenerateKey(rand.Reader)
	log, _ := kt.NewLog(kt.LogConfig{Origin: "kt.doorless.example", Signer: signer, VRF: vrfKey})

	// One epoch: alice's username, her account, its identity key and
	// device list. The store keeps the entries.
	store := map[kt.Index]*kt.Entry{}
	now := time.Now()
	alice := kt.AccountValue{AccountID: "account-1", IdentityKey: make([]byte, 33), DeviceList: []byte("signed device list")}
	batch, err := log.Append([]kt.Update{{Label: kt.UsernameLabel("alice"), Value: alice.Encode()}}, now, rand.Reader)
	if err != nil {
		panic(err)
	}
	for _, e := range batch.Entries {
		store[e.Leaf.Index] = &e
	}

	// An auditor replays the epoch and cosigns the checkpoint.
	askey, avkey, _ := kt.GenerateCosignerKey(rand.Reader, "auditor.example")
	cosigner, _ := kt.NewCosigner(askey, time.Now)
	auditorKey, _ := kt.NewCosignatureVerifier(avkey)
	auditor := kt.NewAuditor("kt.doorless.example", logKey)
	if err := auditor.Apply(&batch.Changes); err != nil {
		panic(err)
	}
	cosigned, err := auditor.Cosign(log.Checkpoint(), cosigner, now)
	if err != nil {
		panic(err)
	}
	if err := log.AddCosignature(cosigned, auditorKey); err != nil {
		panic(err)
	}

	// Bob looks alice up, and requires the auditor's cosignature.
	labels := [][]byte{kt.UsernameLabel("alice")}
	proof, err := log.Prove(labels, 0, func(i kt.Index) (*kt.Entry, error) { return store[i], nil })
	if err != nil {
		panic(err)
	}
	wire, _ := proof.MarshalBinary()
	var received kt.LookupProof
	if err := received.UnmarshalBinary(wire); err != nil {
		panic(err)
	}
	v := kt.Verifier{
		Origin: "kt.doorless.example", LogKey: logKey, VRFKey: vrfKey.Public(),
		Auditors: []note.Verifier{auditorKey}, NeedCosignatures: 1, MaxAuditLag: time.Hour,
		MaxEpochAge: time.Hour, // the server makes an epoch every few minutes
	}
	head, results, err := v.Verify(nil, labels, &received, now)
	if err != nil {
		fmt.Println("lookup failed:", err)
		return
	}
	value, _ := kt.DecodeAccountValue(results[0].Value)
	fmt.Printf("log size %d; alice is %s; device list %q (counter %d)\n",
		head.Size, value.AccountID, value.DeviceList, results[0].Counter)
	// Output: log size 1; alice is account-1; device list "signed device list" (counter 0)
}
